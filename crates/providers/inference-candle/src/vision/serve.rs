//! Llama 3.2 Vision on the engine thread: what a sequence keeps between steps, and one step of
//! several sequences.
//!
//! The Mllama decoder runs one sequence per forward pass (each has its own image keys and
//! values), so a batch step runs its sequences one after another and stacks their logits; the
//! scheduler around it, with chunked prefill, prefix reuse and speculative drafts, is the text
//! engine's.

use std::hash::{Hash, Hasher};
use std::path::Path;

use candle_core::{DType, Device, Result, Tensor};

use super::mllama::{MllamaImages, MllamaModel, MllamaSequence, cross_attention_mask};
use super::{MllamaImageConfig, MllamaImageInput};

/// A request's images, preprocessed, with a digest of their pixels so a cached conversation
/// prefix is reused only by a request showing the same images.
pub(crate) struct JobImages {
    pub inputs: Vec<MllamaImageInput>,
    pub key: u64,
    /// The images through the vision encoder and projector, `[1, vision tokens, hidden]`,
    /// when the request side encoded them; the engine encodes them otherwise.
    pub encoded: Option<Tensor>,
}

impl JobImages {
    pub fn new(inputs: Vec<MllamaImageInput>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for input in &inputs {
            input.shape.hash(&mut hasher);
            input.aspect_ratio_id.hash(&mut hasher);
            for value in &input.pixel_values {
                value.to_bits().hash(&mut hasher);
            }
        }
        JobImages {
            key: hasher.finish(),
            inputs,
            encoded: None,
        }
    }
}

/// A loaded vision model and how its images are cut into tiles.
pub(crate) struct VisionServing {
    pub model: MllamaModel,
    pub image_config: MllamaImageConfig,
    pub max_seq_len: usize,
}

/// One sequence of the vision model.
pub(crate) struct VisionCache {
    sequence: MllamaSequence,
    /// Digest of the images encoded into `sequence`, none for a text-only one.
    image_key: Option<u64>,
    /// Which tile slots each prompt token may attend to, `[prompt][tile slots]` flattened.
    prompt_mask: Vec<u8>,
}

impl VisionCache {
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn truncate(&mut self, len: usize) {
        if let Err(err) = self.sequence.truncate(len) {
            // Only an out-of-range narrow can fail, and `len` is below the length.
            tracing::error!(error = %err, "Cannot truncate a vision sequence");
        }
    }

    /// Whether a cached prefix of this sequence can serve a request with `images`.
    pub fn serves(&self, images: Option<&JobImages>) -> bool {
        self.image_key == images.map(|i| i.key)
    }
}

impl VisionServing {
    /// Loads a checkpoint directory; the tiles come from the vision config, the normalisation
    /// from `preprocessor_config.json` where the checkpoint has one.
    pub fn load(
        dir: &Path,
        max_seq_len: usize,
        device: &Device,
        quant: Option<candle_core::quantized::GgmlDType>,
    ) -> Result<Self> {
        let model = MllamaModel::load_quantized(dir, DType::F32, device, quant)?;
        let vision = &model.config().vision_config;
        let mut image_config = MllamaImageConfig {
            tile_size: vision.image_size as u32,
            max_image_tiles: vision.max_num_tiles,
            ..MllamaImageConfig::default()
        };
        if let Ok(text) = std::fs::read_to_string(dir.join("preprocessor_config.json")) {
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                candle_core::Error::Msg(format!(
                    "{}: {e}",
                    dir.join("preprocessor_config.json").display()
                ))
            })?;
            let triple = |key: &str| -> Option<[f32; 3]> {
                let values = json.get(key)?.as_array()?;
                let v: Vec<f32> = values
                    .iter()
                    .filter_map(|x| x.as_f64())
                    .map(|x| x as f32)
                    .collect();
                (v.len() == 3).then(|| [v[0], v[1], v[2]])
            };
            if let Some(mean) = triple("image_mean") {
                image_config.image_mean = mean;
            }
            if let Some(std) = triple("image_std") {
                image_config.image_std = std;
            }
        }
        let max_seq_len = max_seq_len.min(model.config().text_config.max_position_embeddings);
        Ok(VisionServing {
            model,
            image_config,
            max_seq_len,
        })
    }

    pub fn image_token(&self) -> u32 {
        self.model.config().image_token_index
    }

    /// Keys and values one token keeps in the self-attention layers, in bytes.
    pub fn kv_bytes_per_token(&self) -> usize {
        let text = &self.model.config().text_config;
        let layers = text.num_hidden_layers - text.cross_attention_layers.len();
        layers * 2 * text.num_key_value_heads * text.head_dim() * std::mem::size_of::<f32>()
    }

    /// Runs `images` through the vision encoder and projector. Blocking, and long on a CPU:
    /// call it from a blocking task, not the engine thread.
    pub fn encode(&self, images: &mut JobImages) -> Result<()> {
        let pixels = MllamaImages::from_preprocessed(&images.inputs, self.model.device())?;
        images.encoded = Some(self.model.encode_images(&pixels)?.unsqueeze(0)?);
        Ok(())
    }

    /// A new sequence for `prompt`, with its images' encoding, computed now unless the request
    /// side did it.
    pub fn new_cache(&self, prompt: &[u32], images: Option<&JobImages>) -> Result<VisionCache> {
        let sequence = match images {
            Some(images) => {
                let pixels = MllamaImages::from_preprocessed(&images.inputs, self.model.device())?;
                let slots = pixels.num_images()? * pixels.max_tiles()?;
                let encoded = match &images.encoded {
                    Some(encoded) => encoded.clone(),
                    None => self.model.encode_images(&pixels)?.unsqueeze(0)?,
                };
                self.model.new_sequence_encoded(&encoded, slots)?
            }
            None => self.model.new_sequence(None)?,
        };
        let mut cache = VisionCache {
            sequence,
            image_key: images.map(|i| i.key),
            prompt_mask: Vec::new(),
        };
        self.set_prompt(&mut cache, prompt, images);
        Ok(cache)
    }

    /// Points a (possibly reused) sequence at the prompt it now serves.
    pub fn set_prompt(&self, cache: &mut VisionCache, prompt: &[u32], images: Option<&JobImages>) {
        cache.prompt_mask = match images {
            Some(images) => {
                let tiles: Vec<usize> = images.inputs.iter().map(|i| i.num_tiles).collect();
                let max_tiles = images.inputs.first().map_or(0, |i| i.shape[0]);
                cross_attention_mask(prompt, self.image_token(), &tiles, max_tiles)
            }
            None => Vec::new(),
        };
    }

    /// Runs each step's tokens after its sequence's cached ones and stacks the logits of the
    /// last `rows[i]` tokens of step `i`.
    pub fn forward_rows(
        &self,
        steps: &mut [(&[u32], &mut VisionCache)],
        rows: &[usize],
    ) -> Result<Tensor> {
        let mut logits = Vec::with_capacity(steps.len());
        for ((tokens, cache), &wanted) in steps.iter_mut().zip(rows) {
            let mask = chunk_mask(cache, tokens.len());
            logits.push(self.model.forward_last(
                &mut cache.sequence,
                tokens,
                mask.as_deref(),
                wanted,
            )?);
        }
        Tensor::cat(&logits, 0)
    }
}

/// The cross-attention mask rows of the next `len` tokens while any of them is a prompt token;
/// tokens past the prompt see what its last token saw. `None` once the prompt is read, so
/// generated tokens inherit the last row.
fn chunk_mask(cache: &VisionCache, len: usize) -> Option<Vec<u8>> {
    let slots = cache.sequence.tile_slots();
    if slots == 0 || cache.prompt_mask.is_empty() {
        return None;
    }
    let prompt_len = cache.prompt_mask.len() / slots;
    let start = cache.sequence.len();
    if start >= prompt_len {
        return None;
    }
    let mut rows = Vec::with_capacity(len * slots);
    for position in start..start + len {
        let row = position.min(prompt_len - 1);
        rows.extend_from_slice(&cache.prompt_mask[row * slots..(row + 1) * slots]);
    }
    Some(rows)
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
