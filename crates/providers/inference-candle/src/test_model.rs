//! Writes random-weight Llama 3 models in Hugging Face layout (safetensors) or as one GGUF
//! file, so the whole stack, and llama.cpp, can be run and tested without downloading weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use llama_stack_core::{Error, Result};
use rand::{Rng, SeedableRng};

mod gguf_writer;
mod mllama_writer;
pub use gguf_writer::GgufType;

/// Sizes of a test model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Two layers, hidden size 64: loads in milliseconds, for tests.
    Tiny,
    /// Two layers, hidden size 256, intermediate 768: every matrix row is a whole number of
    /// K-quant super-blocks (256 columns), so llama.cpp's K-quant types apply to every matrix
    /// rather than falling back to other types, while the model still loads in a second.
    Small,
    /// The shape of Llama 3.2 1B (16 layers, hidden 2048, GQA 32/8): for benchmarks.
    OneB,
    /// The shape of Llama 3.2 3B (28 layers, hidden 3072, GQA 24/8): for load-time and memory
    /// benchmarks.
    ThreeB,
    /// A Llama 3.2 Vision (Mllama) checkpoint: a two-layer vision encoder on 112-pixel tiles
    /// and a three-layer decoder with one cross-attention layer. Safetensors only.
    VisionTiny,
}

impl std::str::FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            "1b" => Ok(Preset::OneB),
            "3b" => Ok(Preset::ThreeB),
            "vision-tiny" => Ok(Preset::VisionTiny),
            other => Err(format!(
                "unknown preset `{other}`; use tiny, small, 1b, 3b or vision-tiny"
            )),
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

impl Shape {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

impl Preset {
    /// The name `--preset` takes.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::OneB => "1b",
            Preset::ThreeB => "3b",
            Preset::VisionTiny => "vision-tiny",
        }
    }

    fn shape(self) -> Shape {
        match self {
            // The vision preset's decoder is written by its own writer; this shape only
            // serves the text-model paths that refuse it.
            Preset::Tiny | Preset::VisionTiny => Shape {
                hidden: 64,
                intermediate: 128,
                layers: 2,
                heads: 4,
                kv_heads: 2,
            },
            Preset::Small => Shape {
                hidden: 256,
                intermediate: 768,
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
            Preset::ThreeB => Shape {
                hidden: 3072,
                intermediate: 8192,
                layers: 28,
                heads: 24,
                kv_heads: 8,
            },
        }
    }
}

/// The Llama 3 vocabulary: 128,000 BPE ranks and 256 special tokens.
pub const VOCAB_SIZE: usize = 128_256;

/// Hyper-parameters every preset shares with Llama 3.1/3.2.
const CONTEXT_LENGTH: usize = 131_072;
const RMS_NORM_EPS: f64 = 1e-5;
const ROPE_THETA: f64 = 500_000.0;
/// Llama 3 rope scaling: `factor`, `low_freq_factor`, `high_freq_factor`,
/// `original_max_position_embeddings`.
const ROPE_SCALING: (f64, f64, f64, usize) = (32.0, 1.0, 4.0, 8192);

/// Where Meta's Llama 3 `tokenizer.model` is looked for: `$LLAMA3_TOKENIZER_MODEL`, else
/// `~/.llama/tokenizer/llama3/tokenizer.model`, where `scripts/fetch-tokenizer.sh` puts it.
pub fn default_tokenizer_path() -> std::path::PathBuf {
    match std::env::var_os("LLAMA3_TOKENIZER_MODEL") {
        Some(path) if !path.is_empty() => path.into(),
        _ => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".llama/tokenizer/llama3/tokenizer.model"),
    }
}

/// Options of `llama-stack model create-test`.
pub struct TestModelOptions<'a> {
    pub preset: Preset,
    /// `f32` or `bf16`: the stored weight type of safetensors models ([`create_gguf`] ignores it
    /// and takes a [`GgufType`] instead).
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

/// Converts Meta's tiktoken file to a `tokenizer.json` value and creates `dir`.
fn prepare(dir: &Path, options: &TestModelOptions) -> Result<serde_json::Value> {
    let tiktoken = std::fs::read_to_string(options.tiktoken_model).map_err(|e| {
        Error::invalid(format!(
            "cannot read the Llama 3 tokenizer at {}: {e}. Run scripts/fetch-tokenizer.sh or pass --tokenizer",
            options.tiktoken_model.display()
        ))
    })?;
    let tokenizer = llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&tiktoken)
        .map_err(|e| Error::invalid(format!("{}: {e}", options.tiktoken_model.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    Ok(tokenizer)
}

/// Llama 3 Instruct's sampling defaults and stop tokens, as its checkpoints ship them.
fn write_generation_config(dir: &Path) -> Result<()> {
    write_json(
        &dir.join("generation_config.json"),
        &serde_json::json!({
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "do_sample": true,
            "temperature": 0.6,
            "top_p": 0.9,
        }),
    )
}

fn write_tokenizer_files(dir: &Path, tokenizer: &serde_json::Value) -> Result<()> {
    write_json(&dir.join("tokenizer.json"), tokenizer)?;
    write_json(
        &dir.join("tokenizer_config.json"),
        &llama_stack_llama3::tokenizer_config_json(),
    )
}

/// Writes config.json, model.safetensors, tokenizer.json, tokenizer_config.json and
/// generation_config.json into `dir`.
pub fn create(dir: &Path, options: &TestModelOptions) -> Result<()> {
    let tokenizer = prepare(dir, options)?;
    if options.preset == Preset::VisionTiny {
        if options.dtype != DType::F32 {
            return Err(Error::invalid(
                "the vision-tiny preset is written in f32 only",
            ));
        }
        return mllama_writer::create(dir, tokenizer, options.seed);
    }
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
            "head_dim": s.head_dim(),
            "vocab_size": VOCAB_SIZE,
            "max_position_embeddings": CONTEXT_LENGTH,
            "rms_norm_eps": RMS_NORM_EPS,
            "rope_theta": ROPE_THETA,
            "rope_scaling": {
                "factor": ROPE_SCALING.0,
                "low_freq_factor": ROPE_SCALING.1,
                "high_freq_factor": ROPE_SCALING.2,
                "original_max_position_embeddings": ROPE_SCALING.3,
                "rope_type": "llama3"
            },
            "tie_word_embeddings": true,
            "bos_token_id": 128000,
            "eos_token_id": [128001, 128008, 128009],
            "hidden_act": "silu",
            "torch_dtype": torch_dtype,
        }),
    )?;
    write_generation_config(dir)?;
    write_tokenizer_files(dir, &tokenizer)?;
    let path = dir.join("model.safetensors");
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    random_weights(&s, options.dtype, options.seed, |name, tensor| {
        tensors.insert(name, tensor);
        Ok(())
    })?;
    candle_core::safetensors::save(&tensors, &path).map_err(|e| io_error(&path, e))
}

/// Writes `model.gguf` (weights, hyper-parameters and the full Llama 3 tokenizer, in
/// llama.cpp's conventions) plus `tokenizer.json` and `tokenizer_config.json` into `dir`, and
/// returns the GGUF file's path. For one seed the weights are those [`create`] writes (with the
/// query and key rows reordered for llama.cpp's rope layout), stored as `ty`.
pub fn create_gguf(dir: &Path, options: &TestModelOptions, ty: GgufType) -> Result<PathBuf> {
    if options.preset == Preset::VisionTiny {
        return Err(Error::invalid(
            "GGUF has no standard layout for Llama 3.2 Vision; write vision-tiny as safetensors",
        ));
    }
    let tokenizer = prepare(dir, options)?;
    write_tokenizer_files(dir, &tokenizer)?;
    let path = dir.join("model.gguf");
    gguf_writer::write(&path, options.preset, &tokenizer, ty, options.seed)?;
    Ok(path)
}

/// Draws the weights of a model of shape `s`, handing each to `visit` under its Hugging Face
/// name, one at a time (so a GGUF writer can quantize as it goes). The draw order is fixed: one
/// seed gives the same weights in every format.
fn random_weights(
    s: &Shape,
    dtype: DType,
    seed: u64,
    mut visit: impl FnMut(String, Tensor) -> Result<()>,
) -> Result<()> {
    let kv = s.kv_heads * s.head_dim();
    // Uniform weights with the usual 0.02 standard deviation: a fast generator matters, since
    // the 1b preset draws 1.2 billion values.
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let bound = 0.02f32 * 3f32.sqrt();
    let mut random = |shape: &[usize]| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .map_err(|e| Error::internal(e.to_string()))
    };
    let ones = |n: usize| -> Result<Tensor> {
        Tensor::ones(n, dtype, &Device::Cpu).map_err(|e| Error::internal(e.to_string()))
    };
    visit(
        "model.embed_tokens.weight".into(),
        random(&[VOCAB_SIZE, s.hidden])?,
    )?;
    visit("model.norm.weight".into(), ones(s.hidden)?)?;
    for i in 0..s.layers {
        let p = format!("model.layers.{i}");
        let attn = format!("{p}.self_attn");
        visit(
            format!("{attn}.q_proj.weight"),
            random(&[s.hidden, s.hidden])?,
        )?;
        visit(format!("{attn}.k_proj.weight"), random(&[kv, s.hidden])?)?;
        visit(format!("{attn}.v_proj.weight"), random(&[kv, s.hidden])?)?;
        visit(
            format!("{attn}.o_proj.weight"),
            random(&[s.hidden, s.hidden])?,
        )?;
        let mlp = format!("{p}.mlp");
        let (h, m) = (s.hidden, s.intermediate);
        visit(format!("{mlp}.gate_proj.weight"), random(&[m, h])?)?;
        visit(format!("{mlp}.up_proj.weight"), random(&[m, h])?)?;
        visit(format!("{mlp}.down_proj.weight"), random(&[h, m])?)?;
        visit(format!("{p}.input_layernorm.weight"), ones(s.hidden)?)?;
        visit(
            format!("{p}.post_attention_layernorm.weight"),
            ones(s.hidden)?,
        )?;
    }
    Ok(())
}

/// The largest absolute difference between two tensors of one shape, for comparing a model's
/// outputs with a reference.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> candle_core::Result<f32> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
}
