//! Tool groups, tools and the tool runtime (`/v1/toolgroups`, `/v1/tools`,
//! `/v1/tool-runtime/*`). The RAG runtime is served here; other runtimes list and run their
//! tools themselves through [`ToolRuntimeProvider`](crate::tool_runtime::ToolRuntimeProvider).

use llama_stack_types::{
    InvokeToolRequest, RagQueryRequest, RegisterToolGroupRequest, Tool, ToolDef, ToolGroup,
    ToolInvocationResult, ToolParameter,
};
use serde_json::{Value, json};

use super::TOOL_GROUP_KIND;
use crate::error::{Error, ErrorKind, Result};
use crate::provider::ProviderInstance;
use crate::stack::Stack;
use crate::tool_runtime::ToolRuntime;

/// The tool group id the RAG runtime's tools are registered under by the distributions.
pub const BUILTIN_RAG: &str = "builtin::rag";

/// The tools of the RAG runtime, as upstream describes them.
fn rag_tool_defs() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "insert_into_memory".into(),
            description: "Insert documents into memory".into(),
            parameters: vec![],
            metadata: None,
        },
        ToolDef {
            name: "knowledge_search".into(),
            description: "Search for information in a database.".into(),
            parameters: vec![ToolParameter {
                name: "query".into(),
                parameter_type: "string".into(),
                description:
                    "The query to search for. Can be a natural language sentence or keywords."
                        .into(),
                required: true,
                default: None,
            }],
            metadata: None,
        },
    ]
}

impl Stack {
    fn tool_runtime(&self, provider_id: &str) -> Option<ToolRuntime> {
        self.providers().iter().find_map(|p| match &p.instance {
            ProviderInstance::ToolRuntime(rt) if p.provider_id == provider_id => Some(rt.clone()),
            _ => None,
        })
    }

    fn tool_runtime_ids(&self) -> Vec<String> {
        self.providers()
            .iter()
            .filter(|p| matches!(p.instance, ProviderInstance::ToolRuntime(_)))
            .map(|p| p.provider_id.clone())
            .collect()
    }

    /// `POST /v1/toolgroups` (and the run.yaml `tool_groups` entries).
    pub async fn register_tool_group(&self, request: RegisterToolGroupRequest) -> Result<()> {
        if request.toolgroup_id.trim().is_empty() {
            return Err(Error::invalid("toolgroup_id must not be empty")
                .with_location(vec!["body".into(), "toolgroup_id".into()]));
        }
        let Some(runtime) = self.tool_runtime(&request.provider_id) else {
            let ids = self.tool_runtime_ids();
            return Err(Error::invalid(format!(
                "Provider '{}' is not a tool_runtime provider. Tool runtime providers: {}",
                request.provider_id,
                if ids.is_empty() {
                    "(none; add inline::rag-runtime under providers.tool_runtime)".to_string()
                } else {
                    ids.join(", ")
                }
            ))
            .with_location(vec!["body".into(), "provider_id".into()]));
        };
        let group = ToolGroup {
            identifier: request.toolgroup_id.clone(),
            provider_resource_id: request.toolgroup_id.clone(),
            provider_id: request.provider_id,
            resource_type: "tool_group".into(),
            mcp_endpoint: request.mcp_endpoint.filter(|v| !v.is_null()),
            args: request.args.filter(|v| !v.is_null()),
        };
        if let Some(args) = group.args.as_ref().filter(|a| !a.is_object()) {
            return Err(
                Error::invalid(format!("args must be an object, got {args}"))
                    .with_location(vec!["body".into(), "args".into()]),
            );
        }
        match &runtime {
            ToolRuntime::Rag(_) if group.mcp_endpoint.is_some() => {
                return Err(Error::invalid(format!(
                    "Provider '{}' is the RAG runtime, which takes no mcp_endpoint; register MCP tool groups with a remote::model-context-protocol provider",
                    group.provider_id
                ))
                .with_location(vec!["body".into(), "mcp_endpoint".into()]));
            }
            ToolRuntime::Rag(_) => {}
            ToolRuntime::Provider(provider) => provider.check_group(&group)?,
        }
        if let Some(existing) = self.memory.tool_groups.read().await.get(&group.identifier) {
            if existing == &group {
                return Ok(());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "Object of type 'tool_group' and identifier '{}' already exists. Unregister it first if you want to replace it.",
                    group.identifier
                ),
            ));
        }
        self.store
            .put(
                TOOL_GROUP_KIND,
                &group.identifier,
                &serde_json::to_value(&group).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await?;
        self.memory
            .tool_groups
            .write()
            .await
            .insert(group.identifier.clone(), group);
        Ok(())
    }

    pub async fn list_tool_groups(&self) -> Vec<ToolGroup> {
        self.memory
            .tool_groups
            .read()
            .await
            .values()
            .cloned()
            .collect()
    }

    pub async fn get_tool_group(&self, id: &str) -> Result<ToolGroup> {
        let groups = self.memory.tool_groups.read().await;
        groups.get(id).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "Tool group '{id}' not found. Registered tool groups: {}",
                if groups.is_empty() {
                    "(none)".to_string()
                } else {
                    groups.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))
        })
    }

    pub async fn unregister_tool_group(&self, id: &str) -> Result<()> {
        let group = self.get_tool_group(id).await?;
        self.store
            .delete(TOOL_GROUP_KIND, &group.identifier)
            .await?;
        self.memory
            .tool_groups
            .write()
            .await
            .remove(&group.identifier);
        Ok(())
    }

    /// `GET /v1/tool-runtime/list-tools?mcp_endpoint=`: the tools of an MCP server that is not
    /// registered as a group, listed by the first runtime that takes the endpoint.
    pub async fn list_endpoint_tools(&self, uri: &str) -> Result<Vec<ToolDef>> {
        let mut refusals = Vec::new();
        for p in self.providers() {
            let ProviderInstance::ToolRuntime(ToolRuntime::Provider(provider)) = &p.instance else {
                continue;
            };
            let group = ToolGroup {
                identifier: uri.to_string(),
                provider_resource_id: uri.to_string(),
                provider_id: p.provider_id.clone(),
                resource_type: "tool_group".into(),
                mcp_endpoint: Some(json!({ "uri": uri })),
                args: None,
            };
            match provider.check_group(&group) {
                Ok(()) => return provider.list_tools(&group).await,
                Err(err) => refusals.push(format!("{}: {}", p.provider_id, err.message())),
            }
        }
        Err(Error::invalid(format!(
            "No tool runtime takes the MCP endpoint {uri}; add a remote::model-context-protocol provider under providers.tool_runtime{}",
            if refusals.is_empty() {
                String::new()
            } else {
                format!(" ({})", refusals.join("; "))
            }
        ))
        .with_location(vec!["query".into(), "mcp_endpoint".into()]))
    }

    /// `GET /v1/tool-runtime/list-tools`: the tools a group's runtime offers.
    pub async fn list_runtime_tools(&self, tool_group_id: Option<&str>) -> Result<Vec<ToolDef>> {
        let groups = match tool_group_id {
            Some(id) => vec![self.get_tool_group(id).await?],
            None => self.list_tool_groups().await,
        };
        let mut out = Vec::new();
        for group in groups {
            match self.tool_runtime(&group.provider_id) {
                Some(ToolRuntime::Rag(_)) => out.extend(rag_tool_defs()),
                Some(ToolRuntime::Provider(provider)) => {
                    out.extend(provider.list_tools(&group).await?)
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// `GET /v1/tools`.
    pub async fn list_tools(&self, toolgroup_id: Option<&str>) -> Result<Vec<Tool>> {
        let groups = match toolgroup_id {
            // `group/tool` names one tool of a group; upstream lists the whole group for it.
            Some(id) => vec![match self.get_tool_group(id).await {
                Ok(group) => group,
                Err(err) => match id.rsplit_once('/') {
                    Some((group, _)) => self.get_tool_group(group).await.map_err(|_| err)?,
                    None => return Err(err),
                },
            }],
            None => self.list_tool_groups().await,
        };
        let listing_all = toolgroup_id.is_none();
        let mut out = Vec::new();
        for group in groups {
            let defs = match self.list_runtime_tools(Some(&group.identifier)).await {
                Ok(defs) => defs,
                // One MCP server being down must not hide every other group's tools.
                Err(err) if listing_all => {
                    tracing::warn!(group = %group.identifier, error = %err.message(), "Leaving out a tool group whose tools could not be listed");
                    continue;
                }
                Err(err) => return Err(err),
            };
            for def in defs {
                out.push(Tool {
                    identifier: def.name.clone(),
                    provider_resource_id: def.name,
                    provider_id: group.provider_id.clone(),
                    resource_type: "tool".into(),
                    toolgroup_id: group.identifier.clone(),
                    description: def.description,
                    parameters: def.parameters,
                    metadata: def.metadata,
                });
            }
        }
        Ok(out)
    }

    pub async fn get_tool(&self, name: &str) -> Result<Tool> {
        Ok(self.find_tool(name).await?.0)
    }

    /// A tool by name, with the group it belongs to.
    async fn find_tool(&self, name: &str) -> Result<(Tool, ToolGroup)> {
        let mut tools = Vec::new();
        // RAG groups first: their tools need no server round trip.
        let mut groups = self.list_tool_groups().await;
        groups.sort_by_key(|g| {
            !matches!(self.tool_runtime(&g.provider_id), Some(ToolRuntime::Rag(_)))
        });
        for group in groups {
            // A runtime that cannot be reached (an MCP server down) must not hide the others.
            let listed = match self.list_tools(Some(&group.identifier)).await {
                Ok(listed) => listed,
                Err(err) => {
                    tracing::warn!(group = %group.identifier, error = %err.message(), "Could not list a tool group's tools");
                    continue;
                }
            };
            if let Some(tool) = listed.iter().find(|t| t.identifier == name) {
                return Ok((tool.clone(), group));
            }
            tools.extend(listed);
        }
        let names: Vec<String> = tools.iter().map(|t| t.identifier.clone()).collect();
        Err(Error::not_found(format!(
            "Tool '{name}' not found. Registered tools: {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )))
    }

    /// `POST /v1/tool-runtime/invoke`.
    pub async fn invoke_tool(&self, request: InvokeToolRequest) -> Result<ToolInvocationResult> {
        let (tool, group) = self.find_tool(&request.tool_name).await?;
        self.invoke_group_tool(&group, &tool.identifier, &request.kwargs)
            .await
    }

    /// Runs `tool` of a known `group`; the agent loop, which resolved its tools' groups when
    /// the turn began, calls this rather than searching every group (an MCP server each) again.
    pub(crate) async fn invoke_group_tool(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        let runtime = self.tool_runtime(&group.provider_id);
        if let Some(ToolRuntime::Provider(provider)) = &runtime {
            return provider.invoke(group, tool, kwargs).await;
        }
        match (runtime, tool) {
            (Some(ToolRuntime::Rag(_)), "knowledge_search") => {
                let query = kwargs.get("query").cloned().ok_or_else(|| {
                    Error::invalid("knowledge_search needs kwargs.query").with_location(vec![
                        "body".into(),
                        "kwargs".into(),
                        "query".into(),
                    ])
                })?;
                let vector_db_ids: Vec<String> = match kwargs.get("vector_db_ids") {
                    None | Some(Value::Null) => vec![],
                    Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                        Error::invalid(format!(
                            "kwargs.vector_db_ids must be a list of ids, got {v}"
                        ))
                        .with_location(vec![
                            "body".into(),
                            "kwargs".into(),
                            "vector_db_ids".into(),
                        ])
                    })?,
                };
                let content = serde_json::from_value(query.clone()).map_err(|_| {
                    Error::invalid(format!("kwargs.query must be text, got {query}"))
                })?;
                let result = self
                    .rag_query(RagQueryRequest {
                        content,
                        vector_db_ids,
                        query_config: kwargs.get("query_config").cloned(),
                    })
                    .await?;
                Ok(ToolInvocationResult {
                    content: result.content,
                    error_message: None,
                    error_code: None,
                    metadata: Some(json!(result.metadata)),
                })
            }
            (_, name) => Err(Error::unsupported(format!(
                "Tool '{name}' cannot be invoked directly; use POST /v1/tool-runtime/rag-tool/insert to add documents"
            ))),
        }
    }
}
