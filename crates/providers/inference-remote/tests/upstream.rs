//! The client core and provider against an in-process HTTP upstream: what goes over the wire
//! (body, key, routes) and how answers and failures come back. The behaviour against real
//! servers (another llama-stack, llama.cpp) is covered end to end in tests/e2e.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::StreamExt;
use llama_stack_core::ErrorKind;
use llama_stack_core::parse_config;
use llama_stack_core::request_context::{ProviderData, with_provider_data};
use llama_stack_inference::{ForwardedReply, InferenceProvider};
use llama_stack_provider_inference_remote::config::{
    GroqConfig, OllamaConfig, OpenAiCompatConfig, RemoteConfig, VllmConfig,
};
use llama_stack_provider_inference_remote::flavor::{GROQ, OLLAMA, OPENAI_COMPAT, VLLM};
use llama_stack_provider_inference_remote::{Flavor, RemoteProvider};
use llama_stack_types::{
    ChatCompletionRequest, ContentDelta, HealthStatus, Message, Model, ModelType, RerankRequest,
};
use serde_json::{Value, json};

/// What the upstream received: (path, Authorization, body).
type Seen = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

async fn record(seen: &Seen, path: &str, headers: &HeaderMap, body: Value) {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().unwrap().push((path.to_string(), auth, body));
}

async fn chat(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    record(&seen, "/v1/chat/completions", &headers, body.clone()).await;
    if body["messages"][0]["content"] == "fail" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"message": "context too long"}})),
        )
            .into_response();
    }
    if body["stream"] == true {
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": " there"}, "finish_reason": "stop"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
        ];
        let mut text: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
        text.push_str("data: [DONE]\n\n");
        return ([("content-type", "text/event-stream")], text).into_response();
    }
    Json(
        json!({"id": "x", "object": "chat.completion", "model": "upstream-name",
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": "Hi there"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
    )
    .into_response()
}

/// vLLM's `/rerank` (Jina shape): scores each document by its length.
async fn rerank(
    State(seen): State<Seen>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    record(&seen, "/rerank", &headers, body.clone()).await;
    let documents = body["documents"].as_array().cloned().unwrap_or_default();
    let mut results: Vec<Value> = documents
        .iter()
        .enumerate()
        .map(|(index, d)| {
            let text = d.as_str().unwrap_or_default();
            json!({"index": index, "document": {"text": text},
                   "relevance_score": text.len() as f64 / 10.0})
        })
        .collect();
    if let Some(top_n) = body["top_n"].as_u64() {
        results.sort_by(|a, b| {
            b["relevance_score"]
                .as_f64()
                .partial_cmp(&a["relevance_score"].as_f64())
                .unwrap()
        });
        results.truncate(top_n as usize);
    }
    Json(json!({"id": "rerank-x", "model": body["model"], "results": results}))
}

async fn tags() -> Json<Value> {
    Json(
        json!({"models": [{"name": "llama3.2:3b", "model": "llama3.2:3b"},
                           {"name": "all-minilm:latest"}]}),
    )
}

async fn models() -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]}))
}

/// Serves the fake upstream; returns its base URL (no path) and what it saw.
async fn upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/rerank", post(rerank))
        .route("/api/tags", get(tags))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), seen)
}

fn provider<C: RemoteConfig>(flavor: &'static Flavor, config: Value) -> RemoteProvider {
    let settings = parse_config::<C>(&config).unwrap().into_settings();
    RemoteProvider::new(flavor, "p", &settings).unwrap()
}

fn model() -> Model {
    Model {
        identifier: "p/m".into(),
        provider_resource_id: "m".into(),
        provider_id: "p".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: ModelType::Llm,
        owner: None,
    }
}

fn request(text: &str, stream: bool) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model_id: "m".into(),
        messages: vec![Message::user(text)],
        sampling_params: None,
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: Some(stream),
        logprobs: None,
        tool_config: None,
    }
}

#[tokio::test]
async fn classic_chat_goes_out_as_openai_and_comes_back_as_events() {
    let (url, seen) = upstream().await;
    let p = provider::<OpenAiCompatConfig>(
        &OPENAI_COMPAT,
        json!({"url": format!("{url}/v1"), "api_key": "cfg-key"}),
    );
    for stream in [false, true] {
        let events: Vec<_> = p
            .chat_completion(&model(), request("hello", stream))
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let text: String = events
            .iter()
            .filter_map(|e| match &e.event.delta {
                ContentDelta::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Hi there");
        let last = events.last().unwrap();
        assert!(last.metrics.is_some());
    }
    let seen = seen.lock().unwrap();
    let (path, auth, body) = &seen[1];
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(auth.as_deref(), Some("Bearer cfg-key"));
    assert_eq!(body["model"], "m");
    assert_eq!(body["temperature"], 0.0);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert!(seen[0].2.get("stream").is_none());
}

#[tokio::test]
async fn the_request_header_key_wins_over_the_config_key() {
    let (url, seen) = upstream().await;
    let p = provider::<OpenAiCompatConfig>(
        &OPENAI_COMPAT,
        json!({"url": format!("{url}/v1"), "api_key": "cfg-key"}),
    );
    let data = ProviderData::from_header(br#"{"openai_compat_api_key": "request-key"}"#).unwrap();
    let _events = with_provider_data(data, p.chat_completion(&model(), request("hello", false)))
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].1.as_deref(),
        Some("Bearer request-key")
    );
}

#[tokio::test]
async fn upstream_errors_name_the_provider_and_keep_their_class() {
    let (url, _) = upstream().await;
    let p = provider::<OpenAiCompatConfig>(&OPENAI_COMPAT, json!({"url": format!("{url}/v1")}));
    let err = match p.chat_completion(&model(), request("fail", false)).await {
        Ok(_) => panic!("the upstream refused"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("provider 'p'"), "{err}");
    assert!(err.message().contains("context too long"), "{err}");

    // Nothing listens on the closed port: a temporary failure, worth a retry.
    let closed =
        provider::<OpenAiCompatConfig>(&OPENAI_COMPAT, json!({"url": "http://127.0.0.1:9/v1"}));
    let err = match closed.chat_completion(&model(), request("x", false)).await {
        Ok(_) => panic!("nothing listens"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.is_temporary());
    assert!(err.message().contains("cannot reach provider 'p'"), "{err}");
    assert_eq!(closed.health().await.status, HealthStatus::Error);
}

#[tokio::test]
async fn openai_requests_are_forwarded_and_answers_returned_as_they_came() {
    let (url, seen) = upstream().await;
    let p = provider::<OpenAiCompatConfig>(&OPENAI_COMPAT, json!({"url": format!("{url}/v1")}));
    let request = serde_json::from_value(json!({
        "model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3
    }))
    .unwrap();
    let ForwardedReply::Json(answer) = p.openai_chat_completion(&model(), request).await.unwrap()
    else {
        panic!("a non-stream request gets one object");
    };
    assert_eq!(answer["model"], "upstream-name");
    let body = &seen.lock().unwrap()[0].2;
    assert_eq!(
        body,
        &json!({"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3})
    );
}

#[tokio::test]
async fn ollama_models_come_from_its_tags_and_requests_from_its_v1_routes() {
    let (url, seen) = upstream().await;
    let p = provider::<OllamaConfig>(&OLLAMA, json!({"url": url, "refresh_models": true}));
    let ids: Vec<String> = p
        .list_provider_models()
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|m| m.provider_resource_id)
        .collect();
    assert_eq!(ids, ["llama3.2:3b", "all-minilm:latest"]);
    let _events = p
        .chat_completion(&model(), request("hello", false))
        .await
        .unwrap();
    let (path, auth, _) = seen.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(auth, None, "Ollama takes no key");

    let quiet = provider::<OllamaConfig>(&OLLAMA, json!({"url": url}));
    assert!(quiet.list_provider_models().await.is_none());
}

#[tokio::test]
async fn a_type_that_needs_a_key_says_where_to_put_it() {
    // Groq reads GROQ_API_KEY as a last resort; this test runs without it.
    if std::env::var_os("GROQ_API_KEY").is_some() {
        return;
    }
    let (url, seen) = upstream().await;
    let p = provider::<GroqConfig>(&GROQ, json!({"url": url}));
    let err = match p.chat_completion(&model(), request("hello", false)).await {
        Ok(_) => panic!("no key"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    for needle in [
        "GROQ_API_KEY",
        "groq_api_key",
        "X-LlamaStack-Provider-Data",
        "api_key",
    ] {
        assert!(err.message().contains(needle), "{needle}: {err}");
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing was sent");
}

fn rerank_request(max_num_results: Option<u32>) -> RerankRequest {
    serde_json::from_value(json!({
        "model": "m", "query": "which is longest",
        "items": ["short", {"type": "text", "text": "the longest one"}, "medium"],
        "max_num_results": max_num_results,
    }))
    .unwrap()
}

#[tokio::test]
async fn vllm_reranks_through_rerank_at_the_server_root() {
    let (url, seen) = upstream().await;
    let p = provider::<VllmConfig>(
        &VLLM,
        json!({"url": format!("{url}/v1"), "api_token": "vllm-key"}),
    );
    let mut model = model();
    model.model_type = ModelType::Rerank;
    let all = p.rerank(&model, rerank_request(None)).await.unwrap();
    let indices: Vec<u32> = all.data.iter().map(|d| d.index).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(all.data[1].relevance_score, 1.5);
    let top = p.rerank(&model, rerank_request(Some(1))).await.unwrap();
    assert_eq!(top.data.len(), 1);
    assert_eq!(top.data[0].index, 1);
    let seen = seen.lock().unwrap();
    let (path, auth, body) = &seen[0];
    assert_eq!(path, "/rerank");
    assert_eq!(auth.as_deref(), Some("Bearer vllm-key"));
    assert_eq!(
        body,
        &json!({"model": "m", "query": "which is longest",
                "documents": ["short", "the longest one", "medium"]})
    );
    assert_eq!(seen[1].2["top_n"], 1);
}

#[tokio::test]
async fn types_without_a_rerank_route_refuse_it() {
    let (url, _) = upstream().await;
    let p = provider::<GroqConfig>(&GROQ, json!({"url": url, "api_key": "k"}));
    let err = p.rerank(&model(), rerank_request(None)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("remote::groq"), "{err}");
}
