//! `inline::prompt-guard` configuration: the `config:` block of the provider in run.yaml.

use std::path::PathBuf;

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use serde::Deserialize;

/// The name of the model, of its checkpoint folder, and the only shield this provider serves.
pub const PROMPT_GUARD_MODEL: &str = "Prompt-Guard-86M";

/// What a shield reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardType {
    /// Flags text the model reads as an injection or a jailbreak: the two probabilities added up
    /// exceed the threshold.
    #[default]
    Injection,
    /// Flags only text the model reads as a jailbreak: that probability alone exceeds the
    /// threshold.
    Jailbreak,
}

impl GuardType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardType::Injection => "injection",
            GuardType::Jailbreak => "jailbreak",
        }
    }
}

/// Prompt Guard shields: Meta's Prompt-Guard-86M classifier, run locally on candle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptGuardConfig {
    /// `injection` (the default) flags prompt injections and jailbreaks; `jailbreak` flags
    /// jailbreaks only.
    #[serde(default)]
    pub guard_type: GuardType,
    /// Folder holding the model in Hugging Face layout: `config.json`, `tokenizer.json` and
    /// `model.safetensors`. A leading `~` is the home folder. When absent or empty:
    /// `$LLAMA_STACK_CONFIG_DIR/checkpoints/Prompt-Guard-86M`, else
    /// `~/.llama/checkpoints/Prompt-Guard-86M`, where upstream Llama Stack looks.
    #[serde(default)]
    pub model_local_dir: Option<String>,
    /// A message is flagged when its score is strictly above this probability, in [0, 1).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Where to run the model: `cpu`, `cuda` or `cuda:N` (the latter need the `cuda` build
    /// feature).
    #[serde(default = "default_device")]
    pub device: String,
    /// Requests allowed to wait for the classifier; beyond this, requests are refused with
    /// "overloaded" and a `Retry-After`.
    #[serde(default = "default_max_queue")]
    pub max_queue: usize,
}

fn default_threshold() -> f64 {
    0.9
}
fn default_device() -> String {
    "cpu".into()
}
fn default_max_queue() -> usize {
    16
}

impl Default for PromptGuardConfig {
    fn default() -> Self {
        PromptGuardConfig {
            guard_type: GuardType::default(),
            model_local_dir: None,
            threshold: default_threshold(),
            device: default_device(),
            max_queue: default_max_queue(),
        }
    }
}

pub const SAMPLE_CONFIG: &str = r#"guard_type: injection
model_local_dir: ${env.PROMPT_GUARD_MODEL_DIR:=}
threshold: 0.9
device: cpu
"#;

impl PromptGuardConfig {
    /// The model folder, `~` expanded.
    pub fn model_dir(&self) -> PathBuf {
        match self.model_local_dir.as_deref().map(str::trim) {
            Some(dir) if !dir.is_empty() => expand_home(dir),
            _ => checkpoints_dir().join(PROMPT_GUARD_MODEL),
        }
    }
}

impl CheckedConfig for PromptGuardConfig {
    /// Checks the values serde cannot; the model folder is checked when the provider is built.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(0.0..1.0).contains(&self.threshold) {
            issues.push(ConfigIssue::new(
                "threshold",
                format!(
                    "threshold {} is outside [0, 1): it is a probability, and one of 1 or more \
                     would never flag anything",
                    self.threshold
                ),
            ));
        }
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
        if self.max_queue == 0 {
            issues.push(ConfigIssue::new("max_queue", "must be at least 1"));
        }
        issues
    }
}

/// Meta's checkpoint folder as upstream's `model_local_dir` finds it.
fn checkpoints_dir() -> PathBuf {
    match std::env::var_os("LLAMA_STACK_CONFIG_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("checkpoints"),
        _ => expand_home("~/.llama/checkpoints"),
    }
}

/// A leading `~` (alone or before `/`) is `$HOME`.
fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        let mut expanded = PathBuf::from(home);
        expanded.push(rest.trim_start_matches('/'));
        return expanded;
    }
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;

    #[test]
    fn sample_config_validates() {
        // The distribution substitutes `${env.X:=}` before validation; unset, it is null.
        let yaml = SAMPLE_CONFIG.replace("${env.PROMPT_GUARD_MODEL_DIR:=}", "");
        let value: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
        let config: PromptGuardConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.guard_type, GuardType::Injection);
        assert_eq!(config.threshold, 0.9);
        assert!(config.model_dir().ends_with("checkpoints/Prompt-Guard-86M"));
        assert!(!config.model_dir().starts_with("~"));
    }

    #[test]
    fn defaults_match_upstream() {
        let config: PromptGuardConfig = parse_config(&serde_json::Value::Null).unwrap();
        assert_eq!(config.guard_type, GuardType::Injection);
        assert_eq!(config.threshold, 0.9);
        assert_eq!(config.device, "cpu");
        assert!(config.model_dir().ends_with("checkpoints/Prompt-Guard-86M"));
        // Upstream's own sample config.
        let config: PromptGuardConfig =
            parse_config(&serde_json::json!({"guard_type": "jailbreak"})).unwrap();
        assert_eq!(config.guard_type, GuardType::Jailbreak);
    }

    #[test]
    fn home_is_expanded() {
        let config: PromptGuardConfig =
            parse_config(&serde_json::json!({"model_local_dir": "~/models/pg"})).unwrap();
        let dir = config.model_dir();
        assert!(dir.ends_with("models/pg"), "{}", dir.display());
        assert!(!dir.starts_with("~"), "{}", dir.display());
        let config: PromptGuardConfig =
            parse_config(&serde_json::json!({"model_local_dir": "/srv/pg"})).unwrap();
        assert_eq!(config.model_dir(), PathBuf::from("/srv/pg"));
    }

    #[test]
    fn bad_values_are_reported_with_their_paths() {
        let issues = parse_config::<PromptGuardConfig>(&serde_json::json!({
            "guard_type": "toxicity", "colour": "red"
        }))
        .unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["guard_type", "colour"], "{issues:?}");
        assert!(issues[0].message.contains("injection"), "{issues:?}");

        let config: PromptGuardConfig = parse_config(&serde_json::json!({
            "threshold": 1.5, "device": "tpu", "max_queue": 0
        }))
        .unwrap();
        let paths: Vec<_> = config.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(paths, ["threshold", "device", "max_queue"]);
    }
}
