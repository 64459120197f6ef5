//! `inline::llama-guard`: shields backed by a Llama Guard model. The guard prompt is built here
//! and sent as one user message through the stack's inference API, so the guard model may be
//! served by any inference provider (local candle, vLLM, Ollama, Together...).

mod prompt;
mod verdict;

#[cfg(test)]
mod prompt_tests;

use std::sync::Arc;

use async_trait::async_trait;
use futures::FutureExt;
use llama_stack_core::parse_config;
use llama_stack_core::{Api, ConfigIssue, Error, ErrorKind, Result};
use llama_stack_safety::provider::{GuardInference, SafetyProvider};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};
use llama_stack_types::{Message, Model, ModerationResult, SafetyViolation, Shield};
use serde::Deserialize;

pub use prompt::{CATEGORIES, GuardKind, categories_block, guard_input, preprocess, render};
pub use verdict::{CANNED_RESPONSE, Verdict, moderation, parse, violation};

pub const PROVIDER_TYPE: &str = "inline::llama-guard";

/// Llama Guard shields. Each shield names its guard model in `provider_shield_id`; the model
/// must be registered with an inference provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaGuardConfig {
    /// Category codes (`S1` ... `S14`) never reported: they are left out of the prompt, and a
    /// reply that names only these codes passes. Excluding all of them excludes none.
    #[serde(default)]
    pub excluded_categories: Vec<String>,
}

pub const SAMPLE_CONFIG: &str = "excluded_categories: []\n";

impl LlamaGuardConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        self.excluded_categories
            .iter()
            .enumerate()
            .filter(|(_, code)| prompt::category_name(code).is_none())
            .map(|(i, code)| {
                ConfigIssue::new(
                    format!("excluded_categories[{i}]"),
                    format!("`{code}` is not a Llama Guard category code; use S1 to S14"),
                )
            })
            .collect()
    }
}

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Safety,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Llama Guard 3 shields, the guard model served through the inference API",
        sample_config: SAMPLE_CONFIG,
        validate,
        build,
    });
}

fn validate(value: &serde_json::Value) -> Vec<ConfigIssue> {
    llama_stack_core::validate_config::<LlamaGuardConfig>(value)
}

impl llama_stack_core::CheckedConfig for LlamaGuardConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        LlamaGuardConfig::issues(self)
    }
}

fn build(
    config: serde_json::Value,
    _ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = parse_config::<LlamaGuardConfig>(&config).map_err(|issues| {
            Error::invalid(
                issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(ProviderInstance::Safety(Arc::new(LlamaGuard::new(config))))
    }
    .boxed()
}

/// The provider: stateless apart from its config; each call resolves the shield's model.
pub struct LlamaGuard {
    excluded: Vec<String>,
}

impl LlamaGuard {
    pub fn new(config: LlamaGuardConfig) -> Self {
        LlamaGuard {
            excluded: config.excluded_categories,
        }
    }

    /// The registered model a shield runs on, and which guard it is. 0.2 clients name guards
    /// by their short names (`Llama-Guard-3-1B`), which mean the `meta-llama/` model.
    async fn guard_model(
        &self,
        shield: &Shield,
        inference: &dyn GuardInference,
    ) -> Result<(Model, GuardKind)> {
        let id = shield.provider_resource_id.as_str();
        let found = match inference.find_model(id).await {
            Err(err) if err.kind() == ErrorKind::NotFound && !id.contains('/') => inference
                .find_model(&format!("meta-llama/{id}"))
                .await
                .map_err(|_| err),
            other => other,
        };
        let model = found.map_err(|err| {
            Error::new(
                err.kind(),
                format!(
                    "Shield '{}' runs on guard model '{id}', which cannot be used: {} \
                     Register the model (models: in run.yaml, or POST /v1/models), or register \
                     the shield with a provider_shield_id naming a registered model.",
                    shield.identifier,
                    err.message()
                ),
            )
        })?;
        let kind = GuardKind::from_names([
            id,
            model.identifier.as_str(),
            model.provider_resource_id.as_str(),
        ]);
        Ok((model, kind))
    }
}

#[async_trait]
impl SafetyProvider for LlamaGuard {
    async fn register_shield(&self, shield: &Shield, inference: &dyn GuardInference) -> Result<()> {
        if shield.provider_resource_id.trim().is_empty() {
            return Err(Error::invalid(format!(
                "Shield '{}' needs a guard model: set provider_shield_id to a registered Llama Guard model",
                shield.identifier
            )));
        }
        // The model may be listed by its provider only later (a remote server that is still
        // starting), so a missing model is reported when the shield runs, not refused here.
        if let Err(err) = self.guard_model(shield, inference).await {
            tracing::warn!(shield = %shield.identifier, error = %err,
                "Shield registered, but its guard model is not available yet");
        }
        Ok(())
    }

    async fn run_shield(
        &self,
        shield: &Shield,
        messages: &[Message],
        _params: &serde_json::Value,
        inference: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>> {
        let messages = preprocess(messages)?;
        let (model, kind) = self.guard_model(shield, inference).await?;
        let content = guard_input(kind, &self.excluded, &messages);
        let reply = inference.guard_chat(&model.identifier, content).await?;
        let verdict = parse(&reply).ok_or_else(|| {
            verdict::unexpected_reply(&shield.identifier, &model.identifier, &reply)
        })?;
        Ok(violation(&verdict, &self.excluded))
    }

    async fn run_moderation(
        &self,
        shield: &Shield,
        inputs: &[String],
        inference: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>> {
        if inputs.is_empty() {
            return Ok(vec![moderation(&Verdict::Safe, &self.excluded)]);
        }
        // The inputs are read as one conversation of user messages, as upstream does; the
        // answer is one result for all of them.
        let messages: Vec<Message> = inputs.iter().map(|s| Message::user(s)).collect();
        let (model, kind) = self.guard_model(shield, inference).await?;
        let prompt = render(kind, &self.excluded, &messages);
        let reply = inference
            .guard_chat(&model.identifier, prompt.as_str().into())
            .await?;
        let verdict = parse(&reply).ok_or_else(|| {
            verdict::unexpected_reply(&shield.identifier, &model.identifier, &reply)
        })?;
        Ok(vec![moderation(&verdict, &self.excluded)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_validates_and_bad_codes_are_reported_with_paths() {
        let sample: serde_json::Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        assert_eq!(validate(&sample), vec![]);
        let issues = validate(&serde_json::json!({"excluded_categories": ["S1", "S15", "hate"]}));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["excluded_categories[1]", "excluded_categories[2]"]);
        let issues = validate(&serde_json::json!({"excluded": []}));
        assert_eq!(issues.len(), 1, "{issues:?}");
    }
}
