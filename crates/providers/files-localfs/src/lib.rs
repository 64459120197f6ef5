//! `inline::localfs`: the files API (`/v1/files`) on the local file system.
//!
//! Owns the storage folder (one file per upload, named after its generated id, written to a
//! temporary file, synced and renamed) and the file records (kind `file` in the distribution's
//! SQL store, or in a SQLite database of its own). Depends on core and storage only; never on
//! another provider or a transport.

mod blobs;
pub mod config;
mod provider;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::LocalfsConfig;
pub use provider::{LocalfsFiles, RECORD_KIND};

pub const PROVIDER_TYPE: &str = "inline::localfs";

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<LocalfsConfig>(&value, PROVIDER_TYPE)?;
        let provider = LocalfsFiles::open(config, context).await?;
        Ok(ProviderInstance::Files(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `inline::localfs` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Files,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Uploaded files on the local file system, records in the distribution's SQL store",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<LocalfsConfig>,
        build,
    });
}
