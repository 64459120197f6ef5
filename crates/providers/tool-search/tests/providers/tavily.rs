//! `remote::tavily-search`.

use std::time::Duration;

use axum::http::Method;
use llama_stack_core::ErrorKind;
use serde_json::{Value, json};

use crate::support::{
    Upstream, build, content, failure, group, invoke, invoke_with, unreachable_base_url,
};

const TYPE: &str = "remote::tavily-search";

fn answer() -> Value {
    json!({
        "query": "rust async",
        "follow_up_questions": null,
        "answer": null,
        "images": [],
        "results": [
            {"title": "Async Rust", "url": "https://a.example", "content": "futures", "score": 0.91, "raw_content": null},
            {"title": "Tokio", "url": "https://b.example", "content": "runtime", "score": 0.8, "raw_content": null},
            {"title": "Third", "url": "https://c.example", "content": "c", "score": 0.5, "raw_content": null}
        ],
        "response_time": 1.2
    })
}

fn config(base_url: &str, api_key: &str) -> Value {
    json!({"api_key": api_key, "max_results": 2, "base_url": base_url, "timeout_seconds": 5})
}

#[tokio::test]
async fn a_search_posts_key_and_query_and_returns_the_top_results() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "tvly-config")).await;
    let result = invoke(
        &provider,
        "web_search",
        json!({"query": "rust async", "session_id": "s-1", "unrelated": [1]}),
    )
    .await
    .unwrap();

    let request = upstream.only_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/search");
    assert!(request.query.is_empty());
    assert_eq!(
        request.json(),
        json!({"api_key": "tvly-config", "query": "rust async", "max_results": 2})
    );
    assert_eq!(
        content(&result),
        r#"{"query": "rust async", "top_k": [{"title": "Async Rust", "url": "https://a.example", "content": "futures", "score": 0.91, "raw_content": null}, {"title": "Tokio", "url": "https://b.example", "content": "runtime", "score": 0.8, "raw_content": null}]}"#
    );
    let parsed: Value = serde_json::from_str(content(&result)).unwrap();
    assert_eq!(parsed["top_k"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_request_key_wins_over_the_config_key() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "tvly-config")).await;
    let result = invoke_with(
        &provider,
        json!({"tavily_search_api_key": "tvly-request", "other_key": "x"}),
        "web_search",
        json!({"query": "rust async"}),
    )
    .await
    .unwrap();
    content(&result);
    assert_eq!(upstream.only_request().json()["api_key"], "tvly-request");
}

#[tokio::test]
async fn an_empty_config_key_is_no_key() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "")).await;

    let err = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("set api_key in the provider config"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains(
            r#"{"tavily_search_api_key": "<key>"} in the X-LlamaStack-Provider-Data header"#
        ),
        "{}",
        err.message()
    );
    // An empty value in the header is no key either.
    let err = invoke_with(
        &provider,
        json!({"tavily_search_api_key": ""}),
        "web_search",
        json!({"query": "q"}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(upstream.received().is_empty());

    let result = invoke_with(
        &provider,
        json!({"tavily_search_api_key": "tvly-r"}),
        "web_search",
        json!({"query": "q"}),
    )
    .await
    .unwrap();
    content(&result);
    assert_eq!(upstream.only_request().json()["api_key"], "tvly-r");
}

#[tokio::test]
async fn an_upstream_error_is_an_error_result_with_status_and_excerpt() {
    let upstream =
        Upstream::answering(500, r#"{"detail": "internal failure for key tvly-config"}"#).await;
    let provider = build(TYPE, config(&upstream.base_url, "tvly-config")).await;
    let result = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap();
    let message = failure(&result, 500);
    assert!(message.starts_with("Tavily answered HTTP 500"), "{message}");
    assert!(
        message.contains("internal failure for key ********"),
        "{message}"
    );
    assert!(!message.contains("tvly-config"), "{message}");
}

#[tokio::test]
async fn an_unreachable_or_slow_upstream_is_an_error_result() {
    let provider = build(TYPE, config(&unreachable_base_url().await, "k")).await;
    let result = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap();
    assert!(failure(&result, 502).starts_with("could not reach Tavily at http://127.0.0.1:"));

    let upstream = Upstream::slow(Duration::from_secs(3)).await;
    let mut slow = config(&upstream.base_url, "k");
    slow["timeout_seconds"] = json!(0.3);
    let provider = build(TYPE, slow).await;
    let result = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap();
    assert!(failure(&result, 504).contains("did not answer in time"));
}

#[tokio::test]
async fn an_answer_that_is_not_a_result_list_is_an_error_result() {
    let upstream = Upstream::answering(200, "<html>maintenance</html>").await;
    let provider = build(TYPE, config(&upstream.base_url, "k")).await;
    let result = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap();
    assert!(failure(&result, 502).contains("not JSON: <html>maintenance</html>"));

    let upstream = Upstream::answering(200, r#"{"query": "q"}"#).await;
    let provider = build(TYPE, config(&upstream.base_url, "k")).await;
    let result = invoke(&provider, "web_search", json!({"query": "q"}))
        .await
        .unwrap();
    assert!(failure(&result, 502).contains("without a results list"));
}

#[tokio::test]
async fn the_tool_is_listed_and_bad_calls_are_refused() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "k")).await;

    let tools = provider.list_tools(&group(None)).await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "web_search");
    assert_eq!(tools[0].description, "Search the web for information");
    let parameter = &tools[0].parameters[0];
    assert_eq!(
        (
            parameter.name.as_str(),
            parameter.parameter_type.as_str(),
            parameter.required
        ),
        ("query", "string", true)
    );

    assert!(provider.check_group(&group(None)).is_ok());
    let err = provider
        .check_group(&group(Some(json!({"uri": "http://mcp.example/sse"}))))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("takes no mcp_endpoint"));
    assert_eq!(
        err.location().unwrap(),
        [json!("body"), json!("mcp_endpoint")]
    );

    for kwargs in [
        json!({}),
        json!({"query": 42}),
        json!({"query": null}),
        json!({"q": "x"}),
    ] {
        let err = invoke(&provider, "web_search", kwargs).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("kwargs.query"), "{}", err.message());
    }
    let err = invoke(&provider, "wolfram_alpha", json!({"query": "q"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(upstream.received().is_empty());
}
