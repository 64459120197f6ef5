//! Remote inference providers: `remote::openai`, `remote::vllm`, `remote::ollama`,
//! `remote::together`, `remote::fireworks`, `remote::groq`, `remote::llama-openai-compat`,
//! `remote::llama-cpp-server` and the generic `remote::openai-compat`.
//!
//! All of them speak the OpenAI protocol to their upstream through one client core
//! ([`client`]) and one translation ([`translate`]); a type adds only its config block
//! ([`config`]) and its quirks ([`flavor`]). Each built provider is wrapped in the core's
//! resilience layer, configured by its `resilience:` block.
//!
//! Depends on core and types only; never on another provider or a transport.

pub mod client;
pub mod config;
pub mod flavor;
mod provider;
pub mod translate;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use llama_stack_core::provider::parse_config;
use llama_stack_core::resilience::Resilient;
use llama_stack_core::{
    Api, ConfigIssue, Error, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
    Result,
};

pub use config::RemoteConfig;
pub use flavor::{Flavor, Flavored};
pub use provider::RemoteProvider;

fn validate<C: Flavored>(value: &serde_json::Value) -> Vec<ConfigIssue> {
    match parse_config::<C>(value) {
        Ok(config) => config.issues(),
        Err(issues) => issues,
    }
}

fn build<C: Flavored>(
    value: serde_json::Value,
    context: ProviderContext,
) -> BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let flavor = C::FLAVOR;
        let config = parse_config::<C>(&value).map_err(|issues| {
            let listed: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect();
            Error::invalid(format!(
                "invalid {} config: {}",
                flavor.provider_type,
                listed.join("; ")
            ))
        })?;
        let settings = config.into_settings();
        let provider = RemoteProvider::new(flavor, &context.provider_id, &settings)?;
        let layered = Resilient::wrap(
            Arc::new(provider),
            &context.provider_id,
            settings.resilience,
        );
        Ok(ProviderInstance::Inference(layered))
    }
    .boxed()
}

fn spec<C: Flavored>() -> ProviderSpec {
    let flavor = C::FLAVOR;
    ProviderSpec {
        api: Api::Inference,
        provider_type: flavor.provider_type,
        aliases: &[],
        description: flavor.description,
        sample_config: flavor.sample_config,
        validate: validate::<C>,
        build: build::<C>,
    }
}

/// Adds every remote inference provider type to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    use config::*;
    registry.register(spec::<OpenAiConfig>());
    registry.register(spec::<VllmConfig>());
    registry.register(spec::<OllamaConfig>());
    registry.register(spec::<TogetherConfig>());
    registry.register(spec::<FireworksConfig>());
    registry.register(spec::<GroqConfig>());
    registry.register(spec::<LlamaApiConfig>());
    registry.register(spec::<LlamaCppServerConfig>());
    registry.register(spec::<OpenAiCompatConfig>());
}
