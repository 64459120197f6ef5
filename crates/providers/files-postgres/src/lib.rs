//! `remote::postgres` for the files API (`/v1/files`): bytes and records in one PostgreSQL
//! database, for deployments whose only shared storage is PostgreSQL. Replicas on the same
//! database see the same files at once: nothing is kept in the process.
//!
//! Owns its tables (`migrations/` in this crate, bookkeeping in
//! `_llama_stack_files_migrations`) and [`shared`], the pieces every files provider that
//! replicas share builds on (`remote::s3` too). With the `conformance` feature, [`conformance`]
//! is the behaviour suite both providers' tests run. Depends on core, memory and storage only;
//! never on another provider or a transport.

pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
mod provider;
pub mod shared;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::PostgresFilesConfig;
pub use provider::PostgresFiles;

pub const PROVIDER_TYPE: &str = "remote::postgres";

fn build(
    value: serde_json::Value,
    _context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<PostgresFilesConfig>(&value, PROVIDER_TYPE)?;
        let provider = PostgresFiles::connect(&config).await?;
        Ok(ProviderInstance::Files(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `remote::postgres` (files) to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Files,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Uploaded files with their bytes and records in PostgreSQL, shared by every replica on the database",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<PostgresFilesConfig>,
        build,
    });
}
