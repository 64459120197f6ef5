//! The GGUF form of the test model: the tensor names, layout and metadata keys llama.cpp uses
//! for Llama 3 checkpoints, written with candle's GGUF writer. Besides the weights, the file
//! carries the whole Llama 3 tokenizer (`tokenizer.ggml.*`), without which llama.cpp refuses
//! to load a model, and the Llama 3 rope scaling as `rope_freqs.weight`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use llama_stack_core::{Error, Result};
use llama_stack_llama3::{BEGIN_OF_TEXT, EOT_ID};
use serde_json::Value as Json;

use super::{
    CONTEXT_LENGTH, Preset, RMS_NORM_EPS, ROPE_SCALING, ROPE_THETA, Shape, VOCAB_SIZE, io_error,
    random_weights,
};

/// How the matrices of a GGUF test model are stored. Norms and `rope_freqs.weight` are always
/// F32, as in llama.cpp's own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl GgufType {
    /// The name `--quant` takes.
    pub fn name(self) -> &'static str {
        match self {
            GgufType::F32 => "f32",
            GgufType::F16 => "f16",
            GgufType::Q8_0 => "q8_0",
            GgufType::Q4_0 => "q4_0",
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            GgufType::F32 => GgmlDType::F32,
            GgufType::F16 => GgmlDType::F16,
            GgufType::Q8_0 => GgmlDType::Q8_0,
            GgufType::Q4_0 => GgmlDType::Q4_0,
        }
    }

    /// `general.file_type`: llama.cpp's `llama_ftype` numbering.
    fn file_type(self) -> u32 {
        match self {
            GgufType::F32 => 0,
            GgufType::F16 => 1,
            GgufType::Q4_0 => 2,
            GgufType::Q8_0 => 7,
        }
    }
}

impl std::str::FromStr for GgufType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [GgufType::F32, GgufType::F16, GgufType::Q8_0, GgufType::Q4_0]
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown GGUF type `{s}`; use f32, f16, q8_0 or q4_0"))
    }
}

/// llama.cpp's token types (`llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;

/// Version of ggml's block formats that llama.cpp stamps on every file it writes.
const GGML_QUANTIZATION_VERSION: u32 = 2;

/// A plain Llama 3 chat template (no tool calling), for `tokenizer.chat_template`.
const CHAT_TEMPLATE: &str = "{{- bos_token }}\
{%- for message in messages %}\
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}\
{{- message['content'] | trim }}\
{{- '<|eot_id|>' }}\
{%- endfor %}\
{%- if add_generation_prompt %}\
{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\
{%- endif %}";

fn candle_error(e: candle_core::Error) -> Error {
    Error::internal(e.to_string())
}

/// Writes the GGUF file of `preset` with the weights `seed` draws, stored as `ty`.
pub(super) fn write(
    path: &Path,
    preset: Preset,
    tokenizer: &Json,
    ty: GgufType,
    seed: u64,
) -> Result<()> {
    let s = preset.shape();
    let mut metadata = hyper_parameters(&s, preset, ty);
    metadata.extend(tokenizer_metadata(tokenizer)?);

    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(3 + 9 * s.layers);
    let factors = Tensor::new(rope_freq_factors(s.head_dim()).as_slice(), &Device::Cpu)
        .and_then(|t| QTensor::quantize(&t, GgmlDType::F32))
        .map_err(candle_error)?;
    tensors.push(("rope_freqs.weight".into(), factors));
    // One tensor at a time: the 1b preset in F32 would need twice its 5 GB otherwise.
    random_weights(&s, DType::F32, seed, |hf_name, tensor| {
        let (name, tensor) = to_gguf(&s, &hf_name, tensor)?;
        let stored = if tensor.rank() == 1 {
            GgmlDType::F32
        } else {
            ty.ggml()
        };
        let q = QTensor::quantize(&tensor, stored)
            .map_err(|e| Error::internal(format!("quantizing {name} to {stored:?}: {e}")))?;
        tensors.push((name, q));
        Ok(())
    })?;

    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    // Written beside, then renamed: an interrupted run never leaves a truncated model.gguf.
    let partial = path.with_extension("gguf.partial");
    let file = File::create(&partial).map_err(|e| io_error(&partial, e))?;
    let mut out = BufWriter::new(file);
    gguf_file::write(&mut out, &metadata, &tensors).map_err(|e| io_error(&partial, e))?;
    out.flush().map_err(|e| io_error(&partial, e))?;
    drop(out);
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

/// The `general.*` and `llama.*` keys.
fn hyper_parameters(s: &Shape, preset: Preset, ty: GgufType) -> Vec<(String, Value)> {
    let count = |n: usize| Value::U32(n as u32);
    let text = |t: &str| Value::String(t.to_string());
    let name = format!("Llama 3 test model ({}, random weights)", preset.name());
    [
        ("general.architecture", text("llama")),
        ("general.type", text("model")),
        ("general.name", Value::String(name)),
        ("general.file_type", Value::U32(ty.file_type())),
        (
            "general.quantization_version",
            Value::U32(GGML_QUANTIZATION_VERSION),
        ),
        ("llama.vocab_size", count(VOCAB_SIZE)),
        ("llama.context_length", count(CONTEXT_LENGTH)),
        ("llama.embedding_length", count(s.hidden)),
        ("llama.block_count", count(s.layers)),
        ("llama.feed_forward_length", count(s.intermediate)),
        ("llama.attention.head_count", count(s.heads)),
        ("llama.attention.head_count_kv", count(s.kv_heads)),
        ("llama.attention.key_length", count(s.head_dim())),
        ("llama.attention.value_length", count(s.head_dim())),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(RMS_NORM_EPS as f32),
        ),
        ("llama.rope.freq_base", Value::F32(ROPE_THETA as f32)),
        ("llama.rope.dimension_count", count(s.head_dim())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The `tokenizer.*` keys, from the converted `tokenizer.json`: its vocabulary keys are already
/// in GPT-2's byte-to-character form, which is what llama.cpp's BPE vocabulary stores.
fn tokenizer_metadata(tokenizer: &Json) -> Result<Vec<(String, Value)>> {
    let bad = |what: &str| Error::internal(format!("converted tokenizer.json: {what}"));
    let model = &tokenizer["model"];
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; VOCAB_SIZE];
    let mut place = |id: Option<u64>, text: &str, kind: i32| -> Result<()> {
        let slot = id
            .and_then(|id| tokens.get_mut(id as usize))
            .ok_or_else(|| bad(&format!("token {text:?} has an id outside the vocabulary")))?;
        *slot = Some((text.to_string(), kind));
        Ok(())
    };
    let vocab = model["vocab"].as_object().ok_or_else(|| bad("no vocab"))?;
    for (text, id) in vocab {
        place(id.as_u64(), text, TOKEN_NORMAL)?;
    }
    let added = tokenizer["added_tokens"].as_array();
    for token in added.into_iter().flatten() {
        let text = token["content"]
            .as_str()
            .ok_or_else(|| bad("added token"))?;
        let kind = if token["special"].as_bool() == Some(true) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        place(token["id"].as_u64(), text, kind)?;
    }
    let mut texts = Vec::with_capacity(VOCAB_SIZE);
    let mut kinds = Vec::with_capacity(VOCAB_SIZE);
    for (id, token) in tokens.into_iter().enumerate() {
        let (text, kind) = token.ok_or_else(|| bad(&format!("no token has id {id}")))?;
        texts.push(Value::String(text));
        kinds.push(Value::I32(kind));
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| bad("no merges"))?
        .iter()
        .map(|merge| match merge {
            // `tokenizers` writes a merge as a pair, older files as one "left right" string.
            Json::Array(pair) => match pair.as_slice() {
                [Json::String(l), Json::String(r)] => Ok(Value::String(format!("{l} {r}"))),
                _ => Err(bad("malformed merge")),
            },
            Json::String(both) => Ok(Value::String(both.clone())),
            _ => Err(bad("malformed merge")),
        })
        .collect::<Result<Vec<_>>>()?;
    let text = |t: &str| Value::String(t.to_string());
    Ok([
        ("tokenizer.ggml.model", text("gpt2")),
        // The pre-tokenizer name llama.cpp maps to the Llama 3 split regex.
        ("tokenizer.ggml.pre", text("llama-bpe")),
        ("tokenizer.ggml.tokens", Value::Array(texts)),
        ("tokenizer.ggml.token_type", Value::Array(kinds)),
        ("tokenizer.ggml.merges", Value::Array(merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(BEGIN_OF_TEXT)),
        ("tokenizer.ggml.eos_token_id", Value::U32(EOT_ID)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.chat_template", text(CHAT_TEMPLATE)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// The GGUF name and layout of a Hugging Face tensor.
fn to_gguf(s: &Shape, hf_name: &str, tensor: Tensor) -> Result<(String, Tensor)> {
    let unknown = || Error::internal(format!("no GGUF name for {hf_name}"));
    match hf_name {
        "model.embed_tokens.weight" => return Ok(("token_embd.weight".into(), tensor)),
        "model.norm.weight" => return Ok(("output_norm.weight".into(), tensor)),
        _ => {}
    }
    // Tied embeddings: no `output.weight`; llama.cpp and candle then use `token_embd.weight`.
    let rest = hf_name.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (layer, rest) = rest.split_once('.').ok_or_else(unknown)?;
    let (name, rope_heads) = match rest {
        "self_attn.q_proj.weight" => ("attn_q", Some(s.heads)),
        "self_attn.k_proj.weight" => ("attn_k", Some(s.kv_heads)),
        "self_attn.v_proj.weight" => ("attn_v", None),
        "self_attn.o_proj.weight" => ("attn_output", None),
        "mlp.gate_proj.weight" => ("ffn_gate", None),
        "mlp.up_proj.weight" => ("ffn_up", None),
        "mlp.down_proj.weight" => ("ffn_down", None),
        "input_layernorm.weight" => ("attn_norm", None),
        "post_attention_layernorm.weight" => ("ffn_norm", None),
        _ => return Err(unknown()),
    };
    let tensor = match rope_heads {
        Some(heads) => interleave_rope_rows(&tensor, heads).map_err(candle_error)?,
        None => tensor,
    };
    // A torch-shaped [out, in] matrix is what GGUF stores with ne = [in, out]: candle's writer
    // reverses the dimensions itself.
    Ok((format!("blk.{layer}.{name}.weight"), tensor))
}

/// Reorders the rows of a query or key projection from Hugging Face's rope layout to llama.cpp's.
///
/// Hugging Face Llama checkpoints rotate row `j` of each head with row `j + head_dim / 2`;
/// llama.cpp's Llama rope (and candle's GGUF Llama, `rope_i`) rotates rows `2j` and `2j + 1`.
/// Moving row `j + half * head_dim / 2` to `2j + half` within each head applies one fixed
/// permutation to every query and key, so attention scores, and the model, are unchanged. The
/// weights are random, but with this the GGUF model is the safetensors model of the same seed.
fn interleave_rope_rows(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// `rope_freqs.weight`: for each rotated pair (`head_dim / 2` of them), the number llama.cpp
/// divides its rope frequency by, which is Llama 3's rope scaling. Frequencies whose wavelength
/// is shorter than `original / high_freq_factor` positions are kept, those longer than
/// `original / low_freq_factor` are divided by `factor`, and those between move smoothly from
/// one to the other.
fn rope_freq_factors(head_dim: usize) -> Vec<f32> {
    let (factor, low, high, original) = ROPE_SCALING;
    let original = original as f64;
    let (long_wavelength, short_wavelength) = (original / low, original / high);
    (0..head_dim)
        .step_by(2)
        .map(|i| {
            let frequency = ROPE_THETA.powf(-(i as f64) / head_dim as f64);
            let wavelength = 2.0 * std::f64::consts::PI / frequency;
            let divisor = if wavelength < short_wavelength {
                1.0
            } else if wavelength > long_wavelength {
                factor
            } else {
                let smooth = (original / wavelength - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            };
            divisor as f32
        })
        .collect()
}
