//! Llama 3.2 Vision (Mllama) on candle: the vision encoder, the projector into the text
//! model's width, and the text decoder with its gated cross-attention layers, loaded from a
//! Hugging Face `MllamaForConditionalGeneration` checkpoint.
//!
//! An image is encoded once, when its sequence starts: each cross-attention layer's keys and
//! values are kept with the [`MllamaSequence`], next to the self-attention cache, so decoding
//! steps run only the text decoder.

mod config;
mod text;
mod vision;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, Result, Tensor, bail};
use candle_nn::{Linear, VarBuilder};

pub use config::{MllamaConfig, MllamaTextConfig, MllamaVisionConfig, RopeScaling};
use text::{CrossMask, TextCache, TextModel};
use vision::VisionModel;

use super::MllamaImageInput;

/// A learned scalar gate, read once at load time and applied through tanh.
fn tanh_gate(vb: &VarBuilder, name: &str) -> Result<f64> {
    let value = vb.get(1, name)?.to_dtype(DType::F32)?.to_vec1::<f32>()?[0];
    Ok(f64::from(value).tanh())
}

/// Most attention scores held at once, in elements. A full image is 6432 tokens at 560-pixel
/// tiles, so all heads' scores together would take gigabytes; heads are taken a few at a time.
const MAX_SCORES: usize = 64 << 20;

/// Scaled dot-product attention over `[batch, heads, len, head_dim]` with as many key/value
/// heads as query heads and an optional additive bias (broadcast over heads), softmax in f32.
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let k_len = k.dim(2)?;
    let scale = 1.0 / (head_dim as f64).sqrt();
    let step = (MAX_SCORES / (batch * q_len * k_len).max(1)).clamp(1, heads);
    let mut outputs = Vec::with_capacity(heads.div_ceil(step));
    for first in (0..heads).step_by(step) {
        let n = step.min(heads - first);
        let (q, k, v) = (
            q.narrow(1, first, n)?,
            k.narrow(1, first, n)?,
            v.narrow(1, first, n)?,
        );
        let scores = (q.matmul(&k.t()?)? * scale)?.to_dtype(DType::F32)?;
        let scores = match bias {
            Some(bias) => scores.broadcast_add(bias)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        outputs.push(probs.matmul(&v.contiguous()?)?);
    }
    if outputs.len() == 1 {
        return Ok(outputs.remove(0));
    }
    Tensor::cat(&outputs, 1)
}

/// True when `config.json` describes an Mllama (Llama 3.2 Vision) checkpoint.
pub fn is_mllama_config(config_json: &serde_json::Value) -> bool {
    config_json.get("model_type").and_then(|v| v.as_str()) == Some("mllama")
}

/// The images of one sequence, as the vision encoder takes them.
#[derive(Debug, Clone)]
pub struct MllamaImages {
    /// `[images, max_tiles, channels, tile, tile]`, tile slots past an image's tiles zero.
    pub pixel_values: Tensor,
    /// `[images]`: each image's 1-based tile arrangement id.
    pub aspect_ratio_ids: Tensor,
    /// `[images, max_tiles]`: 1 for slots holding a tile.
    pub aspect_ratio_mask: Tensor,
}

impl MllamaImages {
    pub fn from_preprocessed(inputs: &[MllamaImageInput], device: &Device) -> Result<Self> {
        let Some(first) = inputs.first() else {
            bail!("mllama: no images given");
        };
        if inputs.iter().any(|i| i.shape != first.shape) {
            bail!("mllama: images were preprocessed with different settings");
        }
        let tiles = first.shape[0];
        let pixels: Vec<Tensor> = inputs
            .iter()
            .map(|i| Tensor::from_slice(&i.pixel_values, i.shape.as_slice(), device))
            .collect::<Result<_>>()?;
        let ids: Vec<u32> = inputs.iter().map(|i| i.aspect_ratio_id).collect();
        let mask: Vec<u32> = inputs
            .iter()
            .flat_map(|i| i.aspect_ratio_mask.iter().map(|&m| u32::from(m)))
            .collect();
        Ok(MllamaImages {
            pixel_values: Tensor::stack(&pixels, 0)?,
            aspect_ratio_ids: Tensor::from_vec(ids, inputs.len(), device)?,
            aspect_ratio_mask: Tensor::from_vec(mask, (inputs.len(), tiles), device)?,
        })
    }

    pub fn num_images(&self) -> Result<usize> {
        self.pixel_values.dim(0)
    }

    pub fn max_tiles(&self) -> Result<usize> {
        self.pixel_values.dim(1)
    }
}

/// Which tiles each prompt token may attend to, `[tokens][images * max_tiles]` flattened, as
/// the reference processor derives it from the image tokens' places: an image is seen from its
/// image token up to the next image token, and the last image to the end; the images of a run
/// of adjacent image tokens are all seen until the span of the image after the run ends.
/// Tokens before the first image token see nothing.
pub fn cross_attention_mask(
    ids: &[u32],
    image_token: u32,
    num_tiles: &[usize],
    max_tiles: usize,
) -> Vec<u8> {
    let places: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == image_token)
        .map(|(i, _)| i)
        .collect();
    let mut spans: Vec<(usize, usize)> = places
        .iter()
        .enumerate()
        .map(|(k, &start)| (start, places.get(k + 1).copied().unwrap_or(ids.len())))
        .collect();
    let mut later_end = ids.len();
    for span in spans.iter_mut().rev() {
        if span.0 + 1 == span.1 {
            span.1 = later_end;
        }
        later_end = span.1;
    }
    let images = spans.len().min(num_tiles.len());
    let mut mask = vec![0u8; ids.len() * images * max_tiles];
    for (image, &(start, end)) in spans.iter().take(images).enumerate() {
        for row in start..end {
            let base = (row * images + image) * max_tiles;
            mask[base..base + num_tiles[image].min(max_tiles)].fill(1);
        }
    }
    mask
}

/// One sequence's state: its decoder caches and the image keys and values its
/// cross-attention layers read.
pub struct MllamaSequence {
    cache: TextCache,
    /// Tile slots over all images (`images * max_tiles`); 0 without an image.
    tile_slots: usize,
    /// The last token's row of the cross-attention mask, which later tokens inherit.
    last_mask_row: Option<Vec<u8>>,
}

impl MllamaSequence {
    /// Tokens run so far.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    pub fn has_image(&self) -> bool {
        self.cache.has_image()
    }

    pub fn tile_slots(&self) -> usize {
        self.tile_slots
    }

    /// Forgets every token from `len` on, keeping the image's encoding.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        self.cache.truncate(len)
    }
}

pub struct MllamaModel {
    config: MllamaConfig,
    vision: VisionModel,
    projector: Linear,
    text: TextModel,
    device: Device,
}

/// Where a checkpoint keeps each part: transformers' long-standing layout, and the one its
/// newer `MllamaModel` wrapper uses.
struct Prefixes {
    vision: &'static str,
    projector: &'static str,
    text: &'static str,
    lm_head: &'static str,
}

const LAYOUTS: [Prefixes; 2] = [
    Prefixes {
        vision: "vision_model",
        projector: "multi_modal_projector",
        text: "language_model.model",
        lm_head: "language_model.lm_head",
    },
    Prefixes {
        vision: "model.vision_model",
        projector: "model.multi_modal_projector",
        text: "model.language_model",
        lm_head: "lm_head",
    },
];

fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no .safetensors files", dir.display());
    }
    Ok(files)
}

impl MllamaModel {
    /// Loads `config.json` and the safetensors weights from a checkpoint directory.
    pub fn load(dir: &Path, dtype: DType, device: &Device) -> Result<Self> {
        Self::load_quantized(dir, dtype, device, None)
    }

    /// [`Self::load`], with the text decoder's projections (and output head) quantized to
    /// `quant` as they are read; embeddings, norms and the vision side keep `dtype`.
    pub fn load_quantized(
        dir: &Path,
        dtype: DType,
        device: &Device,
        quant: Option<candle_core::quantized::GgmlDType>,
    ) -> Result<Self> {
        let mut config = MllamaConfig::from_file(&dir.join("config.json"))?;
        config.text_config.weight_quant = quant;
        let files = safetensors_files(dir)?;
        // SAFETY: the weights are memory-mapped read-only; the checkpoint must not be
        // modified while the model is loaded, as for every mmap-based loader.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device)? };
        Self::new(config, vb)
    }

    pub fn new(config: MllamaConfig, vb: VarBuilder) -> Result<Self> {
        let layout = LAYOUTS
            .iter()
            .find(|p| vb.contains_tensor(&format!("{}.embed_tokens.weight", p.text)))
            .ok_or_else(|| {
                candle_core::Error::Msg(
                    "mllama: the checkpoint has no language_model embed_tokens weight".into(),
                )
            })?;
        let vision = VisionModel::load(&config.vision_config, vb.pp(layout.vision))?;
        let projector = candle_nn::linear(
            config.vision_config.vision_output_dim,
            config.text_config.hidden_size,
            vb.pp(layout.projector),
        )?;
        let lm_head = vb.pp(layout.lm_head);
        let lm_head =
            if lm_head.contains_tensor("weight") || !config.text_config.tie_word_embeddings {
                Some(lm_head)
            } else {
                None
            };
        let text = TextModel::load(&config.text_config, vb.pp(layout.text), lm_head)?;
        Ok(MllamaModel {
            config,
            vision,
            projector,
            text,
            device: vb.device().clone(),
        })
    }

    pub fn config(&self) -> &MllamaConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The vision encoder's output projected to the text model's width: `[images * max_tiles
    /// * tokens_per_tile, hidden]`, the image tokens the cross-attention layers read.
    pub fn encode_images(&self, images: &MllamaImages) -> Result<Tensor> {
        let features = self.vision.forward(
            &images.pixel_values.to_device(&self.device)?,
            &images.aspect_ratio_ids.to_device(&self.device)?,
            &images.aspect_ratio_mask,
        )?;
        let projected = self.projector.forward(&features)?;
        let hidden = self.config.text_config.hidden_size;
        projected.reshape(((), hidden))
    }

    /// Starts a sequence; with images, encodes them and computes every cross-attention
    /// layer's keys and values for it now, once.
    pub fn new_sequence(&self, images: Option<&MllamaImages>) -> Result<MllamaSequence> {
        match images {
            Some(images) => {
                let vision = self.encode_images(images)?.unsqueeze(0)?;
                self.new_sequence_encoded(&vision, images.num_images()? * images.max_tiles()?)
            }
            None => Ok(MllamaSequence {
                cache: self.text.new_cache(),
                tile_slots: 0,
                last_mask_row: None,
            }),
        }
    }

    /// Starts a sequence on images already through [`Self::encode_images`] (`[1, vision
    /// tokens, hidden]`, over `tile_slots` tile slots), computing the cross-attention keys and
    /// values.
    pub fn new_sequence_encoded(
        &self,
        vision: &Tensor,
        tile_slots: usize,
    ) -> Result<MllamaSequence> {
        let mut cache = self.text.new_cache();
        self.text.set_image(&mut cache, vision)?;
        Ok(MllamaSequence {
            cache,
            tile_slots,
            last_mask_row: None,
        })
    }

    /// Runs `ids` after the sequence's earlier tokens and returns their logits, `[ids.len(),
    /// vocab]` in f32.
    ///
    /// `cross_attention_mask` gives, per token, which tile slots it may attend to
    /// (`[ids.len()][tile_slots]` flattened, as [`cross_attention_mask`] builds it). Without
    /// one, the tokens inherit the last row given before, as generated tokens do; if none was
    /// ever given they attend to every tile.
    pub fn forward(
        &self,
        sequence: &mut MllamaSequence,
        ids: &[u32],
        cross_attention_mask: Option<&[u8]>,
    ) -> Result<Tensor> {
        self.forward_last(sequence, ids, cross_attention_mask, ids.len())
    }

    /// [`Self::forward`], returning only the logits of the last `rows` tokens.
    pub fn forward_last(
        &self,
        sequence: &mut MllamaSequence,
        ids: &[u32],
        cross_attention_mask: Option<&[u8]>,
        rows: usize,
    ) -> Result<Tensor> {
        if ids.is_empty() {
            bail!("mllama: no tokens to run");
        }
        let len = ids.len();
        let slots = sequence.tile_slots;
        let last = rows;
        let rows: Option<Vec<u8>> = match (cross_attention_mask, &sequence.last_mask_row) {
            _ if slots == 0 => None,
            (Some(mask), _) => {
                if mask.len() != len * slots {
                    bail!(
                        "mllama: cross-attention mask has {} entries, expected {len} tokens × \
                         {slots} tile slots",
                        mask.len()
                    );
                }
                Some(mask.to_vec())
            }
            (None, Some(last)) => Some(last.repeat(len)),
            (None, None) => None,
        };
        let mask = match &rows {
            Some(rows) => {
                sequence.last_mask_row = Some(rows[(len - 1) * slots..].to_vec());
                Some(self.cross_mask(rows, len, slots)?)
            }
            None => None,
        };
        let ids = Tensor::from_slice(ids, (1, len), &self.device)?;
        let logits = self
            .text
            .forward(&ids, &mut sequence.cache, mask.as_ref(), Some(last))?;
        logits.squeeze(0)
    }

    /// The additive bias over image tokens (each tile slot spans `tokens_per_tile` of them)
    /// and the per-token flag for whether any tile is visible. A token that sees no tile gets
    /// no bias at all, as in the reference, so its softmax stays finite.
    fn cross_mask(&self, rows: &[u8], len: usize, slots: usize) -> Result<CrossMask> {
        let per_tile = self.config.vision_config.tokens_per_tile();
        let width = slots * per_tile;
        let mut bias = vec![0f32; len * width];
        let mut visible = vec![0f32; len];
        for (t, row) in rows.chunks(slots).enumerate() {
            if row.iter().all(|&m| m == 0) {
                continue;
            }
            visible[t] = 1.0;
            for (slot, &m) in row.iter().enumerate() {
                if m == 0 {
                    let start = t * width + slot * per_tile;
                    bias[start..start + per_tile].fill(f32::MIN);
                }
            }
        }
        Ok(CrossMask {
            bias: Tensor::from_vec(bias, (1, 1, len, width), &self.device)?,
            rows: Tensor::from_vec(visible, (1, len, 1), &self.device)?,
        })
    }
}
