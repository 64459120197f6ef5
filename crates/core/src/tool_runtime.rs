//! Tool runtimes: the providers behind tool groups. The RAG runtime is the stack's own (it
//! needs the vector IO and inference APIs); every other runtime (web search, Wolfram Alpha,
//! MCP servers) implements [`ToolRuntimeProvider`].

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_types::{ToolDef, ToolGroup, ToolInvocationResult};
use serde_json::{Map, Value};

use crate::error::Result;

pub use llama_stack_documents::FetchPolicy;

/// A built tool runtime provider.
#[derive(Clone)]
pub enum ToolRuntime {
    /// `inline::rag-runtime`: the `builtin::rag` tools over the vector IO API.
    Rag(RagSettings),
    /// A runtime that lists and runs its tools itself.
    Provider(Arc<dyn ToolRuntimeProvider>),
}

impl std::fmt::Debug for ToolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolRuntime::Rag(settings) => f.debug_tuple("Rag").field(settings).finish(),
            ToolRuntime::Provider(_) => f.write_str("Provider"),
        }
    }
}

/// How the RAG runtime loads documents given by URL.
#[derive(Debug, Clone, Default)]
pub struct RagSettings {
    pub fetch: FetchPolicy,
}

#[async_trait]
pub trait ToolRuntimeProvider: Send + Sync {
    /// Checks a tool group before it is registered or restored (an MCP runtime needs an
    /// `mcp_endpoint`, a search runtime must not get one); an error refuses the group.
    fn check_group(&self, group: &ToolGroup) -> Result<()>;

    /// The tools `group` offers. A runtime that asks a server (MCP) does so on every call, so
    /// the list follows the server.
    async fn list_tools(&self, group: &ToolGroup) -> Result<Vec<ToolDef>>;

    /// Runs `tool` of `group` with `kwargs` (the call's arguments, the group's `args` and, from
    /// an agent turn, `session_id`). A failure of the tool itself is reported in the result's
    /// `error_message`; an `Err` means the call could not be made (bad arguments, no API key).
    async fn invoke(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<ToolInvocationResult>;
}
