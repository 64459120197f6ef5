//! Writes random-weight Llama 3 models in Hugging Face layout, so the whole stack can be run
//! and tested without downloading weights.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use llama_stack_core::{Error, Result};
use rand::{Rng, SeedableRng};

/// Sizes of a test model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Two layers, hidden size 64: loads in milliseconds, for tests.
    Tiny,
    /// The shape of Llama 3.2 1B (16 layers, hidden 2048, GQA 32/8): for benchmarks.
    OneB,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "1b" => Ok(Preset::OneB),
            other => Err(format!("unknown preset `{other}`; use tiny or 1b")),
        }
    }
}

struct Shape {
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
}

impl Preset {
    fn shape(self) -> Shape {
        match self {
            Preset::Tiny => Shape {
                hidden: 64,
                intermediate: 128,
                layers: 2,
                heads: 4,
                kv_heads: 2,
            },
            Preset::OneB => Shape {
                hidden: 2048,
                intermediate: 8192,
                layers: 16,
                heads: 32,
                kv_heads: 8,
            },
        }
    }
}

/// The Llama 3 vocabulary: 128,000 BPE ranks and 256 special tokens.
pub const VOCAB_SIZE: usize = 128_256;

/// Options of `llama-stack model create-test`.
pub struct TestModelOptions<'a> {
    pub preset: Preset,
    /// `f32` or `bf16`: the stored weight type.
    pub dtype: DType,
    /// Meta's tiktoken `tokenizer.model`, converted to `tokenizer.json`.
    pub tiktoken_model: &'a Path,
    pub seed: u64,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("cannot write {}: {e}", path.display()))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| io_error(path, e))?;
    std::fs::write(path, text).map_err(|e| io_error(path, e))
}

/// Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
/// generation_config.json into `dir`.
pub fn create(dir: &Path, options: &TestModelOptions) -> Result<()> {
    let tiktoken = std::fs::read_to_string(options.tiktoken_model).map_err(|e| {
        Error::invalid(format!(
            "cannot read the Llama 3 tokenizer at {}: {e}. Run scripts/fetch-tokenizer.sh or pass --tokenizer",
            options.tiktoken_model.display()
        ))
    })?;
    let tokenizer = llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&tiktoken)
        .map_err(|e| Error::invalid(format!("{}: {e}", options.tiktoken_model.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let s = options.preset.shape();
    let torch_dtype = if options.dtype == DType::BF16 {
        "bfloat16"
    } else {
        "float32"
    };
    write_json(
        &dir.join("config.json"),
        &serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": s.hidden,
            "intermediate_size": s.intermediate,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "head_dim": s.hidden / s.heads,
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": 131072,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "factor": 32.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3"
            },
            "tie_word_embeddings": true,
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "hidden_act": "silu",
            "torch_dtype": torch_dtype,
        }),
    )?;
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::json!({
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "do_sample": true,
            "temperature": 0.6,
            "top_p": 0.9,
        }),
    )?;
    write_json(&dir.join("tokenizer.json"), &tokenizer)?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &llama_stack_llama3::tokenizer_config_json(),
    )?;
    write_weights(&dir.join("model.safetensors"), &s, options)
}

fn write_weights(path: &Path, s: &Shape, options: &TestModelOptions) -> Result<()> {
    let head_dim = s.hidden / s.heads;
    let kv = s.kv_heads * head_dim;
    // Uniform weights with the usual 0.02 standard deviation: a fast generator matters, since
    // the 1b preset draws 1.2 billion values.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(options.seed);
    let bound = 0.02f32 * 3f32.sqrt();
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut random = |shape: &[usize]| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(options.dtype))
            .map_err(|e| Error::internal(e.to_string()))
    };
    let ones = |n: usize| -> Result<Tensor> {
        Tensor::ones(n, options.dtype, &Device::Cpu).map_err(|e| Error::internal(e.to_string()))
    };
    tensors.insert(
        "model.embed_tokens.weight".into(),
        random(&[VOCAB_SIZE, s.hidden])?,
    );
    tensors.insert("model.norm.weight".into(), ones(s.hidden)?);
    for i in 0..s.layers {
        let p = format!("model.layers.{i}");
        tensors.insert(
            format!("{p}.self_attn.q_proj.weight"),
            random(&[s.hidden, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.self_attn.k_proj.weight"),
            random(&[kv, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.self_attn.v_proj.weight"),
            random(&[kv, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.self_attn.o_proj.weight"),
            random(&[s.hidden, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.mlp.gate_proj.weight"),
            random(&[s.intermediate, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.mlp.up_proj.weight"),
            random(&[s.intermediate, s.hidden])?,
        );
        tensors.insert(
            format!("{p}.mlp.down_proj.weight"),
            random(&[s.hidden, s.intermediate])?,
        );
        tensors.insert(format!("{p}.input_layernorm.weight"), ones(s.hidden)?);
        tensors.insert(
            format!("{p}.post_attention_layernorm.weight"),
            ones(s.hidden)?,
        );
    }
    candle_core::safetensors::save(&tensors, path).map_err(|e| io_error(path, e))
}
