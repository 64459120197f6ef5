//! `llama_stack.v1.ToolGroupsService`: tool groups, their tools, and running one.

use std::sync::Arc;

use llama_stack_stack::Stack;
use llama_stack_types::{InvokeToolRequest, RegisterToolGroupRequest};
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::convert::json::{json_to_struct, opt_struct, struct_to_map};
use crate::pb;
use crate::pb::tool_groups_service_server::ToolGroupsService;
use crate::status::status;

pub(crate) struct ToolGroups(pub Arc<Stack>);

fn group_to_pb(group: llama_stack_types::ToolGroup) -> pb::ToolGroup {
    pb::ToolGroup {
        identifier: group.identifier,
        provider_resource_id: group.provider_resource_id,
        provider_id: group.provider_id,
        mcp_endpoint: group.mcp_endpoint.as_ref().map(json_to_struct),
        args: group.args.as_ref().map(json_to_struct),
    }
}

#[tonic::async_trait]
impl ToolGroupsService for ToolGroups {
    async fn list_tool_groups(
        &self,
        _request: Request<pb::ListToolGroupsRequest>,
    ) -> Result<Response<pb::ListToolGroupsResponse>, Status> {
        let data = self.0.tools.list_tool_groups().await;
        Ok(Response::new(pb::ListToolGroupsResponse {
            data: data.into_iter().map(group_to_pb).collect(),
        }))
    }

    async fn get_tool_group(
        &self,
        request: Request<pb::GetToolGroupRequest>,
    ) -> Result<Response<pb::ToolGroup>, Status> {
        let id = request.into_inner().toolgroup_id;
        let group = self.0.tools.get_tool_group(&id).await.map_err(status)?;
        Ok(Response::new(group_to_pb(group)))
    }

    async fn register_tool_group(
        &self,
        request: Request<pb::RegisterToolGroupRequest>,
    ) -> Result<Response<pb::RegisterToolGroupResponse>, Status> {
        let request = request.into_inner();
        let register = RegisterToolGroupRequest {
            toolgroup_id: request.toolgroup_id,
            provider_id: request.provider_id,
            mcp_endpoint: opt_struct(request.mcp_endpoint).map(Value::Object),
            args: opt_struct(request.args).map(Value::Object),
        };
        self.0
            .tools
            .register_tool_group(register)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::RegisterToolGroupResponse {}))
    }

    async fn unregister_tool_group(
        &self,
        request: Request<pb::UnregisterToolGroupRequest>,
    ) -> Result<Response<pb::UnregisterToolGroupResponse>, Status> {
        let id = request.into_inner().toolgroup_id;
        self.0
            .tools
            .unregister_tool_group(&id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnregisterToolGroupResponse {}))
    }

    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let group = request.into_inner().toolgroup_id;
        let group = Some(group.as_str()).filter(|g| !g.is_empty());
        let tools = self.0.tools.list_tools(group).await.map_err(status)?;
        Ok(Response::new(pb::ListToolsResponse {
            data: tools
                .into_iter()
                .map(|t| pb::Tool {
                    identifier: t.identifier,
                    provider_id: t.provider_id,
                    toolgroup_id: t.toolgroup_id,
                    description: t.description,
                    parameters: t
                        .parameters
                        .iter()
                        .map(|p| json_to_struct(&serde_json::to_value(p).unwrap_or(Value::Null)))
                        .collect(),
                })
                .collect(),
        }))
    }

    async fn invoke_tool(
        &self,
        request: Request<pb::InvokeToolRequest>,
    ) -> Result<Response<pb::InvokeToolResponse>, Status> {
        let request = request.into_inner();
        let invoke = InvokeToolRequest {
            tool_name: request.tool_name,
            kwargs: request.kwargs.map(struct_to_map).unwrap_or_default(),
        };
        let result = self.0.tools.invoke_tool(invoke).await.map_err(status)?;
        Ok(Response::new(pb::InvokeToolResponse {
            result: Some(json_to_struct(&json!({"content": result.content}))),
            error_message: result.error_message,
            error_code: result.error_code,
        }))
    }
}
