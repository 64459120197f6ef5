//! `inline::sentence-transformers` configuration: the `config:` block of the provider in run.yaml.

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use serde::Deserialize;

/// Local sentence embeddings with BERT-family encoders (e.g. all-MiniLM-L6-v2), and reranking
/// with BERT cross-encoders, on candle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentenceTransformersConfig {
    /// Folder holding one sentence-transformers model in Hugging Face layout (`config.json`,
    /// `tokenizer.json`, `model.safetensors`, optionally `1_Pooling/config.json`). Every
    /// embedding model registered on this provider is served from it. When empty, each model is
    /// looked up in the Hugging Face cache by its provider model id; a bare name such as
    /// `all-MiniLM-L6-v2` is also looked up as `sentence-transformers/all-MiniLM-L6-v2`.
    #[serde(default)]
    pub model_path: Option<String>,
    /// Folder holding the cross-encoder (`BertForSequenceClassification` with one label) every
    /// rerank model (`model_type: rerank`) registered on this provider is served from. When
    /// empty, each rerank model is looked up in the Hugging Face cache by its provider model
    /// id. `model_path` is for embedding models only.
    #[serde(default)]
    pub rerank_model_path: Option<String>,
    /// Hugging Face hub cache searched when `model_path` is empty. Defaults to
    /// `$HF_HUB_CACHE`, then `$HF_HOME/hub`, then `~/.cache/huggingface/hub`.
    #[serde(default)]
    pub hf_cache_dir: Option<String>,
    /// Where to run: `cpu`, `cuda` or `cuda:N` (the latter need the `cuda` build feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Inputs encoded together in one forward pass (each padded to the longest of its batch);
    /// a request with more inputs is encoded in several batches.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// Requests allowed to wait for the encoder; beyond this, requests are refused with
    /// "overloaded" and a `Retry-After`.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_max_batch_size() -> usize {
    32
}
fn default_max_queue() -> usize {
    16
}

impl Default for SentenceTransformersConfig {
    fn default() -> Self {
        SentenceTransformersConfig {
            model_path: None,
            rerank_model_path: None,
            hf_cache_dir: None,
            device: default_device(),
            max_batch_size: default_max_batch_size(),
            max_queue: default_max_queue(),
        }
    }
}

pub const SAMPLE_CONFIG: &str = r#"model_path: ${env.EMBEDDING_MODEL_PATH:=}
device: cpu
max_batch_size: 32
max_queue: 16
"#;

impl CheckedConfig for SentenceTransformersConfig {
    /// Checks value ranges; paths are checked when a model is registered.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let device_ok = self.device == "cpu"
            || self.device == "cuda"
            || self
                .device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
        if !device_ok {
            issues.push(ConfigIssue::new(
                "device",
                format!("unknown device `{}`; use cpu, cuda or cuda:N", self.device),
            ));
        }
        if self.max_batch_size == 0 {
            issues.push(ConfigIssue::new("max_batch_size", "must be at least 1"));
        }
        if self.max_queue == 0 {
            issues.push(ConfigIssue::new("max_queue", "must be at least 1"));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;

    #[test]
    fn defaults_and_ranges() {
        let config: SentenceTransformersConfig = parse_config(&serde_json::Value::Null).unwrap();
        assert_eq!(config.device, "cpu");
        assert_eq!(config.max_batch_size, 32);
        assert!(config.issues().is_empty());

        let bad: SentenceTransformersConfig = parse_config(&serde_json::json!({
            "device": "tpu", "max_batch_size": 0, "max_queue": 0
        }))
        .unwrap();
        let paths: Vec<_> = bad.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["device", "max_batch_size", "max_queue"]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let issues =
            parse_config::<SentenceTransformersConfig>(&serde_json::json!({"dtype": "f16"}))
                .unwrap_err();
        assert_eq!(issues[0].path, "dtype");
    }
}
