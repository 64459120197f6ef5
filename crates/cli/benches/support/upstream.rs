//! A canned OpenAI-compatible upstream served from the bench process, so the figures measure
//! the gateway rather than a model.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// What a `/v1/chat/completions` request gets back.
#[derive(Clone)]
pub enum ChatReply {
    /// A whole `chat.completion` object.
    Json(serde_json::Value),
    /// A ready-made `text/event-stream` body.
    Sse(String),
}

impl ChatReply {
    /// An event stream of `chunks`, each a `data:` event, closed by `[DONE]`.
    pub fn sse(chunks: &[serde_json::Value]) -> Self {
        let body = chunks
            .iter()
            .map(|c| format!("data: {c}\n\n"))
            .collect::<String>()
            + "data: [DONE]\n\n";
        ChatReply::Sse(body)
    }
}

impl IntoResponse for ChatReply {
    fn into_response(self) -> Response {
        match self {
            ChatReply::Json(answer) => axum::Json(answer).into_response(),
            ChatReply::Sse(body) => ([(CONTENT_TYPE, "text/event-stream")], body).into_response(),
        }
    }
}

/// Serves `chat` for every chat completion and a model list naming only `model`, plus the
/// routes in `extra`; returns the base URL. It runs on its own thread and single-threaded
/// runtime, so it takes no worker from the load generator's runtime.
pub fn start_upstream(model: &str, chat: ChatReply, extra: axum::Router) -> String {
    start_upstream_with(model, move |_| chat.clone(), extra)
}

/// [`start_upstream`] with the reply to each chat completion chosen by `chat` from the
/// request body (`Null` when the body is not JSON), e.g. a tool call first and text once the
/// last message is a tool result.
pub fn start_upstream_with(
    model: &str,
    chat: impl Fn(&serde_json::Value) -> ChatReply + Send + Sync + 'static,
    extra: axum::Router,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let models = serde_json::json!({"object": "list", "data": [
        {"id": model, "object": "model", "created": 0, "owned_by": "stub"}]});
    let chat = std::sync::Arc::new(chat);
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::body::Bytes| {
                let chat = chat.clone();
                async move {
                    let request = serde_json::from_slice(&body).unwrap_or_default();
                    chat(&request)
                }
            }),
        )
        .route(
            "/v1/models",
            axum::routing::get(move || {
                let models = models.clone();
                async move { axum::Json(models) }
            }),
        )
        .merge(extra);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    base
}
