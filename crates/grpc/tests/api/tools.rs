//! Tool groups and tools over gRPC, against the same answers over HTTP.

use llama_stack_grpc::pb;
use tonic::Code;

use crate::support;

#[tokio::test]
async fn tool_groups_and_tools_match_http() {
    let h = support::start().await;
    let mut tools = pb::tool_groups_service_client::ToolGroupsServiceClient::new(h.channel.clone());
    let groups = tools
        .list_tool_groups(pb::ListToolGroupsRequest {})
        .await
        .unwrap()
        .into_inner()
        .data;
    let (status, http) = h.get("/v1/toolgroups").await;
    assert_eq!(status, 200);
    let http_ids: Vec<&str> = http["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["identifier"].as_str().unwrap())
        .collect();
    let ids: Vec<&str> = groups.iter().map(|g| g.identifier.as_str()).collect();
    assert_eq!(ids, http_ids);
    assert!(ids.contains(&"builtin::rag"));

    let listed = tools
        .list_tools(pb::ListToolsRequest {
            toolgroup_id: "builtin::rag".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .data;
    let names: Vec<&str> = listed.iter().map(|t| t.identifier.as_str()).collect();
    assert!(names.contains(&"knowledge_search"), "{names:?}");
    let search = listed
        .iter()
        .find(|t| t.identifier == "knowledge_search")
        .unwrap();
    assert!(!search.parameters.is_empty());

    let missing = tools
        .get_tool_group(pb::GetToolGroupRequest {
            toolgroup_id: "no-such-group".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let unknown_tool = tools
        .invoke_tool(pb::InvokeToolRequest {
            tool_name: "no_such_tool".into(),
            kwargs: None,
        })
        .await
        .unwrap_err();
    assert_ne!(unknown_tool.code(), Code::Ok);
    let bad_runtime = tools
        .register_tool_group(pb::RegisterToolGroupRequest {
            toolgroup_id: "g".into(),
            provider_id: "no-such-runtime".into(),
            mcp_endpoint: None,
            args: None,
        })
        .await
        .unwrap_err();
    assert_ne!(bad_runtime.code(), Code::Ok);
}
