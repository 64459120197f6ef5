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
    let router = Router::new().fallback(|| async {
        (
            StatusCode::NOT_FOUND,
            "internal admin page: secret-token-42",
        )
    });
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
        err.message().contains(&uri) && err.message().contains("did not answer as an MCP server"),
        "{}",
        err.message()
    );
    // What the endpoint sent stays in the server log: a tool group cannot read a page through
    // this error.
    assert!(!err.to_string().contains("secret-token-42"), "{err}");
}

/// Loopback, private and link-local MCP endpoints are refused unless the config allows them:
/// an IP literal when the group is checked, a host name when it is resolved to connect.
#[tokio::test]
async fn private_endpoints_are_refused_by_default() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = served.clone();
    let router = Router::new().fallback(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { (StatusCode::OK, "metadata") }
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    let rt = runtime(json!({"allow_private_addresses": false})).await;
    for uri in [
        format!("http://127.0.0.1:{port}/mcp"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[::1]/mcp".to_string(),
        "http://10.1.2.3/mcp".to_string(),
    ] {
        let err = rt.check_group(&group(&uri)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden, "{uri}: {err}");
        assert!(err.message().contains("allow_private_addresses"), "{err}");
    }
    let err = rt
        .list_tools(&group(&format!("http://localhost:{port}/mcp")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{err}");
    assert!(err.message().contains("loopback"), "{err}");
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was sent"
    );
    assert!(
        rt.check_group(&group("https://mcp.example.com/mcp"))
            .is_ok()
    );
}

/// A redirect is not followed on either transport: it could lead past the address check, and
/// the request carries the caller's credentials for the named server only.
#[tokio::test]
async fn redirects_are_not_followed() {
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_uri = format!("http://{}/mcp", target.local_addr().unwrap());
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = reached.clone();
    let target_app = Router::new().fallback(move || {
        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { StatusCode::OK }
    });
    tokio::spawn(async move { axum::serve(target, target_app).await });

    let redirecting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}/mcp", redirecting.local_addr().unwrap());
    let app = Router::new().fallback(move || {
        let location = target_uri.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    tokio::spawn(async move { axum::serve(redirecting, app).await });

    let err = runtime(json!({}))
        .await
        .list_tools(&group(&uri))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect target was reached"
    );
}
