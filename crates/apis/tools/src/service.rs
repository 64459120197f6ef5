//! Tool groups, tools and the tool runtime (`/v1/toolgroups`, `/v1/tools`,
//! `/v1/tool-runtime/*`). Every runtime, the RAG one included, lists and runs its tools itself
//! through [`ToolRuntimeProvider`]; this service keeps the groups and routes each call.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::access::{self, Action};
use llama_stack_core::request_context::{ProviderData, current_provider_data, with_provider_data};
use llama_stack_core::{Error, ErrorKind, RegistryStore, Result, list_or_none};
use llama_stack_types::{
    InvokeToolRequest, RagInsertRequest, RagQueryRequest, RagQueryResult, RegisterToolGroupRequest,
    Tool, ToolDef, ToolGroup, ToolInvocationResult,
};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use tracing::Instrument;

use crate::provider::{FetchPolicy, ToolRuntimeProvider};

const TOOL_GROUP_KIND: &str = "tool_group";

fn readable(group: &ToolGroup) -> bool {
    access::can_read(TOOL_GROUP_KIND, &group.identifier, group.owner.as_ref())
}

fn group_not_found(id: &str, visible: impl IntoIterator<Item = String>) -> Error {
    Error::not_found(format!(
        "Tool group '{id}' not found. Registered tool groups: {}",
        list_or_none(visible)
    ))
}

/// The tool runtime API as the agents' turn loop sees it.
#[async_trait]
pub trait ToolsApi: Send + Sync {
    async fn get_tool_group(&self, id: &str) -> Result<ToolGroup>;
    /// The tools of one group (or of every group).
    async fn list_tools(&self, toolgroup_id: Option<&str>) -> Result<Vec<Tool>>;
    /// Runs a tool found by name in any group.
    async fn invoke_tool(&self, request: InvokeToolRequest) -> Result<ToolInvocationResult>;
    /// Runs `tool` of a known `group`, without searching the groups again.
    async fn invoke_group_tool(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult>;
    /// How documents given by URL are loaded (the RAG runtime's limits, or the safe default).
    fn fetch_policy(&self) -> FetchPolicy;
    /// The tools of the MCP server at `server_url`, named by a request rather than registered
    /// as a group; `headers` go with every request to it.
    async fn list_mcp_tools(
        &self,
        server_url: &str,
        headers: &serde_json::Map<String, Value>,
    ) -> Result<Vec<ToolDef>>;
    /// Calls `tool` on the MCP server at `server_url`.
    async fn invoke_mcp_tool(
        &self,
        server_url: &str,
        headers: &serde_json::Map<String, Value>,
        tool: &str,
        arguments: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult>;
}

/// The tool runtimes by id and the tool groups registered over them.
pub struct ToolsService {
    runtimes: Vec<(String, Arc<dyn ToolRuntimeProvider>)>,
    store: Arc<dyn RegistryStore>,
    /// Registered groups by id; the registry store is the source of truth.
    tool_groups: RwLock<BTreeMap<String, ToolGroup>>,
}

impl ToolsService {
    pub fn new(
        runtimes: Vec<(String, Arc<dyn ToolRuntimeProvider>)>,
        store: Arc<dyn RegistryStore>,
    ) -> Self {
        ToolsService {
            runtimes,
            store,
            tool_groups: RwLock::new(BTreeMap::new()),
        }
    }

    /// Loads the tool groups registered by earlier runs.
    pub async fn restore_tool_groups(&self) -> Result<()> {
        for value in self.store.list(TOOL_GROUP_KIND).await? {
            match serde_json::from_value::<ToolGroup>(value) {
                Ok(group) => {
                    self.tool_groups
                        .write()
                        .await
                        .insert(group.identifier.clone(), group);
                }
                Err(err) => tracing::warn!(error = %err, "Skipping unreadable tool group"),
            }
        }
        Ok(())
    }

    /// The runtime that serves the RAG tool.
    fn rag_runtime(&self) -> Result<Arc<dyn ToolRuntimeProvider>> {
        self.runtimes
            .iter()
            .find(|(_, rt)| rt.serves_rag())
            .map(|(_, rt)| rt.clone())
            .ok_or_else(|| {
                Error::unsupported(
                    "No RAG tool runtime is configured; add inline::rag-runtime under providers.tool_runtime in run.yaml",
                )
            })
    }

    /// `POST /v1/tool-runtime/rag-tool/insert`.
    pub async fn rag_insert(&self, request: RagInsertRequest) -> Result<()> {
        self.rag_runtime()?.rag_insert(request).await
    }

    /// `POST /v1/tool-runtime/rag-tool/query`.
    pub async fn rag_query(&self, request: RagQueryRequest) -> Result<RagQueryResult> {
        self.rag_runtime()?.rag_query(request).await
    }

    /// `POST /v1/tool-runtime/rag-tool/insert` over HTTP: inline (`None`), or, past the RAG
    /// runtime's size bound, a background job whose object is answered at once. The gRPC
    /// `Insert` and other callers use [`rag_insert`](Self::rag_insert), which is always inline.
    pub async fn rag_insert_or_job(&self, request: RagInsertRequest) -> Result<Option<Value>> {
        self.rag_runtime()?.rag_insert_or_job(request).await
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs/{job_id}`.
    pub async fn rag_insert_job(&self, job_id: &str) -> Result<Value> {
        self.rag_runtime()?.rag_insert_job(job_id).await
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs`.
    pub async fn list_rag_insert_jobs(&self, vector_db_id: Option<&str>) -> Result<Vec<Value>> {
        self.rag_runtime()?.list_rag_insert_jobs(vector_db_id).await
    }

    /// `POST /v1/tool-runtime/rag-tool/jobs/{job_id}/cancel`.
    pub async fn cancel_rag_insert_job(&self, job_id: &str) -> Result<Value> {
        self.rag_runtime()?.cancel_rag_insert_job(job_id).await
    }

    /// Takes up the RAG insert jobs earlier processes left unfinished (after the vector DBs
    /// are restored), and scans for those of replicas that stop.
    pub async fn resume_rag_insert_jobs(&self) -> Result<()> {
        for (_, runtime) in self.runtimes.iter().filter(|(_, rt)| rt.serves_rag()) {
            runtime.resume_rag_insert_jobs().await?;
        }
        Ok(())
    }

    /// How documents given by URL are loaded: the first runtime's policy that has one.
    pub fn fetch_policy(&self) -> FetchPolicy {
        self.runtimes
            .iter()
            .find_map(|(_, rt)| rt.fetch_policy())
            .unwrap_or_default()
    }
    fn tool_runtime(&self, provider_id: &str) -> Option<Arc<dyn ToolRuntimeProvider>> {
        self.runtimes
            .iter()
            .find(|(id, _)| id == provider_id)
            .map(|(_, rt)| rt.clone())
    }

    fn tool_runtime_ids(&self) -> Vec<String> {
        self.runtimes.iter().map(|(id, _)| id.clone()).collect()
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
        access::check_create(TOOL_GROUP_KIND, &request.toolgroup_id)?;
        let group = ToolGroup {
            identifier: request.toolgroup_id.clone(),
            provider_resource_id: request.toolgroup_id.clone(),
            provider_id: request.provider_id,
            resource_type: "tool_group".into(),
            mcp_endpoint: request.mcp_endpoint.filter(|v| !v.is_null()),
            args: request.args.filter(|v| !v.is_null()),
            owner: access::owner_for_new(),
        };
        if let Some(args) = group.args.as_ref().filter(|a| !a.is_object()) {
            return Err(
                Error::invalid(format!("args must be an object, got {args}"))
                    .with_location(vec!["body".into(), "args".into()]),
            );
        }
        runtime.check_group(&group)?;
        if let Some(existing) = self.tool_groups.read().await.get(&group.identifier) {
            // The same group again is the one already there, whoever registered it first, for
            // those who may see it.
            let same = ToolGroup {
                owner: existing.owner.clone(),
                ..group.clone()
            } == *existing;
            if same && readable(existing) {
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
        self.tool_groups
            .write()
            .await
            .insert(group.identifier.clone(), group);
        Ok(())
    }

    /// The groups the caller may read: every listing and tool search starts here.
    pub async fn list_tool_groups(&self) -> Vec<ToolGroup> {
        self.tool_groups
            .read()
            .await
            .values()
            .filter(|g| readable(g))
            .cloned()
            .collect()
    }

    /// A group the caller may read; others are not found, and not listed in the error.
    pub async fn get_tool_group(&self, id: &str) -> Result<ToolGroup> {
        let groups = self.tool_groups.read().await;
        groups
            .get(id)
            .filter(|g| readable(g))
            .cloned()
            .ok_or_else(|| {
                group_not_found(
                    id,
                    groups
                        .values()
                        .filter(|g| readable(g))
                        .map(|g| g.identifier.clone()),
                )
            })
    }

    pub async fn unregister_tool_group(&self, id: &str) -> Result<()> {
        let group = self.get_tool_group(id).await?;
        access::check(
            Action::Delete,
            TOOL_GROUP_KIND,
            &group.identifier,
            group.owner.as_ref(),
            || group_not_found(id, []),
        )?;
        self.store
            .delete(TOOL_GROUP_KIND, &group.identifier)
            .await?;
        self.tool_groups.write().await.remove(&group.identifier);
        Ok(())
    }

    /// `GET /v1/tool-runtime/list-tools?mcp_endpoint=`: the tools of an MCP server that is not
    /// registered as a group, listed by the first runtime that takes the endpoint.
    pub async fn list_endpoint_tools(&self, uri: &str) -> Result<Vec<ToolDef>> {
        let mut refusals = Vec::new();
        for (provider_id, provider) in &self.runtimes {
            if provider.serves_rag() {
                continue;
            }
            let group = ToolGroup {
                identifier: uri.to_string(),
                provider_resource_id: uri.to_string(),
                provider_id: provider_id.clone(),
                resource_type: "tool_group".into(),
                mcp_endpoint: Some(json!({ "uri": uri })),
                args: None,
                owner: None,
            };
            match provider.check_group(&group) {
                Ok(()) => return provider.list_tools(&group).await,
                Err(err) => refusals.push(format!("{provider_id}: {}", err.message())),
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
            if let Some(provider) = self.tool_runtime(&group.provider_id) {
                out.extend(provider.list_tools(&group).await?);
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
            !self
                .tool_runtime(&g.provider_id)
                .is_some_and(|rt| rt.serves_rag())
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
    pub async fn invoke_group_tool(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        // The group may have been resolved earlier, or by someone else: whoever runs its tool
        // must be able to read it now.
        access::check(
            Action::Read,
            TOOL_GROUP_KIND,
            &group.identifier,
            group.owner.as_ref(),
            || group_not_found(&group.identifier, []),
        )?;
        // Named as the OpenTelemetry GenAI conventions name a tool call, for trace export.
        let span = tracing::info_span!(
            target: "llama_stack::tools",
            "tool",
            otel.name = %format_args!("execute_tool {tool}"),
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = tool,
            llama_stack.tool_group.id = %group.identifier,
        );
        match self.tool_runtime(&group.provider_id) {
            Some(provider) => provider.invoke(group, tool, kwargs).instrument(span).await,
            None => Err(Error::unsupported(format!(
                "Tool '{tool}' cannot be invoked directly; use POST /v1/tool-runtime/rag-tool/insert to add documents"
            ))),
        }
    }
}

#[async_trait]
impl ToolsApi for ToolsService {
    async fn get_tool_group(&self, id: &str) -> Result<ToolGroup> {
        ToolsService::get_tool_group(self, id).await
    }

    async fn list_tools(&self, toolgroup_id: Option<&str>) -> Result<Vec<Tool>> {
        ToolsService::list_tools(self, toolgroup_id).await
    }

    async fn invoke_tool(&self, request: InvokeToolRequest) -> Result<ToolInvocationResult> {
        ToolsService::invoke_tool(self, request).await
    }

    async fn invoke_group_tool(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        ToolsService::invoke_group_tool(self, group, tool, kwargs).await
    }

    fn fetch_policy(&self) -> FetchPolicy {
        ToolsService::fetch_policy(self)
    }

    async fn list_mcp_tools(
        &self,
        server_url: &str,
        headers: &serde_json::Map<String, Value>,
    ) -> Result<Vec<ToolDef>> {
        let (runtime, group) = self.mcp_group(server_url)?;
        with_provider_data(mcp_scope(server_url, headers), runtime.list_tools(&group)).await
    }

    async fn invoke_mcp_tool(
        &self,
        server_url: &str,
        headers: &serde_json::Map<String, Value>,
        tool: &str,
        arguments: &serde_json::Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        let (runtime, group) = self.mcp_group(server_url)?;
        with_provider_data(
            mcp_scope(server_url, headers),
            runtime.invoke(&group, tool, arguments),
        )
        .await
    }
}

/// The request's provider data with `headers` as the MCP headers of `server_url`, which is how
/// the MCP runtime takes per-request headers.
fn mcp_scope(server_url: &str, headers: &serde_json::Map<String, Value>) -> ProviderData {
    let current = current_provider_data();
    let mut by_url = match current.get("mcp_headers") {
        Some(Value::Object(map)) => map.clone(),
        // Some clients send the object JSON-encoded.
        Some(Value::String(text)) => serde_json::from_str(text).unwrap_or_default(),
        _ => serde_json::Map::new(),
    };
    if !headers.is_empty() {
        by_url.insert(server_url.to_string(), Value::Object(headers.clone()));
    }
    current.with("mcp_headers", Value::Object(by_url))
}

impl ToolsService {
    /// The MCP runtime and an unregistered group for the server at `server_url`, checked as a
    /// registered group would be (the address policy included).
    fn mcp_group(&self, server_url: &str) -> Result<(Arc<dyn ToolRuntimeProvider>, ToolGroup)> {
        let (provider_id, runtime) = self
            .runtimes
            .iter()
            .find(|(_, r)| r.serves_mcp())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "The MCP server {server_url} cannot be reached: this distribution has no MCP tool runtime; add a remote::model-context-protocol provider under providers.tool_runtime in run.yaml"
                ))
            })?;
        let group = ToolGroup {
            identifier: format!("mcp::{server_url}"),
            provider_resource_id: format!("mcp::{server_url}"),
            provider_id: provider_id.clone(),
            resource_type: "tool_group".into(),
            mcp_endpoint: Some(json!({ "uri": server_url })),
            args: None,
            owner: None,
        };
        runtime.check_group(&group)?;
        Ok((runtime.clone(), group))
    }
}

/// Tool groups another replica sharing the metadata store registered or removed.
impl ToolsService {
    /// Brings tool group `identifier` in line with the store.
    pub async fn reload_tool_group(&self, identifier: &str) -> Result<()> {
        let stored: Option<ToolGroup> = self
            .store
            .get(TOOL_GROUP_KIND, identifier)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let mut groups = self.tool_groups.write().await;
        match stored {
            Some(group) => {
                if groups.get(identifier) != Some(&group) {
                    groups.insert(identifier.to_string(), group);
                    tracing::info!(tool_group = %identifier, "Tool group registered by another replica");
                }
            }
            None => {
                if groups.remove(identifier).is_some() {
                    tracing::info!(tool_group = %identifier, "Tool group removed by another replica");
                }
            }
        }
        Ok(())
    }

    /// Every tool group read again, after the change feed may have missed some.
    pub async fn reload_tool_groups(&self) -> Result<()> {
        let mut ids: Vec<String> = self
            .store
            .list(TOOL_GROUP_KIND)
            .await?
            .iter()
            .filter_map(|v| v["identifier"].as_str().map(str::to_string))
            .collect();
        ids.extend(self.tool_groups.read().await.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            self.reload_tool_group(&id).await?;
        }
        Ok(())
    }
}
