//! `inline::candle` configuration: the `config:` block of the provider in run.yaml.

use llama_stack_core::ConfigIssue;
use serde::Deserialize;

pub use crate::speculative::SpeculativeConfig;

/// Local Llama 3.x inference on candle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandleConfig {
    /// The model to serve: a GGUF file, or a directory in Hugging Face layout (`config.json`,
    /// `*.safetensors`, `tokenizer.json`), in Meta's layout (`params.json`,
    /// `consolidated.00.pth`, `tokenizer.model`) or holding one GGUF file. Every model
    /// registered on this provider is served from it. When empty, each model is looked up in
    /// the Hugging Face cache by its provider model id.
    #[serde(default)]
    pub model_path: Option<String>,
    /// Hugging Face hub cache searched when `model_path` is empty. Defaults to
    /// `$HF_HUB_CACHE`, then `$HF_HOME/hub`, then `~/.cache/huggingface/hub`.
    #[serde(default)]
    pub hf_cache_dir: Option<String>,
    /// Where to run: `cpu`, `cuda` or `cuda:N` (the `cuda` build feature), `metal` or
    /// `metal:N` (the `metal` build feature, macOS).
    #[serde(default = "default_device")]
    pub device: String,
    /// Precision of dense (safetensors, Meta) weight matrices in memory: `auto` (as the
    /// checkpoint stores them: bf16 and f16 stay half precision on CPU, anything else and
    /// every matrix on a GPU becomes f32), or `f32`, `bf16`, `f16` for all of them. Half
    /// precision halves memory and, on CPU, is multiplied by the engine's own kernels. GGUF
    /// files keep their own quantization.
    #[serde(default = "default_dtype")]
    pub dtype: String,
    /// Requests allowed to wait for the engine; beyond this, requests are refused with 429.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
    /// Tokens generated when a request does not set `max_tokens` (or sets 0).
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Longest prompt plus completion, in tokens. Defaults to the model's
    /// `max_position_embeddings`, capped at 8192 to bound KV-cache memory; set it to go
    /// further, up to the model's own limit (131072 for Llama 3.1 and 3.2). A larger value is
    /// clamped to that limit with a warning. Memory follows the tokens actually held, not this.
    #[serde(default)]
    pub max_seq_len: Option<usize>,
    /// How the KV cache stores keys and values: `f32` (exact), `f16` (half the memory), or
    /// `q8_0` (8-bit values with an f16 scale per 32, as llama.cpp's `-ctk q8_0 -ctv q8_0`:
    /// 0.27 of the memory). Smaller caches hold longer conversations; the rounding moves
    /// logits slightly, so a long greedy answer may part from the f32 one.
    #[serde(default = "default_kv_cache_dtype")]
    pub kv_cache_dtype: String,
    /// Sequences decoded together in one forward pass; further requests wait in the queue.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// Finished conversations whose KV cache is kept so that their next turn only reads the
    /// new messages. Each holds the whole conversation's cache; 0 turns reuse off.
    #[serde(default = "default_prefix_cache_slots")]
    pub prefix_cache_slots: usize,
    /// Whitespace characters allowed between two tokens of JSON under `response_format`
    /// (none before or after the value). 1 allows `{"a": 1, "b": 2}`; more allows pretty
    /// printing, at the cost of letting a weak model pad its output with whitespace.
    #[serde(default = "default_json_whitespace")]
    pub json_whitespace: usize,
    /// Load each model when it is registered (`true`, so start-up fails early on a bad model),
    /// or on its first request (`false`, for fast start-up with many models).
    #[serde(default = "default_preload")]
    pub preload: bool,
    /// Speculative decoding for greedy requests: `{type: ngram}` drafts tokens from the
    /// sequence's own earlier text (prompt lookup; `max_draft_tokens`, default 4,
    /// `ngram_size`, default 3) and keeps those the model agrees with. The output is the same
    /// as without it; copying-heavy answers (quotes, code edits) come faster. Off when unset.
    #[serde(default)]
    pub speculative: Option<SpeculativeConfig>,
    /// Quantize a Llama 3.2 Vision checkpoint's text decoder at load: `q8_0` (about a quarter
    /// of f32's memory) or `q4_0` (about an eighth). The vision encoder, embeddings and norms
    /// stay f32. Unset keeps the checkpoint's weights; a text model takes a GGUF file instead.
    #[serde(default)]
    pub quantize: Option<String>,
    /// Images sent to a Llama 3.2 Vision model: size limits and where URLs may point.
    #[serde(default)]
    pub images: ImageInputConfig,
}

/// How requests may send images to a vision model (`images:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageInputConfig {
    /// Largest encoded image accepted, in bytes (after base64 decoding or download).
    /// Default 20 MiB.
    pub max_bytes: usize,
    /// Largest decoded image accepted, in pixels (width × height). Default 40 million; the
    /// model sees at most four tiles, so larger images cost time without adding detail.
    pub max_pixels: u64,
    /// Fetch `http(s)` image URLs that resolve to loopback, private or link-local addresses.
    /// Off by default, so a request cannot make the server reach its own network.
    pub allow_private_addresses: bool,
    /// Seconds an image URL may take to download, redirects included. Default 30.
    pub fetch_timeout_seconds: u64,
}

impl Default for ImageInputConfig {
    fn default() -> Self {
        let limits = crate::vision::ImageLimits::default();
        ImageInputConfig {
            max_bytes: limits.max_bytes,
            max_pixels: limits.max_pixels,
            allow_private_addresses: false,
            fetch_timeout_seconds: 30,
        }
    }
}

/// The quantized type `quantize` names.
pub(crate) fn weight_quant(name: &str) -> Option<candle_core::quantized::GgmlDType> {
    match name {
        "q8_0" => Some(candle_core::quantized::GgmlDType::Q8_0),
        "q4_0" => Some(candle_core::quantized::GgmlDType::Q4_0),
        _ => None,
    }
}

impl ImageInputConfig {
    pub fn limits(&self) -> crate::vision::ImageLimits {
        crate::vision::ImageLimits {
            max_bytes: self.max_bytes,
            max_pixels: self.max_pixels,
        }
    }
}

fn default_kv_cache_dtype() -> String {
    "f32".into()
}
fn default_max_batch_size() -> usize {
    8
}
fn default_prefix_cache_slots() -> usize {
    4
}
fn default_json_whitespace() -> usize {
    1
}
fn default_preload() -> bool {
    true
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
max_batch_size: 8
default_max_tokens: 512
"#;

impl CandleConfig {
    /// Checks value ranges; paths are checked when the provider is built.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let numbered = |prefix: &str| {
            self.device == prefix
                || self
                    .device
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .is_some_and(|n| n.parse::<usize>().is_ok())
        };
        let device_ok = self.device == "cpu" || numbered("cuda") || numbered("metal");
        if !device_ok {
            issues.push(ConfigIssue::new(
                "device",
                format!(
                    "unknown device `{}`; use cpu, cuda, cuda:N, metal or metal:N",
                    self.device
                ),
            ));
        }
        if !["auto", "f32", "bf16", "f16"].contains(&self.dtype.as_str()) {
            issues.push(ConfigIssue::new(
                "dtype",
                format!("unknown dtype `{}`; use auto, f32, bf16 or f16", self.dtype),
            ));
        }
        if crate::llama::KvDtype::parse(&self.kv_cache_dtype).is_none() {
            issues.push(ConfigIssue::new(
                "kv_cache_dtype",
                format!(
                    "unknown kv_cache_dtype `{}`; use {}",
                    self.kv_cache_dtype,
                    crate::llama::KvDtype::NAMES.join(", ")
                ),
            ));
        }
        if self.max_queue == 0 {
            issues.push(ConfigIssue::new("max_queue", "must be at least 1"));
        }
        if self.default_max_tokens == 0 {
            issues.push(ConfigIssue::new("default_max_tokens", "must be at least 1"));
        }
        if self.max_batch_size == 0 {
            issues.push(ConfigIssue::new("max_batch_size", "must be at least 1"));
        }
        if self.max_seq_len == Some(0) {
            issues.push(ConfigIssue::new("max_seq_len", "must be at least 1"));
        }
        if let Some(speculative) = &self.speculative {
            issues.extend(speculative.issues());
        }
        if let Some(quantize) = &self.quantize
            && weight_quant(quantize).is_none()
        {
            issues.push(ConfigIssue::new(
                "quantize",
                format!("unknown quantize `{quantize}`; use q8_0 or q4_0"),
            ));
        }
        for (field, zero) in [
            ("images.max_bytes", self.images.max_bytes == 0),
            ("images.max_pixels", self.images.max_pixels == 0),
            (
                "images.fetch_timeout_seconds",
                self.images.fetch_timeout_seconds == 0,
            ),
        ] {
            if zero {
                issues.push(ConfigIssue::new(field, "must be at least 1"));
            }
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kv_cache_dtype_is_an_issue_listing_the_choices() {
        let parse = |value| -> CandleConfig { serde_json::from_value(value).unwrap() };
        let config = parse(serde_json::json!({"kv_cache_dtype": "q4_0"}));
        let issues = format!("{:?}", config.issues());
        assert!(issues.contains("kv_cache_dtype"), "{issues}");
        assert!(issues.contains("use f32, f16, q8_0"), "{issues}");
        assert_eq!(parse(serde_json::json!({})).kv_cache_dtype, "f32");
        for dtype in ["f32", "f16", "q8_0"] {
            let config = parse(serde_json::json!({"kv_cache_dtype": dtype}));
            assert!(config.issues().is_empty(), "{dtype}");
        }
    }

    #[test]
    fn quantize_and_image_limits_are_checked() {
        let parse = |value| -> CandleConfig { serde_json::from_value(value).unwrap() };
        for quantize in ["q8_0", "q4_0"] {
            assert!(
                parse(serde_json::json!({"quantize": quantize}))
                    .issues()
                    .is_empty()
            );
        }
        let issues = format!(
            "{:?}",
            parse(serde_json::json!({"quantize": "q5_k", "images": {"max_pixels": 0}})).issues()
        );
        assert!(issues.contains("use q8_0 or q4_0"), "{issues}");
        assert!(issues.contains("images.max_pixels"), "{issues}");
        assert!(
            serde_json::from_value::<CandleConfig>(serde_json::json!({"images": {"max_size": 1}}))
                .is_err()
        );
    }
}
