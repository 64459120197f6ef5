//! `inline::sqlite-vec` (also answering to `inline::faiss` and `inline::meta-reference`, so
//! upstream run.yaml files load): embedded vector stores.
//!
//! SQLite is the source of truth: one database holds every store's chunks, with embeddings as
//! little-endian f32 blobs and an FTS5 index for keyword (BM25) search. Vector search runs on
//! an in-process HNSW graph per store, saved beside the database and reconciled with it on
//! first use, so neither a restart nor a crash between commit and save loses a chunk.
//!
//! Owns storage and search only; embedding, chunking and hybrid fusion belong to the stack.
//! Depends on core only; never on another provider or a transport.

pub mod config;
mod db;
mod distance;
mod hnsw;
mod index;
mod index_file;
mod keyword;
mod provider;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::SqliteVecConfig;
pub use provider::SqliteVecProvider;

pub const PROVIDER_TYPE: &str = "inline::sqlite-vec";

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<SqliteVecConfig>(&value, PROVIDER_TYPE)?;
        let provider = SqliteVecProvider::open(&config, context.store_dir.as_deref()).await?;
        Ok(ProviderInstance::VectorIo(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `inline::sqlite-vec` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::VectorIo,
        provider_type: PROVIDER_TYPE,
        aliases: &["inline::sqlite_vec", "inline::faiss", "inline::meta-reference"],
        description: "Embedded vector stores: chunks in SQLite with FTS5 keyword search (BM25) and an in-process HNSW index per store for vector search, saved beside the database",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<SqliteVecConfig>,
        build,
    });
}

#[cfg(test)]
mod tests;
