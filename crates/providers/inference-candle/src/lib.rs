//! `inline::candle`: local Llama 3.x inference on candle, from Hugging Face safetensors.
//!
//! Owns model loading, the engine thread, sampling and the random-weight test model writer.
//! Depends on core, types and the Llama 3 format crate only; never on another provider or a
//! transport.

pub mod config;
mod engine;
mod engine_load;
mod engine_model;
pub mod hub;
mod llama;
mod model_files;
mod progress;
mod prompt_tokens;
mod provider;
mod sampling;
mod speculative;
mod stream;
pub mod test_model;
pub mod vision;

use futures::FutureExt;
use llama_stack_core::{Api, ConfigIssue, config::parse_config};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::CandleConfig;
pub use provider::CandleProvider;

pub const PROVIDER_TYPE: &str = "inline::candle";

fn validate(value: &serde_json::Value) -> Vec<ConfigIssue> {
    llama_stack_core::validate_config::<CandleConfig>(value)
}

impl llama_stack_core::CheckedConfig for CandleConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        CandleConfig::issues(self)
    }
}

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = parse_config::<CandleConfig>(&value).map_err(|issues| {
            llama_stack_core::Error::invalid(format!("invalid inline::candle config: {issues:?}"))
        })?;
        let provider = CandleProvider::new(config, context)?;
        Ok(ProviderInstance::Inference(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `inline::candle` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Inference,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Local Llama 3.x inference on candle (Hugging Face safetensors; CPU or CUDA)",
        sample_config: config::SAMPLE_CONFIG,
        validate,
        build,
    });
}
