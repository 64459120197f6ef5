//! `inline::candle` configuration: the `config:` block of the provider in run.yaml.

use llama_stack_core::ConfigIssue;
use serde::Deserialize;

/// Local Llama 3.x inference on candle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandleConfig {
    /// Directory holding the model in Hugging Face layout (`config.json`, `*.safetensors`,
    /// `tokenizer.json`). Every model registered on this provider is served from it. When empty,
    /// each model is looked up in the Hugging Face cache by its provider model id.
    #[serde(default)]
    pub model_path: Option<String>,
    /// Hugging Face hub cache searched when `model_path` is empty. Defaults to
    /// `$HF_HUB_CACHE`, then `$HF_HOME/hub`, then `~/.cache/huggingface/hub`.
    #[serde(default)]
    pub hf_cache_dir: Option<String>,
    /// Where to run: `cpu`, `cuda` or `cuda:N` (the latter need the `cuda` build feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Compute precision: `auto` (f32 on CPU, bf16 on GPU), `f32`, `bf16` or `f16`.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Requests allowed to wait for the engine; beyond this, requests are refused with 429.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Tokens generated when a request does not set `max_tokens` (or sets 0).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Longest prompt plus completion, in tokens. Defaults to the model's
    /// `max_position_embeddings`, capped at 8192 to bound KV-cache memory.
    #[serde(default)]
    pub max_seq_len: Option<usize>,
}

fn default_device() -> String {
    "cpu".into()
}
fn default_dtype() -> String {
    "auto".into()
}
fn default_max_queue() -> usize {
    16
}
fn default_max_tokens() -> u32 {
    512
}

pub const SAMPLE_CONFIG: &str = r#"model_path: ${env.LLAMA_MODEL_PATH:=}
device: cpu
dtype: auto
max_queue: 16
default_max_tokens: 512
"#;

impl CandleConfig {
    /// Checks value ranges; paths are checked when the provider is built.
    pub fn issues(&self) -> Vec<ConfigIssue> {
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
        if !["auto", "f32", "bf16", "f16"].contains(&self.dtype.as_str()) {
            issues.push(ConfigIssue::new(
                "dtype",
                format!("unknown dtype `{}`; use auto, f32, bf16 or f16", self.dtype),
            ));
        }
        if self.max_queue == 0 {
            issues.push(ConfigIssue::new("max_queue", "must be at least 1"));
        }
        if self.default_max_tokens == 0 {
            issues.push(ConfigIssue::new("default_max_tokens", "must be at least 1"));
        }
        if self.max_seq_len == Some(0) {
            issues.push(ConfigIssue::new("max_seq_len", "must be at least 1"));
        }
        issues
    }
}
