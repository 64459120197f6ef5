//! `inline::code-scanner` configuration: the `config:` block of the provider in run.yaml.

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use serde::Deserialize;

use crate::scanner::known_rule_ids;

/// The insecure-code scanner. Every built-in rule runs unless switched off here; an empty or
/// absent block is valid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeScannerConfig {
    /// Rule ids to switch off, e.g. `weak-hash-md5` where MD5 only names cache entries. Each
    /// must be a rule the scanner knows; the crate's `rules/insecure_code.yaml` lists them.
    #[serde(default)]
    pub disabled_rules: Vec<String>,
}

pub const SAMPLE_CONFIG: &str = r#"# Rule ids to switch off, e.g. [weak-hash-md5, weak-hash-sha1]; all rules run by default.
disabled_rules: []
"#;

impl CheckedConfig for CodeScannerConfig {
    /// Checks the values serde cannot.
    fn issues(&self) -> Vec<ConfigIssue> {
        let known = known_rule_ids();
        if known.is_empty() {
            return vec![ConfigIssue::new(
                "",
                "the built-in code-scanner rules failed to load; this build is broken",
            )];
        }
        self.disabled_rules
            .iter()
            .enumerate()
            .filter(|(_, id)| !known.contains(&id.as_str()))
            .map(|(index, id)| {
                ConfigIssue::new(
                    format!("disabled_rules[{index}]"),
                    format!("unknown rule id `{id}`; known ids: {}", known.join(", ")),
                )
            })
            .collect()
    }
}
