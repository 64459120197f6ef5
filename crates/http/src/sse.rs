//! Server-sent events exactly as upstream frames them: `data: <json>\n\n` per item, no `event:`
//! lines, no `[DONE]`; the stream ends when the connection closes. An error mid-stream is sent
//! as one last `data: {"error": {"message": ...}}` item.

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use llama_stack_core::{ErrorKind, Result};
use serde::Serialize;

fn frame(value: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(value).unwrap_or_else(|e| {
        serde_json::json!({"error": {"message": format!("serialization failed: {e}")}}).to_string()
    });
    Bytes::from(format!("data: {json}\n\n"))
}

pub fn sse_response<T, S>(stream: S) -> Response
where
    T: Serialize + Send + 'static,
    S: Stream<Item = Result<T>> + Send + 'static,
{
    // After an error item nothing more is sent: the error is the stream's last word.
    let body = stream.scan(false, |failed, item| {
        if *failed {
            return std::future::ready(None);
        }
        let bytes = match item {
            Ok(value) => frame(&value),
            Err(err) => {
                *failed = true;
                let message = match err.kind() {
                    ErrorKind::Internal => {
                        tracing::error!(error = %err, "Stream failed");
                        "An unexpected error occurred.".to_string()
                    }
                    _ => err.to_string(),
                };
                frame(&serde_json::json!({"error": {"message": message}}))
            }
        };
        std::future::ready(Some(Ok::<_, Infallible>(bytes)))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
