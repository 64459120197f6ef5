//! Finding and checking a model's files: a Hugging Face directory or the HF hub cache.
//!
//! Everything is checked before candle sees it, because candle's Llama loader panics on a
//! missing or misshapen tensor; a bad model directory must be a clear error instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_transformers::models::llama::LlamaConfig;
use llama_stack_core::{Error, Result};

/// The files of one model, checked and ready to load.
#[derive(Debug, Clone)]
pub(crate) struct ModelFiles {
    pub dir: PathBuf,
    pub config: LlamaConfig,
    pub weights: Vec<PathBuf>,
    pub tokenizer: PathBuf,
}

/// Where to look for a model: the configured directory, else the HF cache.
pub(crate) fn locate(
    model_path: Option<&str>,
    hf_cache_dir: Option<&str>,
    model_id: &str,
) -> Result<PathBuf> {
    if let Some(path) = model_path.filter(|p| !p.trim().is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            let is_gguf = path.extension().is_some_and(|e| e == "gguf");
            return Err(if is_gguf {
                Error::unsupported(format!(
                    "{}: GGUF models are not supported by inline::candle yet; point model_path at a Hugging Face directory with safetensors",
                    path.display()
                ))
            } else {
                Error::invalid(format!(
                    "model_path {} is a file; it must be a directory in Hugging Face layout (config.json, *.safetensors, tokenizer.json)",
                    path.display()
                ))
            });
        }
        if !path.is_dir() {
            return Err(Error::invalid(format!(
                "model_path {} does not exist; set LLAMA_MODEL_PATH to a model directory, or create a test model with `llama-stack model create-test <dir>`",
                path.display()
            )));
        }
        return Ok(path);
    }
    let cache = match hf_cache_dir.filter(|p| !p.trim().is_empty()) {
        Some(dir) => hf_hub::Cache::new(PathBuf::from(dir)),
        None => match std::env::var("HF_HUB_CACHE") {
            Ok(dir) if !dir.is_empty() => hf_hub::Cache::new(PathBuf::from(dir)),
            _ => hf_hub::Cache::from_env(),
        },
    };
    match cache.model(model_id.to_string()).get("config.json") {
        Some(config) => Ok(config.parent().map(Path::to_path_buf).unwrap_or_default()),
        None => Err(Error::invalid(format!(
            "model '{model_id}' was not found: no model_path is configured and the Hugging Face cache at {} has no snapshot of it. Set LLAMA_MODEL_PATH to a model directory, download the model into the cache, or create a test model with `llama-stack model create-test <dir>`",
            cache.path().display()
        ))),
    }
}

/// Reads and checks `config.json`, the weight files and the tokenizer in `dir`.
pub(crate) fn inspect(dir: &Path) -> Result<ModelFiles> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", config_path.display())))?;
    let config: LlamaConfig = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{} is not a Llama config: {e}",
            config_path.display()
        ))
    })?;
    if !config
        .hidden_size
        .is_multiple_of(config.num_attention_heads)
    {
        return Err(Error::invalid(format!(
            "{}: hidden_size {} is not a multiple of num_attention_heads {}",
            config_path.display(),
            config.hidden_size,
            config.num_attention_heads
        )));
    }
    let weights = weight_files(dir)?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; the model directory needs a Hugging Face tokenizer.json",
            tokenizer.display()
        )));
    }
    check_tensors(&config, &weights)?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
    })
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", index.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("{} is not JSON: {e}", index.display())))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::invalid(format!("{} has no weight_map", index.display())))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|v| v.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(Error::invalid(format!(
                "weight shard {} listed in {} is missing",
                missing.display(),
                index.display()
            )));
        }
        return Ok(files);
    }
    let is_gguf = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "gguf"))
        })
        .unwrap_or(false);
    Err(if is_gguf {
        Error::unsupported(format!(
            "{} holds GGUF weights, which inline::candle does not load yet; use safetensors",
            dir.display()
        ))
    } else {
        Error::invalid(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        ))
    })
}

/// The tensors a Llama checkpoint must hold, with their shapes.
fn expected_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let h = c.hidden_size;
    let head_dim = h / c.num_attention_heads;
    let kv = c.num_key_value_heads() * head_dim;
    let mut out = vec![
        (
            "model.embed_tokens.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !c.tie_word_embeddings.unwrap_or(false) {
        out.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.extend([
            (format!("{p}.self_attn.q_proj.weight"), vec![h, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, h]),
            (
                format!("{p}.mlp.gate_proj.weight"),
                vec![c.intermediate_size, h],
            ),
            (
                format!("{p}.mlp.up_proj.weight"),
                vec![c.intermediate_size, h],
            ),
            (
                format!("{p}.mlp.down_proj.weight"),
                vec![h, c.intermediate_size],
            ),
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
        ]);
    }
    out
}

fn check_tensors(config: &LlamaConfig, weights: &[PathBuf]) -> Result<()> {
    // SAFETY: the files are only read; a concurrent writer would corrupt the mapping, which is
    // the same contract every safetensors loader has.
    let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights) }
        .map_err(|e| Error::invalid(format!("cannot read the safetensors weights: {e}")))?;
    let found: HashMap<String, Vec<usize>> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    let mut problems = Vec::new();
    for (name, shape) in expected_tensors(config) {
        match found.get(&name) {
            None => problems.push(format!("missing tensor {name}")),
            Some(actual) if actual != &shape => problems.push(format!(
                "tensor {name} has shape {actual:?}, config.json implies {shape:?}"
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(5);
    problems.truncate(5);
    Err(Error::invalid(format!(
        "the weights do not match config.json: {}{}",
        problems.join("; "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    )))
}
