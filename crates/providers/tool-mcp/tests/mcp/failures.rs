//! Servers that cannot be reached, do not answer or want credentials; bad groups and configs.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use llama_stack_core::ErrorKind;
use llama_stack_stack::ProviderRegistry;
use serde_json::json;

use crate::{group, kwargs, runtime};

#[tokio::test]
async fn an_unreachable_server_is_an_upstream_error_naming_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}/mcp", listener.local_addr().unwrap());
    drop(listener);
    let rt = runtime(json!({})).await;
    for err in [
        rt.list_tools(&group(&uri)).await.unwrap_err(),
        rt.invoke(&group(&uri), "add", &kwargs(json!({})))
            .await
            .unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
        assert!(err.message().contains(&uri), "{}", err.message());
        assert!(
            err.message().starts_with("Could not reach"),
            "{}",
            err.message()
        );
    }
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let rt = runtime(json!({"timeout_seconds": 0.5})).await;
    let started = Instant::now();
    let err = rt.list_tools(&group(&uri)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.message().contains(&uri));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_server_wanting_credentials_is_unauthorized() {
    let router = Router::new().fallback(|| async { StatusCode::UNAUTHORIZED });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let rt = runtime(json!({})).await;
    for path in ["mcp", "sse"] {
        let uri = format!("http://{addr}/{path}");
        let err = rt.list_tools(&group(&uri)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{uri}: {err}");
        assert!(err.message().contains("mcp_headers"), "{}", err.message());
    }
}

#[tokio::test]
async fn groups_without_an_http_endpoint_are_refused() {
    let rt = runtime(json!({})).await;
    let mut no_endpoint = group("http://h/mcp");
    no_endpoint.mcp_endpoint = None;
    for g in [no_endpoint, group("ws://h/mcp"), group("not a url")] {
        let err = rt.check_group(&g).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(
            err.message().contains("mcp_endpoint.uri"),
            "{}",
            err.message()
        );
        assert!(rt.list_tools(&g).await.is_err());
    }
    rt.check_group(&group("https://mcp.example.com/sse"))
        .unwrap();
}

#[test]
fn config_problems_are_all_reported() {
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_tool_mcp::register(&mut registry);
    let spec = registry.get("remote::model-context-protocol").unwrap();
    let sample: serde_json::Value = serde_norway::from_str(spec.sample_config).unwrap();
    assert!((spec.validate)(&sample).is_empty());
    let issues = (spec.validate)(&json!({"timeout_seconds": "soon", "headers": {}}));
    let mut paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["headers", "timeout_seconds"]);
}

#[tokio::test]
async fn a_server_that_does_not_speak_mcp_is_an_upstream_error() {
    let router = Router::new().fallback(|| async { (StatusCode::NOT_FOUND, "no such page") });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let err = runtime(json!({}))
        .await
        .list_tools(&group(&uri))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert!(
        err.message().contains("streamable HTTP") && err.message().contains("SSE: HTTP 404"),
        "{}",
        err.message()
    );
}
