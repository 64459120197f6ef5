//! `inline::sentence-transformers`: local sentence embeddings with BERT-family encoders (such as
//! all-MiniLM-L6-v2) and reranking with BERT cross-encoders, on candle, from Hugging Face
//! safetensors.
//!
//! Owns locating and checking model folders, the encoder threads, batching, pooling and
//! normalization, and cross-encoders (BERT for sequence classification) that score (query,
//! item) pairs for reranking. Serves embedding and rerank models. Depends on core and types
//! only; never on another provider or a transport.

pub mod config;
mod cross_encoder;
mod encoder;
mod engine;
mod model_files;
mod pooling;
mod provider;
#[cfg(test)]
mod tiny_cross_encoder;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::SentenceTransformersConfig;
pub use provider::SentenceTransformersProvider;

pub const PROVIDER_TYPE: &str = "inline::sentence-transformers";

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config =
            llama_stack_core::load_config::<SentenceTransformersConfig>(&value, PROVIDER_TYPE)?;
        let provider = SentenceTransformersProvider::new(config, context)?;
        Ok(ProviderInstance::Inference(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `inline::sentence-transformers` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Inference,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Local sentence embeddings with BERT-family encoders such as all-MiniLM-L6-v2 (Hugging Face safetensors on candle; mean or cls pooling, normalized), and reranking with BERT cross-encoders",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<SentenceTransformersConfig>,
        build,
    });
}
