//! Building a [`LlamaModel`] from the three checkpoint layouts: GGUF (llama.cpp), Hugging Face
//! safetensors, and Meta's original `consolidated.*.pth` with `params.json`.
//!
//! Each layout only names its tensors and reads its hyper-parameters; the model is assembled
//! in one place. Shapes are checked before assembly, so a damaged file is an error naming the
//! tensor rather than a panic deep in a matmul.

use std::collections::HashMap;
use std::fs::File;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use llama_stack_core::{Error, Result};

use super::{Fused, Hyper, Layer, Linear, Llama3Scaling, LlamaModel, RopeFrequencies};

/// Precision of dense (non-GGUF) weights in memory; activations are always f32 on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DenseWeights {
    F32,
    F16,
    Bf16,
    /// Each matrix as the checkpoint stores it: f16 and bf16 stay half precision on CPU, where
    /// our kernels multiply them (widening them would double memory and memory traffic for the
    /// same values); anything else, and every matrix on a GPU, becomes f32.
    Stored,
}

/// Progress of a load: tensors read so far and in all.
pub(crate) type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// A source of named tensors in one checkpoint's naming.
trait Tensors {
    /// The weight, as it should be multiplied.
    fn matrix(&mut self, name: &str, shape: (usize, usize)) -> Result<Linear>;
    /// Matrices that read the same input (q, k, v; gate, up), joined where they can be.
    fn fused(&mut self, parts: &[(&str, (usize, usize))]) -> Result<Fused> {
        let parts = parts
            .iter()
            .map(|&(name, shape)| self.matrix(name, shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fused::new(parts))
    }
    /// A vector (norm weights), as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor>;
    fn has(&self, name: &str) -> bool;
}

/// Names of the tensors of a layout.
struct Names {
    embed: &'static str,
    norm: &'static str,
    output: &'static str,
    layer: fn(usize, LayerTensor) -> String,
}

#[derive(Clone, Copy)]
enum LayerTensor {
    AttnNorm,
    Q,
    K,
    V,
    O,
    FfnNorm,
    Gate,
    Up,
    Down,
}

fn assemble(
    hyper: Hyper,
    tensors: &mut dyn Tensors,
    names: &Names,
    max_seq_len: usize,
    device: &Device,
    progress: Progress<'_>,
) -> Result<LlamaModel> {
    let h = &hyper;
    let kv_dim = h.n_kv_heads * h.head_dim();
    let total = h.n_layers + 2;
    let embed = tensors.matrix(names.embed, (h.vocab_size, h.dim))?;
    progress(1, total);
    let mut layers = Vec::with_capacity(h.n_layers);
    for i in 0..h.n_layers {
        let name = |t| (names.layer)(i, t);
        use LayerTensor::*;
        layers.push(Layer {
            attn_norm: tensors.vector(&name(AttnNorm), h.dim)?,
            qkv: tensors.fused(&[
                (&name(Q), (h.dim, h.dim)),
                (&name(K), (kv_dim, h.dim)),
                (&name(V), (kv_dim, h.dim)),
            ])?,
            wo: tensors.matrix(&name(O), (h.dim, h.dim))?,
            ffn_norm: tensors.vector(&name(FfnNorm), h.dim)?,
            gate_up: tensors.fused(&[
                (&name(Gate), (h.ffn_dim, h.dim)),
                (&name(Up), (h.ffn_dim, h.dim)),
            ])?,
            w_down: tensors.matrix(&name(Down), (h.dim, h.ffn_dim))?,
        });
        progress(i + 2, total);
    }
    let norm = tensors.vector(names.norm, h.dim)?;
    // Llama 3.2 1B and 3B tie the output projection to the embeddings.
    let output = if tensors.has(names.output) {
        tensors.matrix(names.output, (h.vocab_size, h.dim))?
    } else {
        embed.clone()
    };
    progress(total, total);
    LlamaModel::new(hyper, embed, layers, norm, output, max_seq_len, device)
        .map_err(|e| Error::internal(format!("cannot build the rope tables: {e}")))
}

fn shape_error(name: &str, found: &[usize], expected: &[usize]) -> Error {
    Error::invalid(format!(
        "tensor {name} has shape {found:?}; the model's hyper-parameters imply {expected:?}"
    ))
}

fn candle_err(what: &str) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::invalid(format!("{what}: {e}"))
}

// ---------------------------------------------------------------- GGUF

struct Gguf<'a> {
    content: &'a gguf_file::Content,
    reader: Cursor<&'a [u8]>,
    /// The file `reader` reads, kept by the F16 and BF16 matrices served from it.
    map: Arc<memmap2::Mmap>,
    device: Device,
}

impl Gguf<'_> {
    fn qtensor(&mut self, name: &str) -> Result<QTensor> {
        if !self.content.tensor_infos.contains_key(name) {
            return Err(Error::invalid(format!(
                "the GGUF file has no tensor {name}"
            )));
        }
        self.content
            .tensor(&mut self.reader, name, &self.device)
            .map_err(candle_err(name))
    }
}

impl Gguf<'_> {
    /// Tensor `name`'s type and bytes in the mapped file, its shape checked.
    fn bytes(&self, name: &str, (rows, cols): (usize, usize)) -> Result<(GgmlDType, &[u8])> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::invalid(format!("the GGUF file has no tensor {name}")))?;
        if info.shape.dims() != [rows, cols] {
            return Err(shape_error(name, info.shape.dims(), &[rows, cols]));
        }
        let dtype = info.ggml_dtype;
        let len = rows * cols / dtype.block_size() * dtype.type_size();
        let start = self.content.tensor_data_offset as usize + info.offset as usize;
        let file = *self.reader.get_ref();
        let bytes = file.get(start..start + len).ok_or_else(|| {
            Error::invalid(format!(
                "tensor {name} ends past the end of the GGUF file ({} bytes): the file is \
                 truncated; download it again",
                file.len()
            ))
        })?;
        Ok((dtype, bytes))
    }
}

impl Tensors for Gguf<'_> {
    fn matrix(&mut self, name: &str, shape: (usize, usize)) -> Result<Linear> {
        let (dtype, bytes) = self.bytes(name, shape)?;
        // Formats our kernels read are repacked straight from the mapped file (F16 and BF16
        // served from it); candle's reader would copy each tensor into a buffer of its own.
        if self.device.is_cpu()
            && let Some(ours) =
                Linear::from_ggml_mapped(&self.map, dtype, shape.1, &[(shape.0, bytes)])
                    .map_err(candle_err(name))?
        {
            return Ok(ours);
        }
        let t = self.qtensor(name)?;
        Linear::from_qtensor(t).map_err(candle_err(name))
    }

    fn fused(&mut self, parts: &[(&str, (usize, usize))]) -> Result<Fused> {
        let found = parts
            .iter()
            .map(|&(name, shape)| self.bytes(name, shape))
            .collect::<Result<Vec<_>>>()?;
        let (dtype, cols) = (found[0].0, parts[0].1.1);
        // Parts whose rows fill whole groups of eight stack by appending groups, so they are
        // repacked into one buffer as they are read.
        let joinable = self.device.is_cpu()
            && parts.len() > 1
            && found.iter().all(|(d, _)| *d == dtype)
            && parts
                .iter()
                .all(|(_, (rows, c))| *c == cols && rows % 8 == 0);
        if joinable {
            let stacked: Vec<(usize, &[u8])> = parts
                .iter()
                .zip(&found)
                .map(|((_, (rows, _)), (_, b))| (*rows, *b))
                .collect();
            if let Some(all) = Linear::from_ggml_mapped(&self.map, dtype, cols, &stacked)
                .map_err(candle_err(parts[0].0))?
            {
                return Ok(Fused::joined(
                    parts.iter().map(|(_, (r, _))| *r).collect(),
                    all,
                ));
            }
        }
        let parts = parts
            .iter()
            .map(|&(name, shape)| self.matrix(name, shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(Fused::new(parts))
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        let t = self.qtensor(name)?;
        if t.shape().dims() != [len] {
            return Err(shape_error(name, t.shape().dims(), &[len]));
        }
        t.dequantize(&self.device).map_err(candle_err(name))
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }
}

/// The GGUF metadata value `key`, or a clear error naming it.
fn meta<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| Error::invalid(format!("the GGUF file has no `{key}` metadata")))
}

fn meta_usize(content: &gguf_file::Content, key: &str) -> Result<usize> {
    let v = meta(content, key)?;
    v.to_u64()
        .map(|n| n as usize)
        .or_else(|_| v.to_u32().map(|n| n as usize))
        .or_else(|_| v.to_i32().map(|n| n as usize))
        .map_err(|_| Error::invalid(format!("GGUF metadata `{key}` is not an integer")))
}

fn meta_f32(content: &gguf_file::Content, key: &str) -> Result<f32> {
    let v = meta(content, key)?;
    v.to_f32()
        .or_else(|_| v.to_f64().map(|f| f as f32))
        .map_err(|_| Error::invalid(format!("GGUF metadata `{key}` is not a number")))
}

/// A GGUF file mapped read-only. The header holds the whole tokenizer, hundreds of thousands of
/// short strings, which a reader over the file itself fetches with a read and a seek each
/// (seconds for a Llama 3 file); over the map they are memory reads.
pub(crate) struct MappedGguf(Arc<memmap2::Mmap>);

impl MappedGguf {
    pub(crate) fn open(path: &Path) -> Result<MappedGguf> {
        let file = File::open(path)
            .map_err(|e| Error::invalid(format!("cannot open {}: {e}", path.display())))?;
        // SAFETY: the map is read-only and lives as long as the reads from it (F16 and BF16
        // matrices keep it for the model's lifetime); as with llama.cpp's mapping, a model
        // file must not be rewritten while a server uses it.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::invalid(format!("cannot map {}: {e}", path.display())))?;
        Ok(MappedGguf(Arc::new(map)))
    }

    pub(crate) fn reader(&self) -> Cursor<&[u8]> {
        Cursor::new(&self.0[..])
    }
}

/// Reads a GGUF file's header: tensor table and metadata.
pub(crate) fn read_gguf(path: &Path) -> Result<gguf_file::Content> {
    read_mapped_gguf(path, &MappedGguf::open(path)?)
}

fn read_mapped_gguf(path: &Path, mapped: &MappedGguf) -> Result<gguf_file::Content> {
    gguf_file::Content::read(&mut mapped.reader()).map_err(|e| {
        // candle names no tensor when a type is unknown to it (IQ quantizations): say which.
        let unsupported = super::gguf_types::unsupported_tensor(path);
        Error::invalid(
            unsupported
                .unwrap_or_else(|| format!("{} is not a readable GGUF file: {e}", path.display())),
        )
    })
}

pub(crate) fn gguf_hyper(content: &gguf_file::Content) -> Result<Hyper> {
    let arch = meta(content, "general.architecture")?
        .to_string()
        .map_err(|_| Error::invalid("GGUF metadata `general.architecture` is not a string"))?;
    if arch != "llama" {
        return Err(Error::unsupported(format!(
            "the GGUF file holds a `{arch}` model; inline::candle serves the `llama` architecture (Llama 3.x)"
        )));
    }
    let dim = meta_usize(content, "llama.embedding_length")?;
    let n_heads = meta_usize(content, "llama.attention.head_count")?;
    let n_kv_heads = meta_usize(content, "llama.attention.head_count_kv").unwrap_or(n_heads);
    let vocab_size = match meta_usize(content, "llama.vocab_size") {
        Ok(n) => n,
        Err(_) => content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| Error::invalid("the GGUF file has no tensor token_embd.weight"))?,
    };
    if n_heads == 0
        || !dim.is_multiple_of(n_heads)
        || n_kv_heads == 0
        || !n_heads.is_multiple_of(n_kv_heads)
    {
        return Err(Error::invalid(format!(
            "GGUF head counts do not fit: embedding_length {dim}, head_count {n_heads}, head_count_kv {n_kv_heads}"
        )));
    }
    Ok(Hyper {
        vocab_size,
        dim,
        n_layers: meta_usize(content, "llama.block_count")?,
        n_heads,
        n_kv_heads,
        ffn_dim: meta_usize(content, "llama.feed_forward_length")?,
        norm_eps: meta_f32(content, "llama.attention.layer_norm_rms_epsilon")? as f64,
        rope_theta: meta_f32(content, "llama.rope.freq_base").unwrap_or(10_000.0),
        rope: RopeFrequencies::Plain,
        rope_interleaved: true,
        context_length: meta_usize(content, "llama.context_length").unwrap_or(4096),
    })
}

/// Loads a GGUF file of the `llama` architecture, serving `served_context(trained)` positions.
pub(crate) fn from_gguf(
    path: &Path,
    served_context: impl FnOnce(usize) -> usize,
    device: &Device,
    progress: Progress<'_>,
) -> Result<LlamaModel> {
    let mapped = MappedGguf::open(path)?;
    let content = read_mapped_gguf(path, &mapped)?;
    let mut hyper = gguf_hyper(&content)?;
    let max_seq_len = served_context(hyper.context_length);
    let mut tensors = Gguf {
        content: &content,
        reader: mapped.reader(),
        map: mapped.0.clone(),
        device: device.clone(),
    };
    if tensors.has("rope_freqs.weight") {
        let divisors = tensors
            .vector("rope_freqs.weight", hyper.head_dim() / 2)?
            .to_vec1::<f32>()
            .map_err(candle_err("rope_freqs.weight"))?;
        hyper.rope = RopeFrequencies::Divisors(divisors);
    }
    let names = Names {
        embed: "token_embd.weight",
        norm: "output_norm.weight",
        output: "output.weight",
        layer: |i, t| {
            let suffix = match t {
                LayerTensor::AttnNorm => "attn_norm",
                LayerTensor::Q => "attn_q",
                LayerTensor::K => "attn_k",
                LayerTensor::V => "attn_v",
                LayerTensor::O => "attn_output",
                LayerTensor::FfnNorm => "ffn_norm",
                LayerTensor::Gate => "ffn_gate",
                LayerTensor::Up => "ffn_up",
                LayerTensor::Down => "ffn_down",
            };
            format!("blk.{i}.{suffix}.weight")
        },
    };
    assemble(hyper, &mut tensors, &names, max_seq_len, device, progress)
}

// ------------------------------------------------ safetensors and .pth (dense weights)

/// Dense tensors by name, from safetensors or a PyTorch checkpoint.
struct Dense {
    tensors: DenseSource,
    precision: DenseWeights,
    device: Device,
}

enum DenseSource {
    Loaded(HashMap<String, Tensor>),
    /// Mapped files, read one tensor at a time so the f32 copy is the only one in memory.
    Mapped(candle_core::safetensors::MmapedSafetensors),
}

impl Dense {
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = match &mut self.tensors {
            DenseSource::Loaded(map) => map.remove(name),
            DenseSource::Mapped(files) => match files.get(name) {
                Ok(_) => Some(files.load(name, &Device::Cpu).map_err(candle_err(name))?),
                Err(_) => None,
            },
        }
        .ok_or_else(|| Error::invalid(format!("the checkpoint has no tensor {name}")))?;
        if t.dims() != shape {
            return Err(shape_error(name, t.dims(), shape));
        }
        t.to_device(&self.device).map_err(candle_err(name))
    }
}

impl Tensors for Dense {
    fn matrix(&mut self, name: &str, (rows, cols): (usize, usize)) -> Result<Linear> {
        let t = self.take(name, &[rows, cols])?;
        let quantized = |dtype| -> Result<Linear> {
            let t = t.to_dtype(DType::F32).map_err(candle_err(name))?;
            let q = QTensor::quantize(&t, dtype).map_err(candle_err(name))?;
            // Kept in half precision: `QMatMul::from_arc` would widen it to f32 again.
            Ok(Linear::Candle(QMatMul::QTensor(Arc::new(q))))
        };
        let precision = match (self.precision, t.dtype()) {
            (DenseWeights::Stored, DType::BF16) if self.device.is_cpu() => DenseWeights::Bf16,
            (DenseWeights::Stored, DType::F16) if self.device.is_cpu() => DenseWeights::F16,
            (DenseWeights::Stored, _) => DenseWeights::F32,
            (chosen, _) => chosen,
        };
        match precision {
            DenseWeights::Stored => unreachable!("resolved above"),
            DenseWeights::F32 => Ok(Linear::Candle(QMatMul::Tensor(
                t.to_dtype(DType::F32).map_err(candle_err(name))?,
            ))),
            DenseWeights::F16 | DenseWeights::Bf16 if self.device.is_cpu() => {
                let dtype = match precision {
                    DenseWeights::Bf16 => DType::BF16,
                    _ => DType::F16,
                };
                Linear::half_from_tensor(&t, dtype).map_err(candle_err(name))
            }
            DenseWeights::F16 => quantized(GgmlDType::F16),
            DenseWeights::Bf16 => quantized(GgmlDType::BF16),
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Tensor> {
        self.take(name, &[len])?
            .to_dtype(DType::F32)
            .map_err(candle_err(name))
    }

    fn has(&self, name: &str) -> bool {
        match &self.tensors {
            DenseSource::Loaded(map) => map.contains_key(name),
            DenseSource::Mapped(files) => files.get(name).is_ok(),
        }
    }
}

/// Loads a Hugging Face checkpoint (`config.json` + safetensors), already checked by
/// `model_files::inspect`.
pub(crate) fn from_safetensors(
    config: &candle_transformers::models::llama::LlamaConfig,
    weights: &[std::path::PathBuf],
    precision: DenseWeights,
    max_seq_len: usize,
    device: &Device,
    progress: Progress<'_>,
) -> Result<LlamaModel> {
    // SAFETY: the files are only read; a concurrent writer would corrupt the mapping, which is
    // the same contract every safetensors loader has.
    let files = unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights) }
        .map_err(|e| Error::invalid(format!("cannot map the safetensors weights: {e}")))?;
    let rope = match &config.rope_scaling {
        Some(s) => RopeFrequencies::Llama3(Llama3Scaling {
            factor: s.factor,
            low_freq_factor: s.low_freq_factor,
            high_freq_factor: s.high_freq_factor,
            original_max_position: s.original_max_position_embeddings,
        }),
        None => RopeFrequencies::Plain,
    };
    let hyper = Hyper {
        vocab_size: config.vocab_size,
        dim: config.hidden_size,
        n_layers: config.num_hidden_layers,
        n_heads: config.num_attention_heads,
        n_kv_heads: config
            .num_key_value_heads
            .unwrap_or(config.num_attention_heads),
        ffn_dim: config.intermediate_size,
        norm_eps: config.rms_norm_eps,
        rope_theta: config.rope_theta,
        rope,
        rope_interleaved: false,
        context_length: config.max_position_embeddings,
    };
    let names = Names {
        embed: "model.embed_tokens.weight",
        norm: "model.norm.weight",
        output: "lm_head.weight",
        layer: |i, t| {
            let suffix = match t {
                LayerTensor::AttnNorm => "input_layernorm",
                LayerTensor::Q => "self_attn.q_proj",
                LayerTensor::K => "self_attn.k_proj",
                LayerTensor::V => "self_attn.v_proj",
                LayerTensor::O => "self_attn.o_proj",
                LayerTensor::FfnNorm => "post_attention_layernorm",
                LayerTensor::Gate => "mlp.gate_proj",
                LayerTensor::Up => "mlp.up_proj",
                LayerTensor::Down => "mlp.down_proj",
            };
            format!("model.layers.{i}.{suffix}.weight")
        },
    };
    let mut dense = Dense {
        tensors: DenseSource::Mapped(files),
        precision,
        device: device.clone(),
    };
    assemble(hyper, &mut dense, &names, max_seq_len, device, progress)
}

/// Meta's `params.json`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct MetaParams {
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default)]
    pub use_scaled_rope: bool,
    /// Not in Meta's files; Meta's reference code scales by 8 for every Llama 3.x model.
    #[serde(default)]
    pub rope_scaling_factor: Option<f32>,
}

fn default_norm_eps() -> f64 {
    1e-5
}
fn default_theta() -> f32 {
    500_000.0
}

/// Loads Meta's original layout: `params.json` and one `consolidated.00.pth`.
pub(crate) fn from_meta(
    params: &MetaParams,
    checkpoint: &Path,
    precision: DenseWeights,
    max_seq_len: usize,
    device: &Device,
    progress: Progress<'_>,
) -> Result<LlamaModel> {
    let tensors: HashMap<String, Tensor> = candle_core::pickle::read_all(checkpoint)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", checkpoint.display())))?
        .into_iter()
        .collect();
    let ffn_dim = tensors
        .get("layers.0.feed_forward.w1.weight")
        .map(|t| t.dims()[0])
        .ok_or_else(|| {
            Error::invalid(format!(
                "{} has no tensor layers.0.feed_forward.w1.weight",
                checkpoint.display()
            ))
        })?;
    let hyper = Hyper {
        vocab_size: params.vocab_size,
        dim: params.dim,
        n_layers: params.n_layers,
        n_heads: params.n_heads,
        n_kv_heads: params.n_kv_heads.unwrap_or(params.n_heads),
        ffn_dim,
        norm_eps: params.norm_eps,
        rope_theta: params.rope_theta,
        rope: if params.use_scaled_rope {
            RopeFrequencies::Llama3(Llama3Scaling {
                factor: params.rope_scaling_factor.unwrap_or(8.0),
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position: 8192,
            })
        } else {
            RopeFrequencies::Plain
        },
        rope_interleaved: true,
        context_length: if params.use_scaled_rope {
            131_072
        } else {
            8192
        },
    };
    let names = Names {
        embed: "tok_embeddings.weight",
        norm: "norm.weight",
        output: "output.weight",
        layer: |i, t| {
            let suffix = match t {
                LayerTensor::AttnNorm => "attention_norm",
                LayerTensor::Q => "attention.wq",
                LayerTensor::K => "attention.wk",
                LayerTensor::V => "attention.wv",
                LayerTensor::O => "attention.wo",
                LayerTensor::FfnNorm => "ffn_norm",
                LayerTensor::Gate => "feed_forward.w1",
                LayerTensor::Up => "feed_forward.w3",
                LayerTensor::Down => "feed_forward.w2",
            };
            format!("layers.{i}.{suffix}.weight")
        },
    };
    let mut dense = Dense {
        tensors: DenseSource::Loaded(tensors),
        precision,
        device: device.clone(),
    };
    assemble(hyper, &mut dense, &names, max_seq_len, device, progress)
}
