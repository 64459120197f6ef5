//! `inline::prompt-guard`: shields backed by Meta's Prompt-Guard-86M, an mDeBERTa-v3-base
//! sequence classifier with the labels `BENIGN`, `INJECTION` and `JAILBREAK`, run locally on
//! candle from Hugging Face safetensors.
//!
//! Owns checking and loading the model folder, the classifier thread and the mapping from
//! probabilities to shield violations and moderation results. Depends on core and types only;
//! never on another provider or a transport.

pub mod classifier;
pub mod config;
mod engine;
mod provider;
pub mod verdict;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::{GuardType, PROMPT_GUARD_MODEL, PromptGuardConfig, SAMPLE_CONFIG};
pub use provider::PromptGuardSafety;
pub use verdict::{Scores, USER_MESSAGE, python_float_repr};

pub const PROVIDER_TYPE: &str = "inline::prompt-guard";

fn build(
    value: serde_json::Value,
    _context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<PromptGuardConfig>(&value, PROVIDER_TYPE)?;
        let provider = PromptGuardSafety::open(config).await?;
        Ok(ProviderInstance::Safety(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `inline::prompt-guard` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Safety,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Prompt injection and jailbreak detection with Meta's Prompt-Guard-86M classifier (Hugging Face safetensors on candle)",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<PromptGuardConfig>,
        build,
    });
}
