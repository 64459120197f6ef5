//! `inline::meta-reference` agents: agents, sessions and turns kept in the distribution's
//! metadata store, and the turn loop ([`turn`]): input shields, inference iterations, server
//! and client tool calls, output shields. It reaches inference, safety and the tool runtime
//! through the API handles the assembler gives it, the same functions the HTTP routes call.
//!
//! Depends on core, the wire types and the API crates' handles; never on another provider or
//! a transport.

mod agent_config;
mod api;
mod lock;
mod messages;
mod store;
mod turn;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use futures::FutureExt;
use llama_stack_core::{
    Api, CheckedConfig, ConfigIssue, RegistryStore, Result, load_config, validate_config,
};
use llama_stack_inference::InferenceApi;
use llama_stack_safety::SafetyApi;
use llama_stack_stack::{
    ApiHandles, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
};
use llama_stack_tools::ToolsApi;
use serde::Deserialize;
use serde_json::Value;

pub use llama_stack_core::MemoryStore;

/// The meta-reference agents provider.
pub struct MetaReferenceAgents {
    /// Agents, sessions and turns. Every read goes to it, never to a copy in this process,
    /// so replicas sharing the store serve the same agents.
    pub(crate) store: Arc<dyn RegistryStore>,
    /// The sessions with a turn running or waiting here (see [`lock`]).
    pub(crate) turn_locks: lock::LocalLocks,
    pub(crate) inference: Arc<dyn InferenceApi>,
    pub(crate) safety: Arc<dyn SafetyApi>,
    pub(crate) tools: Arc<dyn ToolsApi>,
}

impl MetaReferenceAgents {
    pub fn new(
        store: Arc<dyn RegistryStore>,
        inference: Arc<dyn InferenceApi>,
        safety: Arc<dyn SafetyApi>,
        tools: Arc<dyn ToolsApi>,
    ) -> Self {
        MetaReferenceAgents {
            store,
            turn_locks: Default::default(),
            inference,
            safety,
            tools,
        }
    }
}

pub const PROVIDER_TYPE: &str = "inline::meta-reference";

/// Agents, sessions and turns are kept in the distribution's metadata store (SQLite or
/// PostgreSQL), every session whatever `enable_session_persistence` says, so that replicas
/// sharing the store serve the same sessions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaReferenceAgentsConfig {
    /// Upstream's own store for agents; accepted so upstream files load. Records go to the
    /// distribution's metadata store.
    #[serde(default)]
    pub persistence_store: Option<Value>,
    /// Upstream's store for OpenAI responses (not served here); accepted and unused.
    #[serde(default)]
    pub responses_store: Option<Value>,
}

pub const SAMPLE_CONFIG: &str = "persistence_store:
  type: sqlite
  db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/local}/agents_store.db
";

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Agents,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Agents with sessions, streaming turns, tools and shields",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<MetaReferenceAgentsConfig>,
        build,
    });
}

impl CheckedConfig for MetaReferenceAgentsConfig {
    /// Both fields are accepted as upstream writes them and not used, so nothing beyond their
    /// types needs checking.
    fn issues(&self) -> Vec<ConfigIssue> {
        Vec::new()
    }
}

fn build(
    config: Value,
    ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        load_config::<MetaReferenceAgentsConfig>(&config, PROVIDER_TYPE)?;
        let store = ctx.require_registry(PROVIDER_TYPE)?;
        let apis = &ctx.apis;
        let agents = MetaReferenceAgents::new(
            store,
            ApiHandles::require(&apis.inference, Api::Inference, PROVIDER_TYPE)?,
            ApiHandles::require(&apis.safety, Api::Safety, PROVIDER_TYPE)?,
            ApiHandles::require(&apis.tools, Api::ToolRuntime, PROVIDER_TYPE)?,
        );
        Ok(ProviderInstance::Agents(Arc::new(agents)))
    }
    .boxed()
}
