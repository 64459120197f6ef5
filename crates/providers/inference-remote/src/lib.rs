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
pub mod rerank;
pub mod translate;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use llama_stack_core::{Api, Error, Result};
use llama_stack_core::{CheckedConfig, parse_config, validate_config};
use llama_stack_inference::resilience::Resilient;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::RemoteConfig;
pub use flavor::{Flavor, Flavored};
pub use provider::RemoteProvider;

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

fn spec<C: Flavored + CheckedConfig>() -> ProviderSpec {
    let flavor = C::FLAVOR;
    ProviderSpec {
        api: Api::Inference,
        provider_type: flavor.provider_type,
        aliases: &[],
        description: flavor.description,
        sample_config: flavor.sample_config,
        validate: validate_config::<C>,
        build: build::<C>,
    }
}

/// Adds every remote inference provider type to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    for spec in flavor::TYPES {
        registry.register(spec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample as read with no environment: each `${env.X:=default}` becomes its default.
    fn without_env(sample: &str) -> serde_json::Value {
        let mut text = sample.to_string();
        while let Some(start) = text.find("${env.") {
            let end = start + text[start..].find('}').unwrap();
            let default = text[start..end].split_once(":=").map_or("", |(_, d)| d);
            text = format!("{}{default}{}", &text[..start], &text[end + 1..]);
        }
        serde_norway::from_str(&text).unwrap()
    }

    #[test]
    fn the_nine_types_register_and_their_samples_validate() {
        let mut registry = ProviderRegistry::new();
        register(&mut registry);
        assert_eq!(
            registry.known_types(Api::Inference),
            [
                "remote::fireworks",
                "remote::groq",
                "remote::llama-cpp-server",
                "remote::llama-openai-compat",
                "remote::ollama",
                "remote::openai",
                "remote::openai-compat",
                "remote::together",
                "remote::vllm",
            ]
        );
        assert_eq!(registry.specs().count(), 9);
        for spec in registry.specs() {
            let issues = (spec.validate)(&without_env(spec.sample_config));
            assert!(issues.is_empty(), "{}: {issues:?}", spec.provider_type);
        }
    }
}
