//! The tools a response may use: read from the request, offered to the model as functions, and
//! (for the server-side ones) run here: `file_search` on vector stores, `web_search` on the
//! search tool runtime, `mcp` on the MCP runtime.

use llama_stack_core::{Error, Result};
use llama_stack_types::ToolDef;
use serde_json::{Map, Value, json};

use crate::BuiltinResponses;
use crate::request::field_error;

/// The names the server-side tools are offered to the model under.
pub(crate) const FILE_SEARCH: &str = "file_search";
pub(crate) const WEB_SEARCH: &str = "web_search";

const WEB_SEARCH_TYPES: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
];

#[derive(Debug, Clone)]
pub(crate) enum ToolSpec {
    /// Run by the client: the response ends with its `function_call` items.
    Function {
        name: String,
        description: Option<String>,
        parameters: Value,
        strict: Option<bool>,
    },
    FileSearch {
        vector_store_ids: Vec<String>,
        filters: Option<Value>,
        max_num_results: u64,
        ranking_options: Option<Value>,
    },
    WebSearch {
        kind: String,
        search_context_size: Option<String>,
    },
    Mcp(McpServer),
}

#[derive(Debug, Clone)]
pub(crate) struct McpServer {
    pub server_label: String,
    pub server_url: String,
    pub headers: Map<String, Value>,
    pub allowed_tools: Option<Vec<String>>,
    pub approval: Approval,
    /// `require_approval` as given, for the response object.
    pub approval_raw: Value,
}

/// `require_approval`. Without it, calls run without asking, as upstream Llama Stack does.
#[derive(Debug, Clone)]
pub(crate) enum Approval {
    Always,
    Never,
    /// Tools named under `always` ask; tools named under `never` do not; others ask.
    Filter {
        always: Vec<String>,
        never: Vec<String>,
    },
}

impl Approval {
    pub(crate) fn required(&self, tool: &str) -> bool {
        match self {
            Approval::Always => true,
            Approval::Never => false,
            Approval::Filter { always, never } => {
                always.iter().any(|t| t == tool) || !never.iter().any(|t| t == tool)
            }
        }
    }
}

fn tool_path(index: usize, field: &str) -> Vec<Value> {
    vec!["tools".into(), index.into(), field.into()]
}

fn names(value: Option<&Value>) -> Option<Vec<String>> {
    let list = match value? {
        Value::Array(a) => a,
        Value::Object(o) => o.get("tool_names")?.as_array()?,
        _ => return None,
    };
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

fn approval(index: usize, value: Option<&Value>) -> Result<Approval> {
    match value.filter(|v| !v.is_null()) {
        None => Ok(Approval::Never),
        Some(Value::String(s)) if s == "always" => Ok(Approval::Always),
        Some(Value::String(s)) if s == "never" => Ok(Approval::Never),
        Some(Value::Object(o)) => Ok(Approval::Filter {
            always: names(o.get("always")).unwrap_or_default(),
            never: names(o.get("never")).unwrap_or_default(),
        }),
        Some(other) => Err(field_error(
            &tool_path(index, "require_approval"),
            format!(
                "require_approval must be 'always', 'never' or {{\"always\": [...], \"never\": [...]}}, got {other}"
            ),
        )),
    }
}

fn parse_tool(index: usize, tool: &Value) -> Result<ToolSpec> {
    let str_field = |field: &str| tool.get(field).and_then(Value::as_str).map(str::to_string);
    let kind = str_field("type").ok_or_else(|| {
        field_error(
            &tool_path(index, "type"),
            format!("tools[{index}] needs a `type`"),
        )
    })?;
    match kind.as_str() {
        "function" => {
            // Chat Completions nests the function; accept that shape too.
            let tool = match tool.get("function") {
                Some(inner @ Value::Object(_)) if tool.get("name").is_none() => inner,
                _ => tool,
            };
            let str_field =
                |field: &str| tool.get(field).and_then(Value::as_str).map(str::to_string);
            let name = str_field("name").filter(|n| !n.is_empty()).ok_or_else(|| {
                field_error(
                    &tool_path(index, "name"),
                    format!("tools[{index}] (function) needs a `name`"),
                )
            })?;
            let parameters = match tool.get("parameters") {
                Some(Value::Object(p)) => Value::Object(p.clone()),
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(other) => {
                    return Err(field_error(
                        &tool_path(index, "parameters"),
                        format!(
                            "tools[{index}].parameters must be a JSON schema object, got {other}"
                        ),
                    ));
                }
            };
            Ok(ToolSpec::Function {
                name,
                description: str_field("description"),
                parameters,
                strict: tool.get("strict").and_then(Value::as_bool),
            })
        }
        "file_search" => {
            let ids: Vec<String> = tool
                .get("vector_store_ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                return Err(field_error(
                    &tool_path(index, "vector_store_ids"),
                    format!(
                        "tools[{index}] (file_search) needs `vector_store_ids`, a list of vector store ids"
                    ),
                ));
            }
            let max = match tool.get("max_num_results").filter(|v| !v.is_null()) {
                None => 10,
                Some(v) => v.as_u64().filter(|n| (1..=50).contains(n)).ok_or_else(|| {
                    field_error(
                        &tool_path(index, "max_num_results"),
                        format!("tools[{index}].max_num_results must be from 1 to 50, got {v}"),
                    )
                })?,
            };
            Ok(ToolSpec::FileSearch {
                vector_store_ids: ids,
                filters: tool.get("filters").filter(|v| !v.is_null()).cloned(),
                max_num_results: max,
                ranking_options: tool
                    .get("ranking_options")
                    .filter(|v| !v.is_null())
                    .cloned(),
            })
        }
        k if WEB_SEARCH_TYPES.contains(&k) => Ok(ToolSpec::WebSearch {
            kind,
            search_context_size: str_field("search_context_size"),
        }),
        "mcp" => {
            let server_label = str_field("server_label").ok_or_else(|| {
                field_error(
                    &tool_path(index, "server_label"),
                    format!("tools[{index}] (mcp) needs a `server_label`"),
                )
            })?;
            let server_url = str_field("server_url").ok_or_else(|| {
                field_error(
                    &tool_path(index, "server_url"),
                    format!(
                        "tools[{index}] (mcp) needs a `server_url`: connectors are not supported"
                    ),
                )
            })?;
            let mut headers = match tool.get("headers").filter(|v| !v.is_null()) {
                None => Map::new(),
                Some(Value::Object(h)) if h.values().all(Value::is_string) => h.clone(),
                Some(_) => {
                    return Err(field_error(
                        &tool_path(index, "headers"),
                        format!("tools[{index}].headers must map header names to string values"),
                    ));
                }
            };
            if let Some(token) = str_field("authorization") {
                headers.insert("Authorization".into(), json!(format!("Bearer {token}")));
            }
            Ok(ToolSpec::Mcp(McpServer {
                server_label,
                server_url,
                headers,
                allowed_tools: names(tool.get("allowed_tools")),
                approval: approval(index, tool.get("require_approval"))?,
                approval_raw: tool
                    .get("require_approval")
                    .cloned()
                    .unwrap_or(json!("never")),
            }))
        }
        other => Err(field_error(
            &tool_path(index, "type"),
            format!(
                "tools[{index}] has type '{other}', which this server does not run; supported tool types: function, file_search, web_search, mcp"
            ),
        )),
    }
}

pub(crate) fn parse_tools(tools: Option<&Value>) -> Result<Vec<ToolSpec>> {
    match tools {
        None => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, t)| parse_tool(i, t))
            .collect(),
        Some(other) => Err(field_error(
            &["tools".into()],
            format!("tools must be a list, got {other}"),
        )),
    }
}

impl ToolSpec {
    /// The tool as the response object shows it (MCP headers left out: they carry secrets).
    pub(crate) fn echo(&self) -> Value {
        match self {
            ToolSpec::Function {
                name,
                description,
                parameters,
                strict,
            } => json!({"type": "function", "name": name, "description": description,
                        "parameters": parameters, "strict": strict}),
            ToolSpec::FileSearch {
                vector_store_ids,
                filters,
                max_num_results,
                ranking_options,
            } => json!({"type": "file_search", "vector_store_ids": vector_store_ids,
                        "filters": filters, "max_num_results": max_num_results,
                        "ranking_options": ranking_options}),
            ToolSpec::WebSearch {
                kind,
                search_context_size,
            } => json!({"type": kind, "search_context_size": search_context_size}),
            ToolSpec::Mcp(m) => json!({"type": "mcp", "server_label": m.server_label,
                        "server_url": m.server_url, "allowed_tools": m.allowed_tools,
                        "require_approval": m.approval_raw}),
        }
    }
}

pub(crate) fn function_def(name: &str, description: &str, parameters: Value) -> Value {
    json!({"type": "function", "function": {
        "name": name, "description": description, "parameters": parameters}})
}

pub(crate) fn query_parameters(what: &str) -> Value {
    json!({"type": "object", "properties": {"query": {"type": "string", "description": what}},
           "required": ["query"]})
}

/// An MCP tool's input schema, from the parameters the runtime lists.
pub(crate) fn mcp_schema(tool: &ToolDef) -> Value {
    let properties: Map<String, Value> = tool
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                json!({"type": p.parameter_type, "description": p.description}),
            )
        })
        .collect();
    let required: Vec<&str> = tool
        .parameters
        .iter()
        .filter(|p| p.required)
        .map(|p| p.name.as_str())
        .collect();
    json!({"type": "object", "properties": properties, "required": required})
}

/// A tool result as text for the model.
pub(crate) fn content_text(content: Option<&Value>) -> String {
    match content {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i.get("text").and_then(Value::as_str) {
                Some(t) => t.to_string(),
                None => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Some(other) => other
            .get("text")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| other.to_string()),
    }
}

/// The query argument of a search tool call.
pub(crate) fn query_of(arguments: &str) -> Result<String> {
    let parsed: Value = serde_json::from_str(arguments).unwrap_or(Value::Null);
    match parsed.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => Ok(q.clone()),
        _ => Err(Error::invalid(format!(
            "the model called a search tool without a query: {arguments}"
        ))),
    }
}

impl BuiltinResponses {
    /// Searches the tool's vector stores; the results in the `file_search_call` shape, best first.
    pub(crate) async fn file_search(&self, tool: &ToolSpec, query: &str) -> Result<Vec<Value>> {
        let ToolSpec::FileSearch {
            vector_store_ids,
            filters,
            max_num_results,
            ranking_options,
        } = tool
        else {
            return Ok(Vec::new());
        };
        let memory = self.memory.as_ref().ok_or_else(|| {
            Error::invalid("file_search needs vector stores: add a vector_io provider to run.yaml")
        })?;
        let mut results = Vec::new();
        for id in vector_store_ids {
            let mut body = Map::new();
            body.insert("query".into(), json!(query));
            body.insert("max_num_results".into(), json!(max_num_results));
            if let Some(f) = filters {
                body.insert("filters".into(), f.clone());
            }
            if let Some(r) = ranking_options {
                body.insert("ranking_options".into(), r.clone());
            }
            let page = memory.search_vector_store(id, body).await?;
            for hit in page["data"].as_array().into_iter().flatten() {
                results.push(json!({
                    "file_id": hit["file_id"],
                    "filename": hit["filename"],
                    "score": hit["score"],
                    "attributes": hit["attributes"],
                    "text": content_text(hit.get("content")),
                }));
            }
        }
        results.sort_by(|a, b| {
            let score = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
            score(b).total_cmp(&score(a))
        });
        results.truncate(*max_num_results as usize);
        Ok(results)
    }

    /// Runs a web search on the `builtin::websearch` tool group.
    pub(crate) async fn web_search(&self, query: &str) -> Result<String> {
        let tools = self.tools.as_ref().ok_or_else(|| {
            Error::invalid("web_search needs a search tool runtime: add remote::tavily-search or remote::brave-search to run.yaml")
        })?;
        let group = tools.get_tool_group("builtin::websearch").await.map_err(|_| {
            Error::invalid("web_search needs the builtin::websearch tool group: set TAVILY_SEARCH_API_KEY (or register the group on a search runtime)")
        })?;
        let mut args = Map::new();
        args.insert("query".into(), json!(query));
        let result = tools.invoke_group_tool(&group, "web_search", &args).await?;
        Ok(match result.error_message {
            Some(e) => format!("The search failed: {e}"),
            None => content_text(result.content.as_ref()),
        })
    }

    /// The tools of an MCP server, as `mcp_list_tools` shows them, after `allowed_tools`.
    pub(crate) async fn mcp_list(&self, server: &McpServer) -> Result<Vec<(Value, ToolDef)>> {
        let tools = self.tools.as_ref().ok_or_else(|| {
            Error::invalid("mcp tools need an MCP tool runtime: add remote::model-context-protocol to run.yaml")
        })?;
        let listed = tools
            .list_mcp_tools(&server.server_url, &server.headers)
            .await?;
        Ok(listed
            .into_iter()
            .filter(|t| {
                server
                    .allowed_tools
                    .as_ref()
                    .is_none_or(|allowed| allowed.iter().any(|a| a == &t.name))
            })
            .map(|t| {
                let shown = json!({"name": t.name, "description": t.description,
                                   "input_schema": mcp_schema(&t), "annotations": null});
                (shown, t)
            })
            .collect())
    }

    /// Calls an MCP tool: its output, or the error to show in the `mcp_call` item.
    pub(crate) async fn mcp_call(
        &self,
        server: &McpServer,
        name: &str,
        arguments: &str,
    ) -> std::result::Result<String, String> {
        let Some(tools) = self.tools.as_ref() else {
            return Err("no MCP tool runtime".into());
        };
        let args: Map<String, Value> = match serde_json::from_str(arguments) {
            Ok(Value::Object(m)) => m,
            Ok(Value::Null) | Err(_) if arguments.trim().is_empty() => Map::new(),
            _ => return Err(format!("the arguments are not a JSON object: {arguments}")),
        };
        match tools
            .invoke_mcp_tool(&server.server_url, &server.headers, name, &args)
            .await
        {
            Ok(result) => match result.error_message {
                Some(e) => Err(e),
                None => Ok(content_text(result.content.as_ref())),
            },
            Err(e) => Err(e.message().to_string()),
        }
    }
}

/// What the model reads back from a file search.
pub(crate) fn render_file_search(query: &str, results: &[Value]) -> String {
    if results.is_empty() {
        return format!("No documents matched the query \"{query}\".");
    }
    let mut out = format!(
        "file_search found {} passages for \"{query}\". Cite them by number.\n",
        results.len()
    );
    for (i, r) in results.iter().enumerate() {
        out.push_str(&format!(
            "[{}] file: {} (file_id {}), score {:.3}\n{}\n",
            i + 1,
            r["filename"].as_str().unwrap_or_default(),
            r["file_id"].as_str().unwrap_or_default(),
            r["score"].as_f64().unwrap_or(0.0),
            r["text"].as_str().unwrap_or_default()
        ));
    }
    out
}
