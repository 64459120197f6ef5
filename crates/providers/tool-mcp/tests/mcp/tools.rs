//! Listing and running tools over streamable HTTP.

use llama_stack_core::request_context::{ProviderData, with_provider_data};
use serde_json::json;

use crate::server::{PNG, TestServer, streamable};
use crate::{group, kwargs, runtime};

#[tokio::test]
async fn tools_are_listed_across_pages_with_their_parameters() {
    let addr = streamable(TestServer::default(), "/mcp").await;
    let uri = format!("http://{addr}/mcp");
    let tools = runtime(json!({}))
        .await
        .list_tools(&group(&uri))
        .await
        .unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add", "fail", "picture", "whoami"]);
    let add = &tools[0];
    assert_eq!(add.description, "Add two integers");
    assert_eq!(add.metadata, Some(json!({ "endpoint": uri })));
    let params: Vec<_> = add
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.parameter_type.as_str(),
                p.required,
                p.default.clone(),
            )
        })
        .collect();
    assert_eq!(
        params,
        [
            ("a", "integer", true, None),
            ("b", "integer", false, Some(json!(0)))
        ]
    );
    assert_eq!(add.parameters[0].description, "First addend");
    assert!(tools[1].parameters.is_empty());
}

#[tokio::test]
async fn a_call_returns_the_tool_output_without_an_undeclared_session_id() {
    let server = TestServer::default();
    let addr = streamable(server.clone(), "/mcp").await;
    let rt = runtime(json!({})).await;
    let g = group(&format!("http://{addr}/mcp"));

    let result = rt
        .invoke(
            &g,
            "add",
            &kwargs(json!({"a": 2, "b": 40, "session_id": "s-1"})),
        )
        .await
        .unwrap();
    assert_eq!(
        result.content,
        Some(json!([{"type": "text", "text": "42"}]))
    );
    assert_eq!((result.error_message, result.error_code), (None, Some(0)));
    let calls = server.calls.lock().unwrap().clone();
    assert_eq!(calls[0].tool, "add");
    assert_eq!(calls[0].arguments, kwargs(json!({"a": 2, "b": 40})));

    // A tool that declares session_id gets it.
    let result = rt
        .invoke(&g, "whoami", &kwargs(json!({"session_id": "s-1"})))
        .await
        .unwrap();
    assert_eq!(
        result.content,
        Some(json!([{"type": "text", "text": "s-1"}]))
    );
}

#[tokio::test]
async fn tool_errors_images_and_resources_are_mapped() {
    let addr = streamable(TestServer::default(), "/mcp").await;
    let rt = runtime(json!({})).await;
    let g = group(&format!("http://{addr}/mcp"));

    let failed = rt.invoke(&g, "fail", &kwargs(json!({}))).await.unwrap();
    assert_eq!(failed.error_message.as_deref(), Some("the disk is full"));
    assert_eq!(failed.error_code, Some(1));
    assert_eq!(
        failed.content,
        Some(json!([{"type": "text", "text": "the disk is full"}]))
    );

    let picture = rt.invoke(&g, "picture", &kwargs(json!({}))).await.unwrap();
    assert_eq!(
        picture.content,
        Some(json!([
            {"type": "image", "image": {"data": PNG}},
            {"type": "text", "text": "some notes"}
        ]))
    );
    // The content is what the agent loop reads back as interleaved content.
    let content: llama_stack_types::InterleavedContent =
        serde_json::from_value(picture.content.unwrap()).unwrap();
    assert_eq!(content.as_text("|"), "<image>|some notes");
}

#[tokio::test]
async fn refused_arguments_are_an_invalid_request() {
    let addr = streamable(TestServer::default(), "/mcp").await;
    let rt = runtime(json!({})).await;
    let err = rt
        .invoke(
            &group(&format!("http://{addr}/mcp")),
            "add",
            &kwargs(json!({"a": "two"})),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("a must be an integer"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn provider_data_headers_reach_their_server_only() {
    let server = TestServer::default();
    let addr = streamable(server.clone(), "/mcp").await;
    let uri = format!("http://{addr}/mcp");
    let rt = runtime(json!({})).await;
    let mcp_headers = json!({
        uri.clone(): {"X-Api-Key": "key-1"},
        "http://elsewhere.example/mcp": {"X-Api-Key": "key-2"},
    });
    let data = ProviderData::new(
        json!({"mcp_headers": mcp_headers.to_string()})
            .as_object()
            .cloned()
            .unwrap(),
    );
    with_provider_data(
        data,
        rt.invoke(&group(&uri), "add", &kwargs(json!({"a": 1}))),
    )
    .await
    .unwrap();
    rt.invoke(&group(&uri), "add", &kwargs(json!({"a": 1})))
        .await
        .unwrap();
    let keys: Vec<_> = server
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.api_key.clone())
        .collect();
    assert_eq!(keys, [Some("key-1".to_string()), None]);
}
