//! A random-weight Llama 3.2 Vision checkpoint in Hugging Face's `MllamaForConditionalGeneration`
//! layout, small enough to load in a moment, with the real Llama 3 tokenizer: for serving the
//! whole image path end to end without the 11B weights.
//!
//! The tensor names and shapes are those the loader asks for: the model is built once over an
//! empty variable map, which records every tensor it reads, and the map is then filled with
//! seeded random values and saved.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use llama_stack_core::{Error, Result};
use rand::{Rng, SeedableRng};

use super::{io_error, write_json};
use crate::vision::MllamaImageConfig;
use crate::vision::mllama::{MllamaConfig, MllamaModel};

/// Where checkpoints of the vision models keep the image token.
const IMAGE_TOKEN: u32 = 128_256;
/// A tile of 112 pixels is 8 × 8 patches of 14: a 1-tile image is 65 vision tokens.
const TILE: usize = 112;

fn config_json() -> serde_json::Value {
    let image = MllamaImageConfig::default();
    serde_json::json!({
        "architectures": ["MllamaForConditionalGeneration"],
        "model_type": "mllama",
        "image_token_index": IMAGE_TOKEN,
        "torch_dtype": "float32",
        "text_config": {
            "model_type": "mllama_text_model",
            "vocab_size": super::VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 3,
            "cross_attention_layers": [1],
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192
            },
            "tie_word_embeddings": true,
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "hidden_act": "silu"
        },
        "vision_config": {
            "model_type": "mllama_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_global_layers": 1,
            "attention_heads": 2,
            "intermediate_layers_indices": [0, 1],
            "vision_output_dim": 96,
            "image_size": TILE,
            "patch_size": 14,
            "max_num_tiles": image.max_image_tiles,
            "num_channels": 3,
            "norm_eps": 1e-5,
            "hidden_act": "gelu",
            "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]
        }
    })
}

fn preprocessor_json() -> serde_json::Value {
    let image = MllamaImageConfig::default();
    serde_json::json!({
        "image_processor_type": "MllamaImageProcessor",
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_pad": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": image.image_mean,
        "image_std": image.image_std,
        "max_image_tiles": image.max_image_tiles,
        "resample": 2,
        "rescale_factor": 1.0 / 255.0,
        "size": {"height": TILE, "width": TILE}
    })
}

/// The tokenizer with `<|image|>` at the id vision checkpoints give it, past the text vocabulary.
fn with_image_token(mut tokenizer: serde_json::Value) -> serde_json::Value {
    if let Some(added) = tokenizer
        .get_mut("added_tokens")
        .and_then(|a| a.as_array_mut())
    {
        // The text vocabulary's reserved `<|image|>` keeps its name in Meta's list; the
        // vision checkpoints' own entry is the one past the vocabulary.
        for token in added.iter_mut() {
            if token["content"] == "<|image|>" {
                token["content"] = serde_json::json!("<|reserved_special_token_2|>");
            }
        }
        added.push(serde_json::json!({
            "id": IMAGE_TOKEN,
            "content": "<|image|>",
            "single_word": false,
            "lstrip": false,
            "rstrip": false,
            "normalized": false,
            "special": true
        }));
    }
    tokenizer
}

fn candle_error(e: candle_core::Error) -> Error {
    Error::internal(format!("writing the vision test model: {e}"))
}

/// Writes config.json, preprocessor_config.json, generation_config.json, model.safetensors,
/// tokenizer.json and tokenizer_config.json into `dir`.
pub(super) fn create(dir: &Path, tokenizer: serde_json::Value, seed: u64) -> Result<()> {
    let json = config_json();
    let config: MllamaConfig = serde_json::from_value(json.clone())
        .map_err(|e| Error::internal(format!("vision test model config: {e}")))?;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let text = &config.text_config;
    // The loader finds the layout by this tensor, so it has to exist before the build.
    vb.pp("language_model.model.embed_tokens")
        .get((text.vocab_size + 8, text.hidden_size), "weight")
        .map_err(candle_error)?;
    MllamaModel::new(config, vb).map_err(candle_error)?;

    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let bound = 0.02f32 * 3f32.sqrt();
    let data = varmap
        .data()
        .lock()
        .map_err(|_| Error::internal("variable map poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let shape = var.shape().clone();
        let n = shape.elem_count();
        let values: Vec<f32> = if name.ends_with("norm.weight")
            || name.contains("layernorm") && name.ends_with("weight")
        {
            vec![1.0; n]
        } else if n == 1 {
            // Gates: open, so that the image visibly changes the output.
            vec![1.0]
        } else if name.contains("embedding") {
            // Position and tile embeddings are added to patch features of unit scale.
            (0..n).map(|_| rng.random_range(-0.5f32..0.5)).collect()
        } else {
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        let tensor = Tensor::from_vec(values, shape, &Device::Cpu).map_err(candle_error)?;
        var.set(&tensor).map_err(candle_error)?;
    }
    drop(data);

    write_json(&dir.join("config.json"), &json)?;
    write_json(&dir.join("preprocessor_config.json"), &preprocessor_json())?;
    super::write_generation_config(dir)?;
    super::write_tokenizer_files(dir, &with_image_token(tokenizer))?;
    let path = dir.join("model.safetensors");
    varmap.save(&path).map_err(|e| io_error(&path, e))
}
