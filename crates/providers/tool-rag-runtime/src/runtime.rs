//! The RAG tool as a tool runtime: the `builtin::rag` group's tools and their invocation.

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_tools::{FetchPolicy, ToolRuntimeProvider};
use llama_stack_types::{
    RagInsertRequest, RagQueryRequest, RagQueryResult, ToolDef, ToolGroup, ToolInvocationResult,
    ToolParameter,
};
use serde_json::{Map, Value, json};

use crate::RagTool;
use crate::jobs::RagJobs;

impl RagTool {
    /// The background jobs, or why there are none.
    fn jobs(&self) -> Result<&std::sync::Arc<RagJobs>> {
        self.jobs.as_ref().ok_or_else(|| {
            Error::not_found(
                "No RAG insert jobs: this distribution has no metadata store to keep them in",
            )
        })
    }
}

/// The tools of the RAG runtime, as upstream describes them.
fn rag_tool_defs() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "insert_into_memory".into(),
            description: "Insert documents into memory".into(),
            parameters: vec![],
            metadata: None,
        },
        ToolDef {
            name: "knowledge_search".into(),
            description: "Search for information in a database.".into(),
            parameters: vec![ToolParameter {
                name: "query".into(),
                parameter_type: "string".into(),
                description:
                    "The query to search for. Can be a natural language sentence or keywords."
                        .into(),
                required: true,
                default: None,
            }],
            metadata: None,
        },
    ]
}

#[async_trait]
impl ToolRuntimeProvider for RagTool {
    fn check_group(&self, group: &ToolGroup) -> Result<()> {
        if group.mcp_endpoint.is_some() {
            return Err(Error::invalid(format!(
                "Provider '{}' is the RAG runtime, which takes no mcp_endpoint; register MCP tool groups with a remote::model-context-protocol provider",
                group.provider_id
            ))
            .with_location(vec!["body".into(), "mcp_endpoint".into()]));
        }
        Ok(())
    }

    async fn list_tools(&self, _group: &ToolGroup) -> Result<Vec<ToolDef>> {
        Ok(rag_tool_defs())
    }

    async fn invoke(
        &self,
        _group: &ToolGroup,
        tool: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        if tool != "knowledge_search" {
            return Err(Error::unsupported(format!(
                "Tool '{tool}' cannot be invoked directly; use POST /v1/tool-runtime/rag-tool/insert to add documents"
            )));
        }
        let query = kwargs.get("query").cloned().ok_or_else(|| {
            Error::invalid("knowledge_search needs kwargs.query").with_location(vec![
                "body".into(),
                "kwargs".into(),
                "query".into(),
            ])
        })?;
        let vector_db_ids: Vec<String> = match kwargs.get("vector_db_ids") {
            None | Some(Value::Null) => vec![],
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                Error::invalid(format!(
                    "kwargs.vector_db_ids must be a list of ids, got {v}"
                ))
                .with_location(vec![
                    "body".into(),
                    "kwargs".into(),
                    "vector_db_ids".into(),
                ])
            })?,
        };
        let content = serde_json::from_value(query.clone())
            .map_err(|_| Error::invalid(format!("kwargs.query must be text, got {query}")))?;
        let result = RagTool::rag_query(
            self,
            RagQueryRequest {
                content,
                vector_db_ids,
                query_config: kwargs.get("query_config").cloned(),
            },
        )
        .await?;
        Ok(ToolInvocationResult {
            content: result.content,
            error_message: None,
            error_code: None,
            metadata: Some(json!(result.metadata)),
        })
    }

    fn serves_rag(&self) -> bool {
        true
    }

    fn fetch_policy(&self) -> Option<FetchPolicy> {
        Some(self.fetch.clone())
    }

    async fn rag_insert(&self, request: RagInsertRequest) -> Result<()> {
        RagTool::rag_insert(self, request).await
    }

    async fn rag_query(&self, request: RagQueryRequest) -> Result<RagQueryResult> {
        RagTool::rag_query(self, request).await
    }

    async fn rag_insert_or_job(&self, request: RagInsertRequest) -> Result<Option<Value>> {
        RagTool::rag_insert_or_job(self, request).await
    }

    async fn rag_insert_job(&self, job_id: &str) -> Result<Value> {
        self.jobs()?.get(job_id).await
    }

    async fn list_rag_insert_jobs(&self, vector_db_id: Option<&str>) -> Result<Vec<Value>> {
        match &self.jobs {
            Some(jobs) => jobs.list(vector_db_id).await,
            None => Ok(Vec::new()),
        }
    }

    async fn cancel_rag_insert_job(&self, job_id: &str) -> Result<Value> {
        self.jobs()?.cancel(job_id).await
    }

    async fn resume_rag_insert_jobs(&self) -> Result<()> {
        match &self.jobs {
            Some(jobs) => jobs.resume().await,
            None => Ok(()),
        }
    }
}
