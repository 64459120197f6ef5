//! `remote::brave-search`.

use axum::http::Method;
use llama_stack_core::ErrorKind;
use serde_json::{Value, json};

use crate::support::{
    Upstream, build, content, failure, group, invoke, invoke_with, unreachable_base_url,
};

const TYPE: &str = "remote::brave-search";

/// A trimmed Brave answer: a mixed ranking over web results, a FAQ and news.
fn answer() -> Value {
    json!({
        "type": "search",
        "query": {"original": "rust lang"},
        "mixed": {"type": "mixed", "main": [
            {"type": "web", "index": 0, "all": false},
            {"type": "faq", "all": true},
            {"type": "web", "index": 1, "all": false},
            {"type": "news", "all": true}
        ], "top": [], "side": []},
        "web": {"type": "search", "results": [
            {"type": "search_result", "title": "Rust", "url": "https://www.rust-lang.org/",
             "description": "A language", "is_source_local": false, "language": "en",
             "profile": {"name": "Rust"}, "extra_snippets": ["fast", "safe"]},
            {"type": "search_result", "title": "Rust (wiki)", "url": "https://w.example/Rust",
             "description": "Wiki", "age": "1 day", "date": "2025-01-01"}
        ]},
        "faq": {"type": "faq", "results": [
            {"question": "Is Rust fast?", "answer": "Yes", "title": "FAQ", "url": "https://f.example", "meta_url": {"x": 1}}
        ]},
        "news": {"type": "news", "results": [{"title": "Rust 2.0", "url": "https://n.example", "age": "1h"}]}
    })
}

fn config(base_url: &str, api_key: &str, max_results: u32) -> Value {
    json!({"api_key": api_key, "max_results": max_results, "base_url": base_url})
}

#[tokio::test]
async fn a_search_sends_the_token_and_cleans_the_ranked_results() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "brave-config", 3)).await;
    let result = invoke(
        &provider,
        "web_search",
        json!({"query": "rust lang & more?", "session_id": "s-1"}),
    )
    .await
    .unwrap();

    let request = upstream.only_request();
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.path, "/res/v1/web/search");
    assert_eq!(
        request.query,
        [("q".to_string(), "rust lang & more?".to_string())]
    );
    assert_eq!(request.header("x-subscription-token"), Some("brave-config"));
    assert_eq!(request.header("accept"), Some("application/json"));
    assert!(request.body.is_empty());

    assert_eq!(
        content(&result),
        [
            r#"{"type": "search_result", "title": "Rust", "url": "https://www.rust-lang.org/", "description": "A language", "extra_snippets": ["fast", "safe"]}"#,
            r#"[{"question": "Is Rust fast?", "answer": "Yes", "title": "FAQ", "url": "https://f.example"}]"#,
            r#"{"type": "search_result", "title": "Rust (wiki)", "url": "https://w.example/Rust", "description": "Wiki", "date": "2025-01-01"}"#,
        ]
        .join("\n")
    );
}

#[tokio::test]
async fn max_results_cuts_the_ranking() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "k", 1)).await;
    let result = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap();
    assert_eq!(content(&result).lines().count(), 1);
    assert!(content(&result).contains("\"title\": \"Rust\""));

    let provider = build(TYPE, config(&upstream.base_url, "k", 10)).await;
    let result = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap();
    assert_eq!(content(&result).lines().count(), 4);
    assert_eq!(
        content(&result).lines().last().unwrap(),
        r#"[{"title": "Rust 2.0", "url": "https://n.example"}]"#
    );
}

#[tokio::test]
async fn the_request_key_wins_and_no_key_is_refused() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "brave-config", 3)).await;
    let result = invoke_with(
        &provider,
        json!({"brave_search_api_key": "brave-request"}),
        "web_search",
        json!({"query": "rust"}),
    )
    .await
    .unwrap();
    content(&result);
    assert_eq!(
        upstream.only_request().header("x-subscription-token"),
        Some("brave-request")
    );

    let provider = build(TYPE, json!({"base_url": upstream.base_url})).await;
    let err = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message()
            .contains(r#"{"brave_search_api_key": "<key>"}"#),
        "{}",
        err.message()
    );
    assert_eq!(upstream.received().len(), 1);
}

#[tokio::test]
async fn upstream_failures_are_error_results() {
    let upstream = Upstream::answering(
        429,
        r#"{"type": "ErrorResponse", "error": {"code": "RATE_LIMITED", "detail": "Request rate limit exceeded"}}"#,
    )
    .await;
    let provider = build(TYPE, config(&upstream.base_url, "k", 3)).await;
    let result = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap();
    let message = failure(&result, 429);
    assert!(
        message.starts_with("Brave Search answered HTTP 429 Too Many Requests: "),
        "{message}"
    );
    assert!(message.contains("Request rate limit exceeded"), "{message}");

    let provider = build(TYPE, config(&unreachable_base_url().await, "k", 3)).await;
    let result = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap();
    assert!(failure(&result, 502).starts_with("could not reach Brave Search"));
}

#[tokio::test]
async fn an_answer_without_a_ranking_is_empty_content() {
    let upstream = Upstream::answering(200, r#"{"type": "search", "web": {"results": []}}"#).await;
    let provider = build(TYPE, config(&upstream.base_url, "k", 3)).await;
    let result = invoke(&provider, "web_search", json!({"query": "rust"}))
        .await
        .unwrap();
    assert_eq!(content(&result), "");
    assert!(
        provider
            .check_group(&group(Some(json!("http://x"))))
            .is_err()
    );
    assert_eq!(
        provider.list_tools(&group(None)).await.unwrap()[0].name,
        "web_search"
    );
}
