//! The trait every tool runtime implements: web search, Wolfram Alpha, MCP servers and the RAG
//! runtime behind `builtin::rag` alike.

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_types::{
    RagInsertRequest, RagQueryRequest, RagQueryResult, ToolDef, ToolGroup, ToolInvocationResult,
};
use serde_json::{Map, Value};

pub use llama_stack_documents::{FetchPolicy, FetchSettings};

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

    /// Whether this runtime talks to MCP servers, so that a server named in a request (a
    /// Responses `mcp` tool) can be reached through it as an unregistered group.
    fn serves_mcp(&self) -> bool {
        false
    }

    /// Whether this runtime serves the RAG tool (`rag-tool/insert` and `rag-tool/query`). Its
    /// groups' tools need no server round trip, so tool lookups try them first.
    fn serves_rag(&self) -> bool {
        false
    }

    /// How documents given by URL are loaded, for a runtime that loads them.
    fn fetch_policy(&self) -> Option<FetchPolicy> {
        None
    }

    /// `POST /v1/tool-runtime/rag-tool/insert`, on a runtime that [`serves_rag`](Self::serves_rag).
    async fn rag_insert(&self, _request: RagInsertRequest) -> Result<()> {
        Err(Error::unsupported(
            "This tool runtime does not serve the RAG tool",
        ))
    }

    /// `POST /v1/tool-runtime/rag-tool/query`, on a runtime that [`serves_rag`](Self::serves_rag).
    async fn rag_query(&self, _request: RagQueryRequest) -> Result<RagQueryResult> {
        Err(Error::unsupported(
            "This tool runtime does not serve the RAG tool",
        ))
    }

    /// `POST /v1/tool-runtime/rag-tool/insert` over HTTP: inline (answering `None`), or, for
    /// a runtime that runs large inserts in the background, the background job's object.
    async fn rag_insert_or_job(&self, request: RagInsertRequest) -> Result<Option<Value>> {
        self.rag_insert(request).await.map(|()| None)
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs/{job_id}`: a background insert job.
    async fn rag_insert_job(&self, job_id: &str) -> Result<Value> {
        Err(Error::not_found(format!(
            "RAG insert job '{job_id}' not found"
        )))
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs`: the background insert jobs the caller may read,
    /// of one vector DB or of all.
    async fn list_rag_insert_jobs(&self, _vector_db_id: Option<&str>) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }

    /// `POST /v1/tool-runtime/rag-tool/jobs/{job_id}/cancel`.
    async fn cancel_rag_insert_job(&self, job_id: &str) -> Result<Value> {
        Err(Error::not_found(format!(
            "RAG insert job '{job_id}' not found"
        )))
    }

    /// Takes up the background insert jobs an earlier process left unfinished, and keeps
    /// scanning for those of processes that stop. Called once the stores are restored.
    async fn resume_rag_insert_jobs(&self) -> Result<()> {
        Ok(())
    }
}
