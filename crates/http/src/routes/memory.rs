//! Classic memory routes: `/v1/vector-dbs`, `/v1/vector-io/*`, `/v1/tool-runtime/*`,
//! `/v1/toolgroups` and `/v1/tools`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use llama_stack_stack::Stack;
use llama_stack_types::{
    DataList, InsertChunksRequest, InvokeToolRequest, QueryChunksRequest, QueryChunksResponse,
    RagInsertRequest, RagQueryRequest, RagQueryResult, RegisterToolGroupRequest,
    RegisterVectorDbRequest, Tool, ToolDef, ToolGroup, ToolInvocationResult, VectorDb,
};
use serde::Deserialize;

use llama_stack_core::Api;

use crate::error::{ApiJson, Classic, ClassicError};
use crate::table::{Form, RouteTable, declared};

/// Ids may contain `/`; a client base URL ending in `/` can add a leading one.
fn id(raw: &str) -> &str {
    raw.trim_start_matches('/')
}

#[utoipa::path(get, path = "/v1/vector-dbs", tag = "vector_dbs",
    responses((status = 200, body = DataList<VectorDb>)))]
pub async fn list_vector_dbs(State(stack): State<Arc<Stack>>) -> Json<DataList<VectorDb>> {
    Json(DataList {
        data: stack.memory.list_vector_dbs().await,
    })
}

#[utoipa::path(post, path = "/v1/vector-dbs", tag = "vector_dbs",
    request_body = RegisterVectorDbRequest, responses((status = 200, body = VectorDb)))]
pub async fn register_vector_db(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RegisterVectorDbRequest, Classic>,
) -> Result<Json<VectorDb>, ClassicError> {
    Ok(Json(stack.memory.register_vector_db(request).await?))
}

#[utoipa::path(get, path = "/v1/vector-dbs/{vector_db_id}", tag = "vector_dbs",
    params(("vector_db_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, body = VectorDb)))]
pub async fn get_vector_db(
    State(stack): State<Arc<Stack>>,
    Path(raw): Path<String>,
) -> Result<Json<VectorDb>, ClassicError> {
    Ok(Json(stack.memory.get_vector_db(id(&raw)).await?))
}

#[utoipa::path(delete, path = "/v1/vector-dbs/{vector_db_id}", tag = "vector_dbs",
    params(("vector_db_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, description = "`null`")))]
pub async fn unregister_vector_db(
    State(stack): State<Arc<Stack>>,
    Path(raw): Path<String>,
) -> Result<Json<()>, ClassicError> {
    stack.memory.unregister_vector_db(id(&raw)).await?;
    Ok(Json(()))
}

#[utoipa::path(post, path = "/v1/vector-io/insert", tag = "vector_io",
    request_body = InsertChunksRequest, responses((status = 200, description = "`null`")))]
pub async fn insert_chunks(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<InsertChunksRequest, Classic>,
) -> Result<Json<()>, ClassicError> {
    stack.memory.insert_chunks(request).await?;
    Ok(Json(()))
}

#[utoipa::path(post, path = "/v1/vector-io/query", tag = "vector_io",
    request_body = QueryChunksRequest, responses((status = 200, body = QueryChunksResponse)))]
pub async fn query_chunks(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<QueryChunksRequest, Classic>,
) -> Result<Json<QueryChunksResponse>, ClassicError> {
    Ok(Json(stack.memory.query_chunks(request).await?))
}

#[utoipa::path(post, path = "/v1/tool-runtime/rag-tool/insert", tag = "tool_runtime",
    request_body = RagInsertRequest, responses((status = 200,
        description = "`null` once inserted; or, for documents whose loaded text is over the RAG runtime's `background_insert_bytes`, a `rag_tool.insert_job` object, the insert going on in the background")))]
pub async fn rag_insert(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RagInsertRequest, Classic>,
) -> Result<Json<Option<serde_json::Value>>, ClassicError> {
    Ok(Json(stack.tools.rag_insert_or_job(request).await?))
}

#[utoipa::path(get, path = "/v1/tool-runtime/rag-tool/jobs/{job_id}", tag = "tool_runtime",
    params(("job_id" = String, Path)),
    responses((status = 200, description = "rag_tool.insert_job object: `status` (`in_progress`, `completed`, `failed`, `cancelled`), `documents` (`total`, `completed`, `failed`), `chunks_stored`, `error`")))]
pub async fn get_rag_insert_job(
    State(stack): State<Arc<Stack>>,
    Path(job_id): Path<String>,
) -> Result<Json<serde_json::Value>, crate::error::OpenAiError> {
    Ok(Json(stack.tools.rag_insert_job(&job_id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRagInsertJobsQuery {
    /// Only the jobs inserting into this vector DB.
    vector_db_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/tool-runtime/rag-tool/jobs", tag = "tool_runtime",
    params(ListRagInsertJobsQuery),
    responses((status = 200, description = "`{\"data\": [rag_tool.insert_job, ...]}`, oldest first, the jobs the caller may read")))]
pub async fn list_rag_insert_jobs(
    State(stack): State<Arc<Stack>>,
    Query(query): Query<ListRagInsertJobsQuery>,
) -> Result<Json<serde_json::Value>, crate::error::OpenAiError> {
    let data = stack
        .tools
        .list_rag_insert_jobs(query.vector_db_id.as_deref())
        .await?;
    Ok(Json(serde_json::json!({ "data": data })))
}

#[utoipa::path(post, path = "/v1/tool-runtime/rag-tool/jobs/{job_id}/cancel", tag = "tool_runtime",
    params(("job_id" = String, Path)),
    responses((status = 200, description = "the cancelled rag_tool.insert_job object; 409 when the job had already finished")))]
pub async fn cancel_rag_insert_job(
    State(stack): State<Arc<Stack>>,
    Path(job_id): Path<String>,
) -> Result<Json<serde_json::Value>, crate::error::OpenAiError> {
    Ok(Json(stack.tools.cancel_rag_insert_job(&job_id).await?))
}

#[utoipa::path(post, path = "/v1/tool-runtime/rag-tool/query", tag = "tool_runtime",
    request_body = RagQueryRequest, responses((status = 200, body = RagQueryResult)))]
pub async fn rag_query(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RagQueryRequest, Classic>,
) -> Result<Json<RagQueryResult>, ClassicError> {
    Ok(Json(stack.tools.rag_query(request).await?))
}

#[utoipa::path(post, path = "/v1/tool-runtime/invoke", tag = "tool_runtime",
    request_body = InvokeToolRequest, responses((status = 200, body = ToolInvocationResult)))]
pub async fn invoke_tool(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<InvokeToolRequest, Classic>,
) -> Result<Json<ToolInvocationResult>, ClassicError> {
    Ok(Json(stack.tools.invoke_tool(request).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRuntimeToolsQuery {
    tool_group_id: Option<String>,
    /// The MCP server's URI: plain, or as the JSON object `{"uri": ...}`.
    mcp_endpoint: Option<String>,
    /// The same, as the Stainless clients send an object in a query (`mcp_endpoint[uri]=`).
    #[serde(rename = "mcp_endpoint[uri]")]
    #[param(rename = "mcp_endpoint[uri]")]
    mcp_endpoint_uri: Option<String>,
}

#[utoipa::path(get, path = "/v1/tool-runtime/list-tools", tag = "tool_runtime",
    params(ListRuntimeToolsQuery), responses((status = 200, body = DataList<ToolDef>)))]
pub async fn list_runtime_tools(
    State(stack): State<Arc<Stack>>,
    Query(query): Query<ListRuntimeToolsQuery>,
) -> Result<Json<DataList<ToolDef>>, ClassicError> {
    let endpoint = query.mcp_endpoint_uri.or(query.mcp_endpoint.map(|raw| {
        serde_json::from_str::<serde_json::Value>(&raw)
            .ok()
            .and_then(|v| v.get("uri").and_then(|u| u.as_str()).map(str::to_string))
            .unwrap_or(raw)
    }));
    if let Some(uri) = endpoint {
        return Ok(Json(DataList {
            data: stack.tools.list_endpoint_tools(&uri).await?,
        }));
    }
    Ok(Json(DataList {
        data: stack
            .tools
            .list_runtime_tools(query.tool_group_id.as_deref())
            .await?,
    }))
}

#[utoipa::path(get, path = "/v1/toolgroups", tag = "toolgroups",
    responses((status = 200, body = DataList<ToolGroup>)))]
pub async fn list_tool_groups(State(stack): State<Arc<Stack>>) -> Json<DataList<ToolGroup>> {
    Json(DataList {
        data: stack.tools.list_tool_groups().await,
    })
}

#[utoipa::path(post, path = "/v1/toolgroups", tag = "toolgroups",
    request_body = RegisterToolGroupRequest, responses((status = 200, description = "`null`")))]
pub async fn register_tool_group(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RegisterToolGroupRequest, Classic>,
) -> Result<Json<()>, ClassicError> {
    stack.tools.register_tool_group(request).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/v1/toolgroups/{toolgroup_id}", tag = "toolgroups",
    params(("toolgroup_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, body = ToolGroup)))]
pub async fn get_tool_group(
    State(stack): State<Arc<Stack>>,
    Path(raw): Path<String>,
) -> Result<Json<ToolGroup>, ClassicError> {
    Ok(Json(stack.tools.get_tool_group(id(&raw)).await?))
}

#[utoipa::path(delete, path = "/v1/toolgroups/{toolgroup_id}", tag = "toolgroups",
    params(("toolgroup_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, description = "`null`")))]
pub async fn unregister_tool_group(
    State(stack): State<Arc<Stack>>,
    Path(raw): Path<String>,
) -> Result<Json<()>, ClassicError> {
    stack.tools.unregister_tool_group(id(&raw)).await?;
    Ok(Json(()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListToolsQuery {
    toolgroup_id: Option<String>,
}

#[utoipa::path(get, path = "/v1/tools", tag = "tools",
    params(ListToolsQuery), responses((status = 200, body = DataList<Tool>)))]
pub async fn list_tools(
    State(stack): State<Arc<Stack>>,
    Query(query): Query<ListToolsQuery>,
) -> Result<Json<DataList<Tool>>, ClassicError> {
    Ok(Json(DataList {
        data: stack
            .tools
            .list_tools(query.toolgroup_id.as_deref())
            .await?,
    }))
}

#[utoipa::path(get, path = "/v1/tools/{tool_name}", tag = "tools",
    params(("tool_name" = String, Path)), responses((status = 200, body = Tool)))]
pub async fn get_tool(
    State(stack): State<Arc<Stack>>,
    Path(raw): Path<String>,
) -> Result<Json<Tool>, ClassicError> {
    Ok(Json(stack.tools.get_tool(id(&raw)).await?))
}

/// The routes of the vector IO and tool runtime APIs; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    let vector_io = Some(Api::VectorIo);
    let tools = Some(Api::ToolRuntime);
    table
        .add(
            vector_io,
            Form::Plain,
            declared!(list_vector_dbs, register_vector_db),
        )
        .add(
            vector_io,
            Form::Slashed,
            declared!(get_vector_db, unregister_vector_db),
        )
        .add(vector_io, Form::Plain, declared!(insert_chunks))
        .add(vector_io, Form::Plain, declared!(query_chunks))
        .add(tools, Form::Plain, declared!(rag_insert))
        .add(tools, Form::Plain, declared!(get_rag_insert_job))
        .add(tools, Form::Plain, declared!(list_rag_insert_jobs))
        .add(tools, Form::Plain, declared!(cancel_rag_insert_job))
        .add(tools, Form::Plain, declared!(rag_query))
        .add(tools, Form::Plain, declared!(invoke_tool))
        .add(tools, Form::Plain, declared!(list_runtime_tools))
        .add(
            tools,
            Form::Plain,
            declared!(list_tool_groups, register_tool_group),
        )
        .add(
            tools,
            Form::Slashed,
            declared!(get_tool_group, unregister_tool_group),
        )
        .add(tools, Form::Plain, declared!(list_tools))
        .add(tools, Form::Slashed, declared!(get_tool))
}
