//! Memory: vector DBs, vector IO, the RAG tool and tool groups (classic API), and OpenAI
//! vector stores.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::InterleavedContent;

/// A registered vector DB (the classic `VectorDB` resource).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VectorDb {
    pub identifier: String,
    pub provider_resource_id: String,
    pub provider_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub embedding_model: String,
    pub embedding_dimension: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector_db_name: Option<String>,
    /// Who registered it; `None` when registered without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::User>,
}

/// `POST /v1/vector-dbs`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterVectorDbRequest {
    pub vector_db_id: String,
    pub embedding_model: String,
    #[serde(default, deserialize_with = "crate::lenient::opt_u32")]
    #[schema(value_type = Option<u32>)]
    pub embedding_dimension: Option<u32>,
    #[serde(default)]
    pub provider_id: Option<String>,
    #[serde(default)]
    pub provider_vector_db_id: Option<String>,
    #[serde(default)]
    pub vector_db_name: Option<String>,
}

/// `POST /v1/vector-io/insert`. Chunks stay JSON so each can be checked with its index.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertChunksRequest {
    #[serde(alias = "vector_store_id")]
    pub vector_db_id: String,
    #[schema(value_type = Vec<Object>)]
    pub chunks: Vec<Value>,
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
}

/// `POST /v1/vector-io/query`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryChunksRequest {
    #[serde(alias = "vector_store_id")]
    pub vector_db_id: String,
    pub query: InterleavedContent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueryChunksResponse {
    #[schema(value_type = Vec<Object>)]
    pub chunks: Vec<Value>,
    pub scores: Vec<f32>,
}

/// A document for the RAG tool: text, content items, or a URI (`{"uri": ...}` or a string that
/// is a `data:`/`http(s)` URL).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RagDocument {
    pub document_id: String,
    #[schema(value_type = Object)]
    pub content: Value,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// `POST /v1/tool-runtime/rag-tool/insert`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RagInsertRequest {
    pub documents: Vec<RagDocument>,
    pub vector_db_id: String,
    #[serde(default)]
    pub chunk_size_in_tokens: Option<usize>,
}

/// `POST /v1/tool-runtime/rag-tool/query`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RagQueryRequest {
    pub content: InterleavedContent,
    pub vector_db_ids: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub query_config: Option<Value>,
}

/// The RAG tool's answer: text items, or `null` when nothing matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RagQueryResult {
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// A parameter of a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolParameter {
    pub name: String,
    pub parameter_type: String,
    pub description: String,
    pub required: bool,
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
}

/// A registered tool group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolGroup {
    pub identifier: String,
    pub provider_resource_id: String,
    pub provider_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    #[schema(value_type = Option<Object>)]
    pub mcp_endpoint: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
    /// Who registered it; `None` for groups from run.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<crate::User>,
}

/// `POST /v1/toolgroups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterToolGroupRequest {
    pub toolgroup_id: String,
    pub provider_id: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub mcp_endpoint: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub args: Option<Value>,
}

/// A tool of a registered group (`GET /v1/tools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tool {
    pub identifier: String,
    pub provider_resource_id: String,
    pub provider_id: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub toolgroup_id: String,
    pub description: String,
    pub parameters: Vec<ToolParameter>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A tool as its runtime describes it (`GET /v1/tool-runtime/list-tools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    pub parameters: Vec<ToolParameter>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `POST /v1/tool-runtime/invoke`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeToolRequest {
    pub tool_name: String,
    #[schema(value_type = Object)]
    pub kwargs: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolInvocationResult {
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    pub error_message: Option<String>,
    pub error_code: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}
