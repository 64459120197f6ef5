//! The legacy SSE transport, and falling back from one transport to the other.

use serde_json::json;

use crate::server::{TestServer, sse, streamable};
use crate::{group, kwargs, runtime};
use llama_stack_core::request_context::{ProviderData, with_provider_data};

#[tokio::test]
async fn an_sse_endpoint_lists_and_runs_tools_with_the_request_headers() {
    let server = TestServer::default();
    let (addr, api_keys) = sse(server.clone(), "/sse").await;
    let uri = format!("http://{addr}/sse");
    let rt = runtime(json!({})).await;

    let tools = rt.list_tools(&group(&uri)).await.unwrap();
    assert_eq!(tools.len(), 4);
    assert_eq!(tools[0].metadata, Some(json!({ "endpoint": uri })));
    let before = api_keys.lock().unwrap().len();
    assert!(api_keys.lock().unwrap().iter().all(Option::is_none));

    let data = ProviderData::new(
        json!({"mcp_headers": json!({ uri.clone(): {"X-Api-Key": "sse-key"} }).to_string()})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let result = with_provider_data(
        data,
        rt.invoke(
            &group(&uri),
            "add",
            &kwargs(json!({"a": 5, "b": 6, "session_id": "s"})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        result.content,
        Some(json!([{"type": "text", "text": "11"}]))
    );
    // The stream and every message (initialize, tools/list for session_id, tools/call).
    let seen = api_keys.lock().unwrap()[before..].to_vec();
    assert!(seen.len() >= 4, "{seen:?}");
    assert!(
        seen.iter().all(|k| k.as_deref() == Some("sse-key")),
        "{seen:?}"
    );
    assert!(
        server.calls.lock().unwrap()[0]
            .arguments
            .get("session_id")
            .is_none()
    );
}

#[tokio::test]
async fn each_transport_falls_back_to_the_other() {
    // An SSE server whose path does not say so.
    let (addr, _) = sse(TestServer::default(), "/events").await;
    let rt = runtime(json!({})).await;
    let tools = rt
        .list_tools(&group(&format!("http://{addr}/events")))
        .await
        .unwrap();
    assert_eq!(tools.len(), 4);

    // A streamable HTTP server at a path ending in /sse.
    let addr = streamable(TestServer::default(), "/sse").await;
    let result = rt
        .invoke(
            &group(&format!("http://{addr}/sse")),
            "add",
            &kwargs(json!({"a": 1, "b": 1})),
        )
        .await
        .unwrap();
    assert_eq!(result.content, Some(json!([{"type": "text", "text": "2"}])));
}
