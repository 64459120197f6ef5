//! `remote::model-context-protocol` against real MCP servers on 127.0.0.1.

mod failures;
mod server;
mod tools;
mod transports;

use std::sync::Arc;

use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry};
use llama_stack_tools::ToolRuntimeProvider;
use llama_stack_types::ToolGroup;
use serde_json::{Value, json};

/// The provider as a distribution builds it from `config`; the test servers listen on loopback,
/// so private addresses are allowed unless `config` says otherwise.
pub async fn runtime(mut config: Value) -> Arc<dyn ToolRuntimeProvider> {
    if let Some(map) = config.as_object_mut() {
        map.entry("allow_private_addresses")
            .or_insert(Value::Bool(true));
    }
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_tool_mcp::register(&mut registry);
    let spec = registry
        .get(llama_stack_provider_tool_mcp::PROVIDER_TYPE)
        .unwrap();
    assert!((spec.validate)(&config).is_empty());
    let context = ProviderContext {
        provider_id: "model-context-protocol".into(),
        store_dir: None,
        registry: None,
        ..Default::default()
    };
    match (spec.build)(config, context).await.unwrap() {
        ProviderInstance::ToolRuntime(provider) => provider,
        _ => panic!("not a tool runtime provider"),
    }
}

pub fn group(uri: &str) -> ToolGroup {
    ToolGroup {
        identifier: "mcp::test".into(),
        provider_resource_id: "mcp::test".into(),
        provider_id: "model-context-protocol".into(),
        resource_type: "tool_group".into(),
        mcp_endpoint: Some(json!({ "uri": uri })),
        args: None,
        owner: None,
    }
}

pub fn kwargs(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap()
}
