//! `inline::meta-reference` agents. The turn loop runs in the stack (it calls inference,
//! safety and the tool runtime through the same functions the HTTP routes call); this provider
//! switches the agents API on and reads upstream's config block.

use futures::FutureExt;
use llama_stack_core::provider::parse_config;
use llama_stack_core::{
    Api, ConfigIssue, Error, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
    Result,
};
use serde::Deserialize;
use serde_json::Value;

pub const PROVIDER_TYPE: &str = "inline::meta-reference";

/// Agents, sessions and turns are kept in the distribution's metadata store (SQLite or
/// PostgreSQL); sessions of agents without `enable_session_persistence` stay in memory.
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
        validate,
        build,
    });
}

fn validate(config: &Value) -> Vec<ConfigIssue> {
    match parse_config::<MetaReferenceAgentsConfig>(config) {
        Ok(_) => Vec::new(),
        Err(issues) => issues,
    }
}

fn build(
    config: Value,
    _ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        parse_config::<MetaReferenceAgentsConfig>(&config).map_err(|issues| {
            Error::invalid(
                issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(ProviderInstance::Agents)
    }
    .boxed()
}
