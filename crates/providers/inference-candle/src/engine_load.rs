//! Loading what an engine serves: the device, dtypes and KV cache type a config names, the
//! model (text or vision) and its tokenizer.

use std::sync::Arc;

use candle_core::Device;
use llama_stack_core::{Error, Result};
use tokenizers::Tokenizer;

use crate::engine_model::EngineModel;
use crate::llama::load::{self, DenseWeights};
use crate::llama::{KvDtype, LlamaModel};
use crate::model_files::{ModelFiles, TokenizerSource, Weights, tokenizer_json};
use crate::vision::serve::VisionServing;

pub(crate) fn parse_device(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    if let Some(rest) = name.strip_prefix("metal") {
        let ordinal = rest
            .strip_prefix(':')
            .map(|n| n.parse::<usize>().unwrap_or(0))
            .unwrap_or(0);
        return Device::new_metal(ordinal).map_err(|e| {
            Error::invalid(format!(
                "device `{name}` is not available: {e}. Build with `--features llama-stack-provider-inference-candle/metal` on macOS, or use `cpu`"
            ))
        });
    }
    let ordinal = name
        .strip_prefix("cuda:")
        .map(|n| n.parse::<usize>().unwrap_or(0))
        .unwrap_or(0);
    Device::new_cuda(ordinal).map_err(|e| {
        Error::invalid(format!(
            "device `{name}` is not available: {e}. Build with `--features cuda` on a machine with CUDA, or use `cpu`"
        ))
    })
}

/// Storage precision of dense weights for the configured `dtype`.
pub(crate) fn parse_dtype(name: &str) -> DenseWeights {
    match name {
        "bf16" => DenseWeights::Bf16,
        "f16" => DenseWeights::F16,
        "f32" => DenseWeights::F32,
        _ => DenseWeights::Stored,
    }
}

/// How the KV cache stores keys and values for the configured `kv_cache_dtype`.
pub(crate) fn parse_kv_dtype(name: &str) -> Result<KvDtype> {
    KvDtype::parse(name).ok_or_else(|| {
        Error::invalid(format!(
            "unknown kv_cache_dtype `{name}`; use {}",
            KvDtype::NAMES.join(", ")
        ))
    })
}

/// The context served: `max_seq_len` when given, else the model's capped at 8192 to bound
/// KV-cache memory; never past the model's own.
fn served_context(max_seq_len: Option<usize>, context: usize) -> usize {
    match max_seq_len {
        // Like vLLM's `max_model_len`, not llama.cpp's `n_ctx`: positions past the trained
        // context give garbage, so a longer setting is clamped rather than honoured.
        Some(asked) if asked > context => {
            tracing::warn!(
                max_seq_len = asked,
                model_context = context,
                "max_seq_len exceeds the model's context length; serving {context} tokens"
            );
            context
        }
        Some(asked) => asked,
        None => context.min(8192),
    }
}

/// Loads the model. Blocking: call from `spawn_blocking`.
pub(crate) fn load_model(
    files: &ModelFiles,
    device: &Device,
    precision: DenseWeights,
    max_seq_len: Option<usize>,
    weight_quant: Option<candle_core::quantized::GgmlDType>,
    progress: load::Progress<'_>,
) -> Result<EngineModel> {
    if let Weights::Mllama { dir, context } = &files.weights {
        let served = served_context(max_seq_len, *context);
        let model = VisionServing::load(dir, served, device, weight_quant)
            .map_err(|e| Error::invalid(format!("cannot load {}: {e}", dir.display())))?;
        return Ok(EngineModel::Vision(Arc::new(model)));
    }
    if weight_quant.is_some() {
        return Err(Error::invalid(format!(
            "{}: `quantize` applies to Llama 3.2 Vision checkpoints; for a text model, serve a \
             GGUF file of the type wanted (`llama-quantize` writes one from a safetensors \
             checkpoint) and leave `quantize` unset",
            files.location.display()
        )));
    }
    load_text_model(files, device, precision, max_seq_len, progress).map(EngineModel::Text)
}

/// Loads a text-only Llama model. Blocking: call from `spawn_blocking`.
pub(crate) fn load_text_model(
    files: &ModelFiles,
    device: &Device,
    precision: DenseWeights,
    max_seq_len: Option<usize>,
    progress: load::Progress<'_>,
) -> Result<LlamaModel> {
    let served = |context: usize| served_context(max_seq_len, context);
    match &files.weights {
        Weights::Mllama { dir, .. } => Err(Error::invalid(format!(
            "{} holds a Llama 3.2 Vision checkpoint, not a text-only Llama",
            dir.display()
        ))),
        Weights::Gguf(path) => load::from_gguf(path, served, device, progress),
        Weights::Safetensors { config, files } => load::from_safetensors(
            config,
            files,
            precision,
            served(config.max_position_embeddings),
            device,
            progress,
        ),
        Weights::Meta { params, checkpoint } => {
            let context = if params.use_scaled_rope {
                131_072
            } else {
                8192
            };
            load::from_meta(
                params,
                checkpoint,
                precision,
                served(context),
                device,
                progress,
            )
        }
    }
}

/// The tokenizer at `path`, and the longest token's length in bytes.
pub(crate) fn load_tokenizer(path: &TokenizerSource) -> Result<(Arc<Tokenizer>, usize)> {
    let json = tokenizer_json(path)?;
    let tokenizer: Tokenizer = serde_json::from_value(json)
        .map_err(|e| Error::invalid(format!("cannot load the tokenizer {path:?}: {e}")))?;
    // Byte-level BPE spells each byte as one character, so characters count bytes.
    let max_token_bytes = tokenizer
        .get_vocab(true)
        .keys()
        .map(|t| t.chars().count())
        .max()
        .unwrap_or(1)
        .max(1);
    Ok((Arc::new(tokenizer), max_token_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_context_defaults_to_8k_and_never_passes_the_model() {
        assert_eq!(served_context(None, 131_072), 8192);
        assert_eq!(served_context(None, 2048), 2048);
        assert_eq!(served_context(Some(131_072), 131_072), 131_072);
        assert_eq!(served_context(Some(200_000), 131_072), 131_072);
        assert_eq!(served_context(Some(100), 131_072), 100);
    }
}
