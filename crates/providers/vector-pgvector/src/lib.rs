//! `remote::pgvector`: vector stores in PostgreSQL with the pgvector extension.
//!
//! Owns the provider's schema (`migrations/postgres/pgvector`, plus one chunk table per store,
//! see [`provider`]), inserts, and vector (HNSW, L2) and keyword (`tsvector`, `ts_rank`)
//! search with filters. The stack embeds, chunks and fuses hybrid results; this crate only
//! stores and searches. Depends on core and storage only; never on another provider or a
//! transport.

pub mod config;
pub mod provider;
mod search;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::{HnswConfig, PgVectorConfig};
pub use provider::PgVectorProvider;

pub const PROVIDER_TYPE: &str = "remote::pgvector";

fn build(
    value: serde_json::Value,
    _context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<PgVectorConfig>(&value, PROVIDER_TYPE)?;
        let provider = PgVectorProvider::connect(&config).await?;
        Ok(ProviderInstance::VectorIo(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `remote::pgvector` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::VectorIo,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Vector stores in PostgreSQL with pgvector: HNSW (L2) vector search, full-text keyword search, filters",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<PgVectorConfig>,
        build,
    });
}
