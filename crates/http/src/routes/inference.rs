//! Classic inference routes.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use llama_stack_inference::ops::{collect_chat, collect_completion};
use llama_stack_stack::Stack;
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponse, ChatCompletionResponseStreamChunk,
    CompletionRequest, CompletionResponse, CompletionResponseStreamChunk, EmbeddingsRequest,
    EmbeddingsResponse,
};

use crate::error::{ApiJson, Classic, ClassicError};
use crate::sse::sse_response;
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

#[utoipa::path(post, path = "/v1/inference/chat-completion", tag = "inference",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "A response, or with `stream: true` SSE of chunks",
            content((ChatCompletionResponse = "application/json"),
                (ChatCompletionResponseStreamChunk = "text/event-stream")))))]
pub async fn chat_completion(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<ChatCompletionRequest, Classic>,
) -> Result<Response, ClassicError> {
    let stream = request.stream.unwrap_or(false);
    let chunks = stack.inference.chat_completion(request).await?;
    if stream {
        return Ok(sse_response(chunks));
    }
    Ok(Json(collect_chat(chunks).await?).into_response())
}

#[utoipa::path(post, path = "/v1/inference/completion", tag = "inference",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "A response, or with `stream: true` SSE of chunks",
            content((CompletionResponse = "application/json"),
                (CompletionResponseStreamChunk = "text/event-stream")))))]
pub async fn completion(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<CompletionRequest, Classic>,
) -> Result<Response, ClassicError> {
    let stream = request.stream.unwrap_or(false);
    let chunks = stack.inference.completion(request).await?;
    if stream {
        return Ok(sse_response(chunks));
    }
    Ok(Json(collect_completion(chunks).await?).into_response())
}

#[utoipa::path(post, path = "/v1/inference/embeddings", tag = "inference",
    request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse)))]
pub async fn embeddings(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<EmbeddingsRequest, Classic>,
) -> Result<Json<EmbeddingsResponse>, ClassicError> {
    Ok(Json(stack.inference.embeddings(request).await?))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Inference),
            Form::Plain,
            declared!(chat_completion),
        )
        .add(Some(Api::Inference), Form::Plain, declared!(completion))
        .add(Some(Api::Inference), Form::Plain, declared!(embeddings))
}
