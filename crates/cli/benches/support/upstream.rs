//! A canned OpenAI-compatible upstream served from the bench process, so the figures measure
//! the gateway rather than a model.

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

/// What every `/v1/chat/completions` request gets back, whatever it asked for.
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let models = serde_json::json!({"object": "list", "data": [
        {"id": model, "object": "model", "created": 0, "owned_by": "stub"}]});
    let app = axum::Router::new()
        .route(
            "/v1/chat/completions",
            axum::routing::post(move || {
                let chat = chat.clone();
                async move { chat }
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
