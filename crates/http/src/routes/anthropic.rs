//! The Anthropic Messages API: `POST /v1/messages` (streamed as Anthropic's named SSE events)
//! and `POST /v1/messages/count_tokens`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use llama_stack_core::Api;
use llama_stack_inference::anthropic::{MessageEvents, MessagesOutput};
use llama_stack_stack::Stack;
use serde_json::{Map, Value, json};

use crate::error::{Anthropic, ApiError, ApiJson};
use crate::table::{Form, RouteTable, declared};

type Body = ApiJson<Map<String, Value>, Anthropic>;
type AnthropicError = ApiError<Anthropic>;

/// Anthropic's framing: `event: <name>` then `data: <json>`; the SDK reads events by name. An
/// error mid-stream is an `error` event, the stream's last.
fn event_stream(events: MessageEvents) -> Response {
    let body = events.scan(false, |failed, item| {
        if *failed {
            return std::future::ready(None);
        }
        let (name, data) = match item {
            Ok(event) => event,
            Err(err) => {
                *failed = true;
                (
                    "error".to_string(),
                    json!({"type": "error", "error": {"type": "api_error", "message": err.to_string()}}),
                )
            }
        };
        let frame = Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
        std::future::ready(Some(Ok::<_, Infallible>(frame)))
    });
    let mut response = HttpBody::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[utoipa::path(post, path = "/v1/messages", tag = "anthropic", request_body = Object,
    responses((status = 200, description = "The message, or with `stream: true` Anthropic's SSE events",
        content((Object = "application/json"), (Object = "text/event-stream")))))]
pub async fn messages(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Response, AnthropicError> {
    Ok(match stack.inference.anthropic_messages(body).await? {
        MessagesOutput::Message(message) => Json(message).into_response(),
        MessagesOutput::Stream(events) => event_stream(events),
    })
}

#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic", request_body = Object,
    responses((status = 200, description = "`{\"input_tokens\": n}`")))]
pub async fn count_tokens(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, AnthropicError> {
    Ok(Json(stack.inference.anthropic_count_tokens(body).await?))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(Some(Api::Inference), Form::Plain, declared!(messages))
        .add(Some(Api::Inference), Form::Plain, declared!(count_tokens))
}
