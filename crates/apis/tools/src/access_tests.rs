//! Access control of tool groups and their tools: a user's group, and every tool in it, is
//! hidden from another user as if it did not exist, and run.yaml's groups stay everyone's. No
//! test here calls `access::enforce`, so users are judged by the default policy.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::access::{self, Caller, User};
use llama_stack_core::{ErrorKind, MemoryStore, Result};
use llama_stack_types::{
    InvokeToolRequest, RegisterToolGroupRequest, ToolDef, ToolGroup, ToolInvocationResult,
};
use serde_json::{Map, Value, json};

use crate::provider::ToolRuntimeProvider;
use crate::service::ToolsService;

/// A runtime whose every group offers one tool, `<group>_tool`.
struct OneTool;

#[async_trait]
impl ToolRuntimeProvider for OneTool {
    fn check_group(&self, _: &ToolGroup) -> Result<()> {
        Ok(())
    }

    async fn list_tools(&self, group: &ToolGroup) -> Result<Vec<ToolDef>> {
        Ok(vec![ToolDef {
            name: format!("{}_tool", group.identifier),
            description: String::new(),
            parameters: Vec::new(),
            metadata: None,
        }])
    }

    async fn invoke(
        &self,
        _: &ToolGroup,
        tool: &str,
        _: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        Ok(ToolInvocationResult {
            content: Some(json!(tool)),
            error_message: None,
            error_code: None,
            metadata: None,
        })
    }
}

fn service() -> ToolsService {
    ToolsService::new(
        vec![(
            "rt".into(),
            Arc::new(OneTool) as Arc<dyn ToolRuntimeProvider>,
        )],
        Arc::new(MemoryStore::default()),
    )
}

fn user(name: &str) -> Caller {
    Caller::User(User::new(name))
}

fn register(id: &str) -> RegisterToolGroupRequest {
    RegisterToolGroupRequest {
        toolgroup_id: id.into(),
        provider_id: "rt".into(),
        mcp_endpoint: None,
        args: None,
    }
}

fn invoke(tool: &str) -> InvokeToolRequest {
    InvokeToolRequest {
        tool_name: tool.into(),
        kwargs: Map::new(),
    }
}

fn not_found<T>(result: Result<T>) {
    let Err(err) = result else {
        panic!("expected not found, got an answer");
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", err.message());
    // The error may name what was asked for, never what else exists.
    let (_, listed) = err.message().split_once("Registered").unwrap_or_default();
    assert!(!listed.contains("mine"), "{}", err.message());
}

#[tokio::test]
async fn a_users_tool_group_and_its_tools_are_hidden_from_others() {
    let svc = service();
    svc.register_tool_group(register("shared")).await.unwrap();
    access::with_caller(user("alice"), svc.register_tool_group(register("mine")))
        .await
        .unwrap();
    let alices = access::with_caller(user("alice"), svc.get_tool_group("mine")).await;
    assert_eq!(alices.unwrap().owner, Some(User::new("alice")));

    access::with_caller(user("bob"), async {
        let groups: Vec<String> = svc
            .list_tool_groups()
            .await
            .into_iter()
            .map(|g| g.identifier)
            .collect();
        assert_eq!(groups, ["shared"]);
        let tools: Vec<String> = svc
            .list_tools(None)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.identifier)
            .collect();
        assert_eq!(tools, ["shared_tool"]);
        assert_eq!(svc.list_runtime_tools(None).await.unwrap().len(), 1);
        let err = svc.get_tool_group("mine").await.unwrap_err();
        assert!(
            err.message()
                .starts_with("Tool group 'mine' not found. Registered tool groups: shared")
        );
        not_found(svc.list_tools(Some("mine")).await);
        not_found(svc.list_tools(Some("mine/mine_tool")).await);
        not_found(svc.list_runtime_tools(Some("mine")).await);
        not_found(svc.get_tool("mine_tool").await);
        not_found(svc.invoke_tool(invoke("mine_tool")).await);
        not_found(svc.unregister_tool_group("mine").await);
        let err = svc.register_tool_group(register("mine")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        // A group learnt some other way still cannot be used.
        let group = access::with_caller(user("alice"), svc.get_tool_group("mine"))
            .await
            .unwrap();
        let err = svc
            .invoke_group_tool(&group, "mine_tool", &Map::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let shared = svc.invoke_tool(invoke("shared_tool")).await.unwrap();
        assert_eq!(shared.content, Some(json!("shared_tool")));
        // A run.yaml group registered again by a user is the same group.
        svc.register_tool_group(register("shared")).await.unwrap();
        assert_eq!(svc.get_tool_group("shared").await.unwrap().owner, None);
    })
    .await;

    access::with_caller(user("alice"), async {
        assert_eq!(svc.list_tools(None).await.unwrap().len(), 2);
        let mine = svc.invoke_tool(invoke("mine_tool")).await.unwrap();
        assert_eq!(mine.content, Some(json!("mine_tool")));
        svc.unregister_tool_group("mine").await.unwrap();
    })
    .await;
    assert_eq!(svc.list_tool_groups().await.len(), 1);
}

#[tokio::test]
async fn a_restored_tool_group_keeps_its_owner() {
    let store = Arc::new(MemoryStore::default());
    let runtimes = || {
        vec![(
            "rt".into(),
            Arc::new(OneTool) as Arc<dyn ToolRuntimeProvider>,
        )]
    };
    let first = ToolsService::new(runtimes(), store.clone());
    access::with_caller(user("alice"), first.register_tool_group(register("mine")))
        .await
        .unwrap();
    let second = ToolsService::new(runtimes(), store);
    second.restore_tool_groups().await.unwrap();
    access::with_caller(user("bob"), async {
        not_found(second.get_tool_group("mine").await);
    })
    .await;
    assert!(
        access::with_caller(user("alice"), second.get_tool_group("mine"))
            .await
            .is_ok()
    );
}
