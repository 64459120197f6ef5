//! OpenAI-compatible routes, served under `/v1/...` and `/v1/openai/v1/...`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
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

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Inference),
            Form::AlsoOpenAi,
            declared!(chat_completions),
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
