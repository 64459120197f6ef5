//! `inline::rag-runtime`: the tool runtime behind the `builtin::rag` tool group
//! (`knowledge_search`, `insert_into_memory`) and `/v1/tool-runtime/rag-tool/*`.
//!
//! Documents are loaded (under the fetch limits of this provider's config), cut into
//! overlapping token windows, and stored and searched through the memory API handle the
//! assembler gives it.

mod jobs;
#[cfg(test)]
mod jobs_tests;
mod rag;
mod runtime;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use llama_stack_core::{Api, CheckedConfig, ConfigIssue};
use llama_stack_stack::{
    ApiHandles, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
};
use llama_stack_tools::{FetchPolicy, FetchSettings};
use serde::Deserialize;

pub use jobs::RagJobs;
pub use rag::{RagQueryConfig, RagTool, render_knowledge_search};

pub const PROVIDER_TYPE: &str = "inline::rag-runtime";

/// `providers.tool_runtime[].config` of `inline::rag-runtime`. Every field is optional; the
/// upstream config is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RagRuntimeConfig {
    /// Let documents be fetched from loopback, private and link-local addresses. Off by
    /// default so a document URL cannot reach services inside your network.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Largest document fetched by URL, in bytes (default 50 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_document_bytes: u64,
    /// Time allowed for fetching one document, in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub fetch_timeout_seconds: f64,
    /// A `rag-tool/insert` whose documents' loaded text (all of them together, in bytes)
    /// is larger than this runs as a background job: the route answers at once with the job
    /// (`GET /v1/tool-runtime/rag-tool/jobs/{job_id}` follows it), and the job goes on after a
    /// restart or on another replica sharing the metadata store. Default 1 MiB; 0 never runs
    /// inserts in the background. Smaller inserts run inline and stop when the client leaves.
    #[serde(default = "default_background_insert_bytes")]
    pub background_insert_bytes: u64,
}

fn default_background_insert_bytes() -> u64 {
    1024 * 1024
}

fn default_max_bytes() -> u64 {
    50 * 1024 * 1024
}

fn default_timeout() -> f64 {
    30.0
}

pub const SAMPLE_CONFIG: &str = "allow_private_addresses: false\nmax_document_bytes: 52428800\nfetch_timeout_seconds: 30\nbackground_insert_bytes: 1048576\n";

impl CheckedConfig for RagRuntimeConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_document_bytes == 0 {
            issues.push(ConfigIssue::new("max_document_bytes", "must be at least 1"));
        }
        if !(self.fetch_timeout_seconds > 0.0 && self.fetch_timeout_seconds.is_finite()) {
            issues.push(ConfigIssue::new(
                "fetch_timeout_seconds",
                format!(
                    "must be a positive number of seconds, got {}",
                    self.fetch_timeout_seconds
                ),
            ));
        }
        issues
    }
}

fn build(
    value: serde_json::Value,
    context: ProviderContext,
) -> futures::future::BoxFuture<'static, llama_stack_core::Result<ProviderInstance>> {
    async move {
        let config = llama_stack_core::load_config::<RagRuntimeConfig>(&value, PROVIDER_TYPE)?;
        let memory = ApiHandles::require(&context.apis.memory, Api::VectorIo, PROVIDER_TYPE)?;
        let jobs = context.registry.clone().map(|store| {
            Arc::new(RagJobs::new(
                store,
                memory.clone(),
                config.background_insert_bytes,
            ))
        });
        Ok(ProviderInstance::ToolRuntime(Arc::new(RagTool {
            jobs,
            memory,
            fetch: FetchPolicy {
                allow_private_addresses: config.allow_private_addresses,
                max_bytes: config.max_document_bytes,
                timeout: Duration::from_secs_f64(config.fetch_timeout_seconds),
                settings: FetchSettings::RAG_RUNTIME,
            },
        })))
    }
    .boxed()
}

/// Adds `inline::rag-runtime` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::ToolRuntime,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "The builtin::rag tools (knowledge_search over vector DBs) and rag-tool insert/query, with URL document loading limits",
        sample_config: SAMPLE_CONFIG,
        validate: llama_stack_core::validate_config::<RagRuntimeConfig>,
        build,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_safe_default() {
        assert!(
            llama_stack_core::validate_config::<RagRuntimeConfig>(&serde_json::Value::Null)
                .is_empty()
        );
        let c: RagRuntimeConfig = llama_stack_core::parse_config(&serde_json::json!({})).unwrap();
        assert!(!c.allow_private_addresses);
        assert_eq!(c.max_document_bytes, 50 * 1024 * 1024);
    }

    #[test]
    fn bad_fields_are_all_reported() {
        let issues = llama_stack_core::validate_config::<RagRuntimeConfig>(
            &serde_json::json!({"fetch_timeout_seconds": -1, "max_document_bytes": 0}),
        );
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["max_document_bytes", "fetch_timeout_seconds"]);
    }
}
