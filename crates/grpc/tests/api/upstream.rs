//! A canned OpenAI-compatible upstream: deterministic answers, streamed as SSE, with markers in
//! the last message that change its behaviour:
//!
//! * `COUNT=<n>`: answer with `n` tokens (`tok0 tok1 ...`);
//! * `SLOW`: stream one token every 20 ms, forever; the connection dropping is recorded;
//! * `OVERLOAD`: answer 503 with `Retry-After: 3`;
//! * `USE_TOOL` (with tools offered): call the first tool with `{"x": 1}`.
//!
//! Embeddings are bags of words hashed into [`DIMENSION`] dimensions, so that similar texts
//! land near each other.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const DIMENSION: usize = 8;
/// The answer without markers.
pub const ANSWER: &str = "Paris is the capital of France.";

#[derive(Default)]
pub struct Seen {
    /// Slow streams whose connection was dropped.
    pub dropped: AtomicUsize,
    /// Tokens sent on slow streams.
    pub slow_tokens: AtomicUsize,
    /// The last `Authorization` header.
    pub authorization: std::sync::Mutex<Option<String>>,
    /// The last chat request's `traceparent` header.
    pub traceparent: std::sync::Mutex<Option<String>>,
}

pub struct Upstream {
    pub base: String,
    pub seen: Arc<Seen>,
}

pub async fn start() -> Upstream {
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completion))
        .route("/v1/embeddings", post(embeddings))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"object": "list", "data": []})) }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // As `llama-stack run` serves HTTP: with TCP_NODELAY, or streams stall on delayed ACKs.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Upstream { base, seen }
}

fn last_text(body: &Value) -> String {
    if let Some(prompt) = body.get("prompt") {
        return prompt.as_str().unwrap_or_default().to_string();
    }
    let last = body["messages"].as_array().and_then(|m| m.last());
    match last.map(|m| &m["content"]) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn tokens(text: &str) -> Vec<String> {
    if let Some(n) = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("COUNT="))
        .and_then(|n| n.parse::<usize>().ok())
    {
        return (0..n).map(|i| format!("tok{i} ")).collect();
    }
    if let Some(rest) = text.strip_prefix("TOOL_RESULT:") {
        return vec![format!("The tool said {}", rest.trim())];
    }
    ANSWER.split_inclusive(' ').map(str::to_string).collect()
}

fn sse(events: Vec<Value>) -> Response {
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

fn overloaded() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "3")],
        Json(json!({"error": {"message": "upstream is busy"}})),
    )
        .into_response()
}

/// Counts the drop of a slow stream's body, which happens when the client goes away.
struct DropGuard(Arc<Seen>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

fn slow(seen: Arc<Seen>, chunk: fn(String) -> Value) -> Response {
    let guard = DropGuard(seen);
    let stream = futures::stream::unfold((guard, 0usize), move |(guard, i)| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.0.slow_tokens.fetch_add(1, Ordering::SeqCst);
        let event = format!("data: {}\n\n", chunk(format!("tok{i} ")));
        Some((Ok::<_, std::io::Error>(event), (guard, i + 1)))
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn chat_delta(text: String) -> Value {
    json!({"id": "c1", "object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": {"role": "assistant", "content": text},
                        "finish_reason": null}]})
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

async fn chat(
    State(seen): State<Arc<Seen>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    *seen.authorization.lock().unwrap() = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    *seen.traceparent.lock().unwrap() = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = last_text(&body);
    let stream = body["stream"].as_bool().unwrap_or(false);
    if text.contains("OVERLOAD") {
        return overloaded();
    }
    if text.contains("SLOW") {
        return slow(seen, chat_delta);
    }
    let tool = body["tools"][0]["function"]["name"].as_str();
    if let (true, Some(name)) = (text.contains("USE_TOOL"), tool) {
        let call = json!({"index": 0, "id": "call_1", "type": "function",
                          "function": {"name": name, "arguments": "{\"x\": 1}"}});
        if stream {
            return sse(vec![
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]}),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
                       "usage": usage(5, 3)}),
            ]);
        }
        return Json(
            json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [call]}}],
            "usage": usage(5, 3)}),
        )
        .into_response();
    }
    // A tool result comes back as a tool message: answer with what it said.
    let last_role = body["messages"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["role"].clone());
    let text = if last_role == Some(json!("tool")) {
        format!("TOOL_RESULT:{text}")
    } else {
        text
    };
    let tokens = tokens(&text);
    if !stream {
        return Json(json!({"id": "c1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": tokens.concat()}}],
            "usage": usage(5, tokens.len())}))
        .into_response();
    }
    let n = tokens.len();
    let mut events: Vec<Value> = tokens.into_iter().map(chat_delta).collect();
    events.push(
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": usage(5, n)}),
    );
    sse(events)
}

fn completion_delta(text: String) -> Value {
    json!({"choices": [{"index": 0, "text": text, "finish_reason": null}]})
}

async fn completion(State(seen): State<Arc<Seen>>, Json(body): Json<Value>) -> Response {
    let text = last_text(&body);
    if text.contains("SLOW") {
        return slow(seen, completion_delta);
    }
    let tokens = tokens(&text);
    if !body["stream"].as_bool().unwrap_or(false) {
        return Json(json!({"choices": [{"index": 0, "text": tokens.concat(),
                                        "finish_reason": "stop"}],
                           "usage": usage(5, tokens.len())}))
        .into_response();
    }
    let mut events: Vec<Value> = tokens.into_iter().map(completion_delta).collect();
    events.push(json!({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}));
    sse(events)
}

/// FNV-1a, so the embedding of a word is the same in every run.
fn bucket(word: &str) -> usize {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in word.bytes() {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x100000001b3);
    }
    (hash % DIMENSION as u64) as usize
}

pub fn embed(text: &str) -> Vec<f32> {
    let mut v = [0.01f32; DIMENSION];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        v[bucket(&word.to_lowercase())] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

async fn embeddings(Json(body): Json<Value>) -> Response {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| json!({"object": "embedding", "index": i, "embedding": embed(text)}))
        .collect();
    Json(
        json!({"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": inputs.len(), "total_tokens": inputs.len()}}),
    )
    .into_response()
}
