//! `inline::builtin` responses: the OpenAI Responses API (`/v1/responses`) and Conversations
//! (`/v1/conversations`) over the other APIs. A response is a loop of OpenAI chat completions
//! through [`InferenceApi`] (so every inference provider serves it: the local engine through its
//! Llama tool-call formats, remote upstreams as they are), with the server-side tools run in
//! between: `file_search` on vector stores ([`MemoryApi`]), `web_search` and `mcp` on the tool
//! runtimes ([`ToolsApi`]). Client `function` tools end the response with `function_call` items.
//!
//! Responses, their input items, the chat history they continue from, and conversations are
//! kept in the distribution's metadata store, each response written once when it ends.

mod api;
mod conversations;
mod events;
mod input;
mod lease;
mod request;
mod run;
mod run_steps;
mod store;
mod tools;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use llama_stack_core::{
    Api, CheckedConfig, ConfigIssue, RegistryStore, Result, load_config, validate_config,
};
use llama_stack_inference::InferenceApi;
use llama_stack_memory::MemoryApi;
use llama_stack_safety::SafetyApi;
use llama_stack_stack::{
    ApiHandles, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
};
use llama_stack_tools::ToolsApi;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

pub const PROVIDER_TYPE: &str = "inline::builtin";

/// The builtin responses provider.
pub struct BuiltinResponses {
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) inference: Arc<dyn InferenceApi>,
    /// Shields for `guardrails`; absent when the distribution serves no safety API.
    pub(crate) safety: Option<Arc<dyn SafetyApi>>,
    /// Vector stores for `file_search`.
    pub(crate) memory: Option<Arc<dyn MemoryApi>>,
    /// Tool runtimes for `web_search` and `mcp`.
    pub(crate) tools: Option<Arc<dyn ToolsApi>>,
    pub(crate) config: BuiltinResponsesConfig,
    /// Serialises the responses of one conversation, so that each reads the history the one
    /// before it wrote.
    pub(crate) conversation_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Background responses running in this process, to cancel them.
    pub(crate) running: std::sync::Mutex<HashMap<String, tokio::task::AbortHandle>>,
    /// Who holds the leases of the background responses this instance runs (one per process
    /// in a server), so replicas sharing the store run each once.
    pub(crate) lease_holder: String,
    /// Whether the scan for responses to take over has started.
    pub(crate) scanning: std::sync::atomic::AtomicBool,
}

impl BuiltinResponses {
    pub fn new(
        store: Arc<dyn RegistryStore>,
        inference: Arc<dyn InferenceApi>,
        apis: &ApiHandles,
        config: BuiltinResponsesConfig,
    ) -> Self {
        BuiltinResponses {
            store,
            inference,
            safety: apis.safety.clone(),
            memory: apis.memory.clone(),
            tools: apis.tools.clone(),
            config,
            conversation_locks: Mutex::new(HashMap::new()),
            running: std::sync::Mutex::new(HashMap::new()),
            lease_holder: llama_stack_memory::lease::new_holder(),
            scanning: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The lock of one conversation's history.
    pub(crate) async fn conversation_lock(&self, id: &str) -> Arc<Mutex<()>> {
        self.conversation_locks
            .lock()
            .await
            .entry(id.to_string())
            .or_default()
            .clone()
    }
}

/// Responses and conversations live in the distribution's metadata store (SQLite or
/// PostgreSQL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinResponsesConfig {
    /// Inference iterations one response may run (each server tool call needs one more) when
    /// the request gives no `max_infer_iters`; 1 to 100.
    #[serde(default = "default_max_infer_iters")]
    pub max_infer_iters: u32,
    /// Upstream's own store settings; accepted so upstream files load. Records go to the
    /// distribution's metadata store.
    #[serde(default)]
    pub persistence: Option<Value>,
    /// Upstream's older name for the same store; accepted and unused.
    #[serde(default)]
    pub responses_store: Option<Value>,
}

fn default_max_infer_iters() -> u32 {
    10
}

impl Default for BuiltinResponsesConfig {
    fn default() -> Self {
        BuiltinResponsesConfig {
            max_infer_iters: default_max_infer_iters(),
            persistence: None,
            responses_store: None,
        }
    }
}

impl CheckedConfig for BuiltinResponsesConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(1..=100).contains(&self.max_infer_iters) {
            issues.push(ConfigIssue::new(
                "max_infer_iters",
                format!("must be between 1 and 100, got {}", self.max_infer_iters),
            ));
        }
        issues
    }
}

pub const SAMPLE_CONFIG: &str = "max_infer_iters: 10\n";

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Responses,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "OpenAI Responses and Conversations: function, file_search, web_search and MCP tools, streaming, background responses",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<BuiltinResponsesConfig>,
        build,
    });
}

fn build(
    config: Value,
    ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<BuiltinResponsesConfig>(&config, PROVIDER_TYPE)?;
        let store = ctx.require_registry(PROVIDER_TYPE)?;
        let inference = ApiHandles::require(&ctx.apis.inference, Api::Inference, PROVIDER_TYPE)?;
        let responses = BuiltinResponses::new(store, inference, &ctx.apis, config);
        Ok(ProviderInstance::Responses(Arc::new(responses)))
    }
    .boxed()
}
