//! `inline::code-scanner`: a safety shield that flags insecure code in messages, in the
//! spirit of Meta's CodeShield: regex rules for command and code injection, weak hashes and
//! ciphers, hard-coded secrets, SQL built from strings, unsafe deserialization, disabled TLS
//! verification and unsafe C functions.
//!
//! Owns the rule catalogue (`rules/insecure_code.yaml`, embedded and compiled once) and the
//! verdict shapes of run-shield and moderation. Needs no model and never calls inference.
//! Depends on core and types only; never on another provider or a transport.

pub mod config;
mod provider;
mod rules;
mod scanner;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::CodeScannerConfig;
pub use provider::{CodeScannerSafety, SHIELD_IDS, VIOLATION_MESSAGE};
pub use rules::{Rule, Severity, rules};
pub use scanner::{Finding, Scanner, known_rule_ids};

pub const PROVIDER_TYPE: &str = "inline::code-scanner";

fn build(
    value: serde_json::Value,
    _context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<CodeScannerConfig>(&value, PROVIDER_TYPE)?;
        let scanner = Scanner::new(&config.disabled_rules)?;
        Ok(ProviderInstance::Safety(std::sync::Arc::new(
            CodeScannerSafety::new(scanner),
        )))
    }
    .boxed()
}

/// Adds `inline::code-scanner` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Safety,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Rule-based insecure-code scanner (CodeShield-style regex rules) as a shield",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<CodeScannerConfig>,
        build,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> serde_json::Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn sample_config_validates() {
        assert_eq!(
            llama_stack_core::validate_config::<config::CodeScannerConfig>(&yaml(
                config::SAMPLE_CONFIG
            )),
            vec![]
        );
    }

    #[test]
    fn empty_and_absent_config_are_valid() {
        assert_eq!(
            llama_stack_core::validate_config::<config::CodeScannerConfig>(
                &serde_json::Value::Null
            ),
            vec![]
        );
        assert_eq!(
            llama_stack_core::validate_config::<config::CodeScannerConfig>(&serde_json::json!({})),
            vec![]
        );
    }

    #[test]
    fn unknown_rule_ids_and_fields_are_reported_with_their_path() {
        let issues = llama_stack_core::validate_config::<config::CodeScannerConfig>(&yaml(
            "disabled_rules: [weak-hash-md5, no-such-rule]\nmin_severity: error\n",
        ));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["min_severity"], "{issues:?}");
        let issues = llama_stack_core::validate_config::<config::CodeScannerConfig>(&yaml(
            "disabled_rules: [weak-hash-md5, no-such-rule]\n",
        ));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "disabled_rules[1]");
        assert!(issues[0].message.contains("no-such-rule"));
        assert!(
            issues[0].message.contains("sql-injection"),
            "lists known ids"
        );
    }

    #[test]
    fn registers_under_the_safety_api() {
        let mut registry = ProviderRegistry::new();
        register(&mut registry);
        let spec = registry.get(PROVIDER_TYPE).unwrap();
        assert_eq!(spec.api, Api::Safety);
    }
}
