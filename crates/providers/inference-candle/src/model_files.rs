//! Finding and checking a model's files: a Hugging Face directory or the HF hub cache.
//!
//! Everything is checked before candle sees it, because candle's Llama loader panics on a
//! missing or misshapen tensor; a bad model directory must be a clear error instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_transformers::models::llama::LlamaConfig;

use crate::llama::load::MetaParams;
use llama_stack_core::{Error, Result};

/// The files of one model, checked and ready to load.
#[derive(Debug)]
pub(crate) struct ModelFiles {
    /// The directory or GGUF file the model was found at; models sharing it share one engine.
    pub location: PathBuf,
    pub weights: Weights,
    pub tokenizer: TokenizerSource,
}

/// The checkpoint layouts `inline::candle` reads.
#[derive(Debug)]
pub(crate) enum Weights {
    /// Hugging Face: `config.json` and `model.safetensors` (or shards with an index).
    Safetensors {
        config: LlamaConfig,
        files: Vec<PathBuf>,
    },
    /// One GGUF file as llama.cpp writes it.
    Gguf(PathBuf),
    /// Meta's original layout: `params.json` and `consolidated.00.pth`.
    Meta {
        params: MetaParams,
        checkpoint: PathBuf,
    },
    /// A Hugging Face Llama 3.2 Vision (`MllamaForConditionalGeneration`) checkpoint;
    /// `context` is its text model's `max_position_embeddings`.
    Mllama { dir: PathBuf, context: usize },
}

impl Weights {
    pub fn format(&self) -> &'static str {
        match self {
            Weights::Safetensors { .. } => "safetensors",
            Weights::Gguf(_) => "gguf",
            Weights::Meta { .. } => "meta",
            Weights::Mllama { .. } => "mllama safetensors",
        }
    }
}

/// Where the tokenizer comes from.
#[derive(Debug, Clone)]
pub(crate) enum TokenizerSource {
    /// A Hugging Face `tokenizer.json`.
    Json(PathBuf),
    /// Meta's tiktoken `tokenizer.model`, converted on load.
    Tiktoken(PathBuf),
    /// The tokenizer embedded in a GGUF file's metadata.
    Gguf(PathBuf),
}

/// The Hugging Face hub cache to search: the configured one, else `$HF_HUB_CACHE`, else
/// `$HF_HOME/hub` or `~/.cache/huggingface/hub`.
pub fn hf_cache(hf_cache_dir: Option<&str>) -> hf_hub::Cache {
    match hf_cache_dir.filter(|p| !p.trim().is_empty()) {
        Some(dir) => hf_hub::Cache::new(PathBuf::from(dir)),
        None => match std::env::var("HF_HUB_CACHE") {
            Ok(dir) if !dir.is_empty() => hf_hub::Cache::new(PathBuf::from(dir)),
            _ => hf_hub::Cache::from_env(),
        },
    }
}

/// The snapshot directory of `repo_id` in the cache, when one is there.
pub fn cached_snapshot(cache: &hf_hub::Cache, repo_id: &str) -> Option<PathBuf> {
    let repo = cache.model(repo_id.to_string());
    // The ref file names the snapshot; any file lookup resolves it.
    let marker = ["config.json", "params.json", "tokenizer.json"]
        .iter()
        .find_map(|f| repo.get(f));
    if let Some(file) = marker {
        return file.parent().map(Path::to_path_buf);
    }
    // A GGUF-only repository: take the snapshot that `refs/main` names.
    let folder = cache
        .path()
        .join(format!("models--{}", repo_id.replace('/', "--")));
    let commit = std::fs::read_to_string(folder.join("refs").join("main")).ok()?;
    let snapshot = folder.join("snapshots").join(commit.trim());
    snapshot.is_dir().then_some(snapshot)
}

/// Where to find a model: the configured path (a directory or a GGUF file), else the HF cache.
pub(crate) fn locate(
    model_path: Option<&str>,
    hf_cache_dir: Option<&str>,
    model_id: &str,
) -> Result<PathBuf> {
    if let Some(path) = model_path.filter(|p| !p.trim().is_empty()) {
        let path = PathBuf::from(path);
        if !path.exists() {
            return Err(Error::invalid(format!(
                "model_path {} does not exist; set LLAMA_MODEL_PATH to a model directory or GGUF file, download one with `llama-stack model download <repo-id>`, or create a test model with `llama-stack model create-test <dir>`",
                path.display()
            )));
        }
        return Ok(path);
    }
    let cache = hf_cache(hf_cache_dir);
    cached_snapshot(&cache, model_id).ok_or_else(|| {
        Error::invalid(format!(
            "model '{model_id}' was not found: no model_path is configured and the Hugging Face cache at {} has no snapshot of it. Get it with `llama-stack model download {model_id}` (set HF_TOKEN for gated repositories), set LLAMA_MODEL_PATH to a model directory or GGUF file, or create a test model with `llama-stack model create-test <dir>`",
            cache.path().display()
        ))
    })
}

/// Reads and checks the model at `location`: a GGUF file, or a directory in Hugging Face or
/// Meta layout (or holding exactly one GGUF file).
pub(crate) fn inspect(location: &Path) -> Result<ModelFiles> {
    if location.is_file() {
        if location.extension().is_some_and(|e| e == "gguf") {
            return inspect_gguf(location);
        }
        return Err(Error::invalid(format!(
            "{} is a file but not a .gguf file; point model_path at a GGUF file or a model directory",
            location.display()
        )));
    }
    let dir = location;
    if dir.join("config.json").is_file() {
        return inspect_hf(dir);
    }
    if dir.join("params.json").is_file() {
        return inspect_meta(dir);
    }
    let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    match ggufs.as_slice() {
        [one] => inspect_gguf(one),
        [] => Err(Error::invalid(format!(
            "{} holds no model: expected config.json with *.safetensors (Hugging Face), params.json with consolidated.00.pth (Meta), or a .gguf file",
            dir.display()
        ))),
        many => Err(Error::invalid(format!(
            "{} holds {} GGUF files; set model_path to the one to serve",
            dir.display(),
            many.len()
        ))),
    }
}

fn inspect_gguf(path: &Path) -> Result<ModelFiles> {
    let content = crate::llama::load::read_gguf(path)?;
    crate::llama::load::gguf_hyper(&content)?;
    // A tokenizer.json next to the file wins over the embedded one.
    let beside = path.with_file_name("tokenizer.json");
    let tokenizer = if beside.is_file() {
        TokenizerSource::Json(beside)
    } else if content.metadata.contains_key("tokenizer.ggml.tokens") {
        TokenizerSource::Gguf(path.to_path_buf())
    } else {
        return Err(Error::invalid(format!(
            "{} embeds no tokenizer (tokenizer.ggml.tokens) and no tokenizer.json lies next to it",
            path.display()
        )));
    };
    Ok(ModelFiles {
        location: path.to_path_buf(),
        weights: Weights::Gguf(path.to_path_buf()),
        tokenizer,
    })
}

fn inspect_meta(dir: &Path) -> Result<ModelFiles> {
    let params_path = dir.join("params.json");
    let text = std::fs::read_to_string(&params_path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", params_path.display())))?;
    let params: MetaParams = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{} is not a Llama params.json: {e}",
            params_path.display()
        ))
    })?;
    let checkpoint = dir.join("consolidated.00.pth");
    if !checkpoint.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; Meta's layout needs params.json and consolidated.00.pth",
            checkpoint.display()
        )));
    }
    if dir.join("consolidated.01.pth").is_file() {
        return Err(Error::unsupported(format!(
            "{} holds a checkpoint sharded for model parallelism (consolidated.01.pth, ...), which inline::candle does not merge; convert it to Hugging Face or GGUF",
            dir.display()
        )));
    }
    let tokenizer = dir.join("tokenizer.model");
    if !tokenizer.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; Meta's layout ships the tiktoken tokenizer.model next to params.json",
            tokenizer.display()
        )));
    }
    Ok(ModelFiles {
        location: dir.to_path_buf(),
        weights: Weights::Meta { params, checkpoint },
        tokenizer: TokenizerSource::Tiktoken(tokenizer),
    })
}

fn inspect_hf(dir: &Path) -> Result<ModelFiles> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", config_path.display())))?;
    if let Some(files) = inspect_mllama(dir, &config_path, &text)? {
        return Ok(files);
    }
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
    let files = weight_files(dir)?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; the model directory needs a Hugging Face tokenizer.json",
            tokenizer.display()
        )));
    }
    check_tensors(&config, &files)?;
    Ok(ModelFiles {
        location: dir.to_path_buf(),
        weights: Weights::Safetensors { config, files },
        tokenizer: TokenizerSource::Json(tokenizer),
    })
}

/// A Llama 3.2 Vision checkpoint's files, or `None` when `config.json` describes another model.
fn inspect_mllama(dir: &Path, config_path: &Path, text: &str) -> Result<Option<ModelFiles>> {
    let json: serde_json::Value = match serde_json::from_str(text) {
        Ok(json) if crate::vision::mllama::is_mllama_config(&json) => json,
        _ => return Ok(None),
    };
    let config: crate::vision::mllama::MllamaConfig =
        serde_json::from_value(json).map_err(|e| {
            Error::invalid(format!(
                "{} is not a Llama 3.2 Vision config: {e}",
                config_path.display()
            ))
        })?;
    weight_files(dir)?;
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; the model directory needs a Hugging Face tokenizer.json",
            tokenizer.display()
        )));
    }
    Ok(Some(ModelFiles {
        location: dir.to_path_buf(),
        weights: Weights::Mllama {
            dir: dir.to_path_buf(),
            context: config.text_config.max_position_embeddings,
        },
        tokenizer: TokenizerSource::Json(tokenizer),
    }))
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
    Err(Error::invalid(format!(
        "{} has neither model.safetensors nor model.safetensors.index.json",
        dir.display()
    )))
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

/// The `tokenizer.json` document of a model, whatever form its tokenizer ships in.
pub(crate) fn tokenizer_json(source: &TokenizerSource) -> Result<serde_json::Value> {
    match source {
        TokenizerSource::Json(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::invalid(format!("{} is not JSON: {e}", path.display())))
        }
        TokenizerSource::Tiktoken(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
            llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&text)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
        }
        TokenizerSource::Gguf(path) => {
            let content = crate::llama::load::read_gguf(path)?;
            let strings = |key: &str| -> Result<Vec<String>> {
                let values = content
                    .metadata
                    .get(key)
                    .and_then(|v| v.to_vec().ok())
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "{}: no `{key}` array in the GGUF metadata",
                            path.display()
                        ))
                    })?;
                values
                    .iter()
                    .map(|v| v.to_string().cloned())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|_| {
                        Error::invalid(format!("{}: `{key}` holds non-strings", path.display()))
                    })
            };
            let pre = content
                .metadata
                .get("tokenizer.ggml.model")
                .and_then(|v| v.to_string().ok().cloned())
                .unwrap_or_default();
            if pre != "gpt2" {
                return Err(Error::unsupported(format!(
                    "{}: the embedded tokenizer is `{pre}`; inline::candle reads the byte-level BPE (`gpt2`) tokenizer of Llama 3 GGUF files. Put a tokenizer.json next to the file",
                    path.display()
                )));
            }
            let tokens = strings("tokenizer.ggml.tokens")?;
            let merges = strings("tokenizer.ggml.merges")?;
            let types: Vec<i32> = content
                .metadata
                .get("tokenizer.ggml.token_type")
                .and_then(|v| v.to_vec().ok())
                .map(|values| values.iter().map(|v| v.to_i32().unwrap_or(1)).collect())
                .unwrap_or_default();
            llama_stack_llama3::hf_tokenizer_json_from_gguf(&tokens, &merges, &types)
                .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
        }
    }
}
