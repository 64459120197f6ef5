//! `remote::wolfram-alpha`.

use axum::http::Method;
use llama_stack_core::ErrorKind;
use serde_json::{Value, json};

use crate::support::{
    Upstream, build, content, failure, group, invoke, invoke_with, unreachable_base_url,
};

const TYPE: &str = "remote::wolfram-alpha";

fn answer() -> Value {
    json!({"queryresult": {
        "success": true, "error": false, "numpods": 3, "datatypes": "Math", "timedout": "",
        "timedoutpods": "", "timing": 0.9, "parsetiming": 0.2, "parsetimedout": false,
        "recalculate": "", "id": "MSP1", "host": "https://www6b3.wolframalpha.com",
        "server": "6", "related": "https://r.example", "version": "2.6",
        "inputstring": "integrate x^2",
        "pods": [
            {"title": "Indefinite integral", "scanner": "Integral", "id": "IndefiniteIntegral",
             "position": 100, "error": false, "numsubpods": 1, "primary": true,
             "subpods": [{"title": "", "plaintext": "∫x^2 dx = x^3/3 + constant"}],
             "expressiontypes": {"name": "Default"}},
            {"title": "Result", "scanner": "Simplification", "id": "Result", "position": 200,
             "error": false, "numsubpods": 1, "states": [{"name": "Step-by-step solution"}],
             "infos": {"text": "x"}, "subpods": [{"title": "", "plaintext": "x^3/3"}]},
            {"title": "Plot", "scanner": "Plot", "id": "Plot", "position": 300,
             "subpods": [{"title": "", "plaintext": ""}]}
        ],
        "assumptions": {"type": "Clash", "word": "x"}
    }})
}

fn config(base_url: &str, api_key: &str) -> Value {
    json!({"api_key": api_key, "base_url": base_url, "timeout_seconds": 5})
}

#[tokio::test]
async fn a_query_sends_input_and_appid_and_returns_the_cleaned_answer() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "APPID-CONFIG")).await;
    let result = invoke(
        &provider,
        "wolfram_alpha",
        json!({"query": "integrate x^2", "session_id": "s-1"}),
    )
    .await
    .unwrap();

    let request = upstream.only_request();
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.path, "/v2/query");
    let pairs: Vec<(&str, &str)> = request
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("input", "integrate x^2"),
            ("appid", "APPID-CONFIG"),
            ("format", "plaintext"),
            ("output", "json"),
        ]
    );

    assert_eq!(
        content(&result),
        r#"{"queryresult": {"success": true, "inputstring": "integrate x^2", "pods": [{"title": "Indefinite integral", "primary": true, "subpods": [{"title": "", "plaintext": "∫x^2 dx = x^3/3 + constant"}]}, {"title": "Result", "subpods": [{"title": "", "plaintext": "x^3/3"}]}]}}"#
    );
}

#[tokio::test]
async fn the_request_key_wins_and_no_key_is_refused() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "APPID-CONFIG")).await;
    let result = invoke_with(
        &provider,
        json!({"wolfram_alpha_api_key": "APPID-REQUEST"}),
        "wolfram_alpha",
        json!({"query": "2+2"}),
    )
    .await
    .unwrap();
    content(&result);
    let request = upstream.only_request();
    assert!(
        request
            .query
            .contains(&("appid".into(), "APPID-REQUEST".into()))
    );

    let provider = build(TYPE, config(&upstream.base_url, "")).await;
    let err = invoke(&provider, "wolfram_alpha", json!({"query": "2+2"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message()
            .contains(r#"{"wolfram_alpha_api_key": "<key>"}"#),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_refused_appid_is_an_error_result() {
    let refused = json!({"queryresult": {"success": false, "error": {"code": "1", "msg": "Invalid appid"},
                          "numpods": 0, "version": "2.6"}});
    let upstream = Upstream::answering(200, refused.to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "WRONG")).await;
    let result = invoke(&provider, "wolfram_alpha", json!({"query": "2+2"}))
        .await
        .unwrap();
    assert_eq!(
        failure(&result, 502),
        "Wolfram Alpha refused the query: Invalid appid (code 1)"
    );

    // Not understood is an answer, not a failure: the model may rephrase.
    let not_understood = json!({"queryresult": {"success": false, "error": false, "numpods": 0,
                                 "didyoumeans": {"val": "2+2"}}});
    let upstream = Upstream::answering(200, not_understood.to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "k")).await;
    let result = invoke(
        &provider,
        "wolfram_alpha",
        json!({"query": "2 plus plus 2"}),
    )
    .await
    .unwrap();
    assert_eq!(
        content(&result),
        r#"{"queryresult": {"success": false, "didyoumeans": {"val": "2+2"}}}"#
    );
}

#[tokio::test]
async fn upstream_failures_never_show_the_appid() {
    let upstream = Upstream::answering(503, "appid SECRET-APPID is over quota").await;
    let provider = build(TYPE, config(&upstream.base_url, "SECRET-APPID")).await;
    let result = invoke(&provider, "wolfram_alpha", json!({"query": "2+2"}))
        .await
        .unwrap();
    let message = failure(&result, 503);
    assert_eq!(
        message,
        "Wolfram Alpha answered HTTP 503 Service Unavailable: appid ******** is over quota"
    );

    let provider = build(TYPE, config(&unreachable_base_url().await, "SECRET-APPID")).await;
    let result = invoke(&provider, "wolfram_alpha", json!({"query": "2+2"}))
        .await
        .unwrap();
    let message = failure(&result, 502);
    assert!(
        message.starts_with("could not reach Wolfram Alpha"),
        "{message}"
    );
    assert!(!message.contains("SECRET-APPID"), "{message}");
}

#[tokio::test]
async fn the_tool_is_listed_and_bad_calls_are_refused() {
    let upstream = Upstream::answering(200, answer().to_string()).await;
    let provider = build(TYPE, config(&upstream.base_url, "k")).await;
    let tools = provider.list_tools(&group(None)).await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "wolfram_alpha");
    assert_eq!(
        tools[0].description,
        "Query WolframAlpha for computational knowledge"
    );
    assert_eq!(tools[0].parameters[0].description, "The query to compute");
    assert!(
        provider
            .check_group(&group(Some(json!({"uri": "http://m"}))))
            .is_err()
    );

    let err = invoke(&provider, "wolfram_alpha", json!({"query": ["2+2"]}))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("kwargs.query must be a string"),
        "{}",
        err.message()
    );
    let err = invoke(&provider, "web_search", json!({"query": "2+2"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(upstream.received().is_empty());
}
