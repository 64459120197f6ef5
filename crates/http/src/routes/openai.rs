//! OpenAI-compatible routes, served under `/v1/...` and `/v1/openai/v1/...`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use llama_stack_inference::CompletionQuery;
use llama_stack_inference::openai_compat::OpenAiOutput;
use llama_stack_stack::Stack;
use llama_stack_types::openai::{
    OpenAiChatCompletion, OpenAiChatCompletionChunk, OpenAiChatCompletionRequest, OpenAiCompletion,
    OpenAiCompletionRequest, OpenAiEmbeddingsRequest, OpenAiEmbeddingsResponse,
};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::sse::sse_response;
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;
use llama_stack_core::limits::RequestLimits;

fn respond<T, S, I>(output: OpenAiOutput<T, S>) -> Response
where
    T: serde::Serialize,
    S: futures::Stream<Item = llama_stack_core::Result<I>> + Send + 'static,
    I: serde::Serialize + Send + 'static,
{
    match output {
        OpenAiOutput::Complete(c) => Json(c).into_response(),
        OpenAiOutput::Stream(s) => sse_response(s),
        OpenAiOutput::Forwarded(value) => Json(value).into_response(),
        OpenAiOutput::ForwardedStream(s) => sse_response(s),
    }
}

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = OpenAiChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` SSE of chunks",
            content((OpenAiChatCompletion = "application/json"),
                (OpenAiChatCompletionChunk = "text/event-stream")))))]
pub async fn chat_completions(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<OpenAiChatCompletionRequest, OpenAi>,
) -> Result<Response, OpenAiError> {
    Ok(respond(
        stack.inference.openai_chat_completion(request).await?,
    ))
}

#[utoipa::path(post, path = "/v1/completions", tag = "openai",
    request_body = OpenAiCompletionRequest,
    responses(
        (status = 200, description = "The completion, or with `stream: true` SSE of chunks",
            content((OpenAiCompletion = "application/json"),
                (OpenAiCompletion = "text/event-stream")))))]
pub async fn completions(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<OpenAiCompletionRequest, OpenAi>,
) -> Result<Response, OpenAiError> {
    Ok(respond(stack.inference.openai_completion(request).await?))
}

#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = OpenAiEmbeddingsRequest,
    responses((status = 200, body = OpenAiEmbeddingsResponse)))]
pub async fn embeddings(
    State(stack): State<Arc<Stack>>,
    limits: Option<axum::Extension<Arc<RequestLimits>>>,
    ApiJson(request, ..): ApiJson<OpenAiEmbeddingsRequest, OpenAi>,
) -> Result<Json<OpenAiEmbeddingsResponse>, OpenAiError> {
    let limits = limits.map(|l| l.0).unwrap_or_default();
    crate::limits::check_embedding_inputs(request.input.len(), &limits)?;
    Ok(Json(stack.inference.openai_embeddings(request).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoredQuery {
    /// Start after this id.
    after: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Only completions of this model (listing completions only).
    model: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
}

impl StoredQuery {
    fn query(self) -> CompletionQuery {
        CompletionQuery {
            after: self.after,
            limit: self.limit,
            model: self.model,
            order: self.order,
        }
    }
}

#[utoipa::path(get, path = "/v1/chat/completions", tag = "openai", params(StoredQuery),
    responses((status = 200, description = "Stored chat completions (created with `store: true`)")))]
pub async fn list_chat_completions(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<StoredQuery>,
) -> Result<Json<serde_json::Value>, OpenAiError> {
    Ok(Json(
        stack.inference.list_chat_completions(&q.query()).await?,
    ))
}

#[utoipa::path(get, path = "/v1/chat/completions/{completion_id}", tag = "openai",
    params(("completion_id" = String, Path)),
    responses((status = 200, description = "A stored chat completion with its input messages")))]
pub async fn get_chat_completion(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, OpenAiError> {
    Ok(Json(stack.inference.get_chat_completion(&id).await?))
}

#[utoipa::path(delete, path = "/v1/chat/completions/{completion_id}", tag = "openai",
    params(("completion_id" = String, Path)), responses((status = 200, description = "Deletion status")))]
pub async fn delete_chat_completion(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, OpenAiError> {
    Ok(Json(stack.inference.delete_chat_completion(&id).await?))
}

#[utoipa::path(get, path = "/v1/chat/completions/{completion_id}/messages", tag = "openai",
    params(("completion_id" = String, Path), StoredQuery),
    responses((status = 200, description = "The stored completion's input messages")))]
pub async fn list_chat_completion_messages(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    Query(q): Query<StoredQuery>,
) -> Result<Json<serde_json::Value>, OpenAiError> {
    Ok(Json(
        stack
            .inference
            .list_chat_completion_messages(&id, &q.query())
            .await?,
    ))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(chat_completions, list_chat_completions),
        )
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(get_chat_completion, delete_chat_completion),
        )
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(list_chat_completion_messages),
        )
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(completions),
        )
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(embeddings),
        )
}
