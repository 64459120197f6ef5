//! `remote::s3` for the files API (`/v1/files`): the bytes as objects in any S3-compatible
//! bucket (AWS S3, MinIO, Ceph, moto), named by file id as upstream names them, and the records
//! in the distribution's metadata store, so replicas sharing a PostgreSQL metadata store and a
//! bucket share the files.
//!
//! Builds on the shared pieces of `remote::postgres` (ids, records, expiry, paging) and runs
//! its conformance suite. TLS is reqwest's rustls on ring, as everywhere in the workspace.
//! Depends on core, memory and storage only; never on a transport.

mod blobs;
pub mod config;
mod provider;

use futures::FutureExt;
use llama_stack_core::Api;
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};

pub use config::S3FilesConfig;
pub use provider::{RECORD_KIND, S3Files};

pub const PROVIDER_TYPE: &str = "remote::s3";

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<S3FilesConfig>(&value, PROVIDER_TYPE)?;
        let provider = S3Files::open(config, context).await?;
        Ok(ProviderInstance::Files(std::sync::Arc::new(provider)))
    }
    .boxed()
}

/// Adds `remote::s3` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Files,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Uploaded files in an S3-compatible bucket, records in the distribution's metadata store",
        sample_config: config::SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<S3FilesConfig>,
        build,
    });
}
