//! The steps of a run besides inference: guardrails, MCP listings and approvals, and the
//! server-side tool calls, each with its output item and events.

use llama_stack_core::{Error, Result};
use llama_stack_types::RunShieldRequest;
use serde_json::{Value, json};

use crate::input::{message_text, push_tool_call};
use crate::run::{Call, Run, tool_message};
use crate::store::new_id;
use crate::tools::{McpServer, function_def, query_of, render_file_search};

impl Run {
    pub(crate) fn refuse(&mut self, message: &str) {
        let item = json!({"type": "message", "id": new_id("msg"), "status": "completed",
            "role": "assistant", "content": [{"type": "refusal", "refusal": message}]});
        self.messages
            .push(json!({"role": "assistant", "content": message}));
        self.push_item(item);
    }

    /// Runs the guardrails over `text`: the first violation's message, if any.
    pub(crate) async fn guard(&self, text: &str) -> Result<Option<String>> {
        if self.req.guardrails.is_empty() || text.trim().is_empty() {
            return Ok(None);
        }
        let safety = self.svc.safety.as_ref().ok_or_else(|| {
            Error::invalid("guardrails need the safety API: add a safety provider to run.yaml")
        })?;
        for shield in &self.req.guardrails {
            let verdict = safety
                .run_shield(RunShieldRequest {
                    shield_id: shield.clone(),
                    messages: vec![json!({"role": "user", "content": text})],
                    params: None,
                })
                .await?;
            if let Some(v) = verdict.violation {
                return Ok(Some(v.user_message.unwrap_or_else(|| {
                    format!("The request was refused by the {shield} guardrail.")
                })));
            }
        }
        Ok(None)
    }

    pub(crate) async fn check_input(&self) -> Result<Option<String>> {
        let text: Vec<String> = self
            .req
            .input
            .iter()
            .filter(|i| i["type"] == "message" && i["role"] == "user")
            .map(message_text)
            .collect();
        self.guard(&text.join("\n")).await
    }

    /// Output guardrails: a flagged answer is replaced by the refusal.
    pub(crate) async fn check_output(&mut self) -> Result<()> {
        let Some(index) = self.output.iter().rposition(|i| i["type"] == "message") else {
            return Ok(());
        };
        let text = message_text(&self.output[index]);
        if let Some(refusal) = self.guard(&text).await? {
            self.output[index]["content"] = json!([{"type": "refusal", "refusal": refusal}]);
            if let Some(last) = self
                .messages
                .iter_mut()
                .rev()
                .find(|m| m["role"] == "assistant")
            {
                last["content"] = json!(refusal);
            }
        }
        Ok(())
    }

    pub(crate) async fn list_mcp_tools(&mut self) -> Result<()> {
        for (server_index, server) in self.mcp_servers().into_iter().enumerate() {
            let index = self.output.len();
            let id = new_id("mcpl");
            let mut item = json!({"type": "mcp_list_tools", "id": id,
                                  "server_label": server.server_label, "tools": []});
            self.out.item(false, index, &item);
            self.out
                .progress("response.mcp_list_tools.in_progress", index, &id);
            let listed = match self.svc.mcp_list(&server).await {
                Ok(listed) => listed,
                Err(e) => {
                    self.out
                        .progress("response.mcp_list_tools.failed", index, &id);
                    return Err(e);
                }
            };
            for (shown, def) in listed {
                self.mcp_defs.push(function_def(
                    &def.name,
                    &def.description,
                    shown["input_schema"].clone(),
                ));
                self.mcp_tools.insert(def.name.clone(), server_index);
                if let Some(tools) = item["tools"].as_array_mut() {
                    tools.push(shown);
                }
            }
            self.out
                .progress("response.mcp_list_tools.completed", index, &id);
            self.out.item(true, index, &item);
            self.output.push(item);
        }
        Ok(())
    }

    pub(crate) fn request_approval(&mut self, server: &McpServer, call: &Call) {
        let item = json!({"type": "mcp_approval_request", "id": new_id("mcpr"),
            "name": call.name, "arguments": call.arguments, "server_label": server.server_label});
        self.push_item(item);
    }

    /// Runs the MCP calls the input approves (`mcp_approval_response` with `approve: true`).
    pub(crate) async fn run_approved_calls(&mut self) -> Result<()> {
        let approvals: Vec<(usize, Value)> = self
            .req
            .input
            .iter()
            .enumerate()
            .filter(|(_, i)| i["type"] == "mcp_approval_response")
            .map(|(n, i)| (n, i.clone()))
            .collect();
        for (n, approval) in approvals {
            if approval["approve"] != json!(true) {
                continue;
            }
            let request_id = approval["approval_request_id"].as_str().unwrap_or_default();
            let request = self
                .prior_items
                .iter()
                .chain(self.req.input.iter())
                .find(|i| i["type"] == "mcp_approval_request" && i["id"] == request_id)
                .cloned()
                .ok_or_else(|| {
                    crate::request::field_error(
                        &["input".into(), n.into(), "approval_request_id".into()],
                        format!("input[{n}] approves '{request_id}', but no mcp_approval_request has that id; continue the response that asked (previous_response_id or conversation)"),
                    )
                })?;
            let label = request["server_label"].as_str().unwrap_or_default();
            let server = self
                .mcp_servers()
                .into_iter()
                .find(|s| s.server_label == label)
                .ok_or_else(|| {
                    crate::request::field_error(
                        &["tools".into()],
                        format!("the approved call is on MCP server '{label}', which is not among this request's tools; send the same mcp tool again"),
                    )
                })?;
            let name = request["name"].as_str().unwrap_or_default().to_string();
            let arguments = request["arguments"].as_str().unwrap_or("{}").to_string();
            let call_id = new_id("call");
            push_tool_call(
                &mut self.messages,
                json!({"id": call_id, "type": "function",
                       "function": {"name": name, "arguments": arguments}}),
            );
            let output = self.mcp_call(&server, &name, &arguments).await;
            self.messages.push(tool_message(&call_id, output));
        }
        Ok(())
    }

    pub(crate) fn count_server_call(&mut self) {
        self.server_calls += 1;
    }

    /// An MCP call with its item and events; the text the model reads back.
    pub(crate) async fn mcp_call(
        &mut self,
        server: &McpServer,
        name: &str,
        arguments: &str,
    ) -> String {
        self.count_server_call();
        let index = self.output.len();
        let id = new_id("mcp");
        let mut item = json!({"type": "mcp_call", "id": id, "name": name, "arguments": arguments,
            "server_label": server.server_label, "output": null, "error": null,
            "status": "in_progress"});
        self.out.item(false, index, &item);
        self.out
            .progress("response.mcp_call.in_progress", index, &id);
        let (item_id, args) = (id.clone(), arguments.to_string());
        self.out.emit(
            "response.mcp_call_arguments.done",
            || json!({"item_id": item_id, "output_index": index, "arguments": args}),
        );
        let result = self.svc.mcp_call(server, name, arguments).await;
        let text = match &result {
            Ok(output) => {
                item["output"] = json!(output);
                item["status"] = json!("completed");
                self.out.progress("response.mcp_call.completed", index, &id);
                output.clone()
            }
            Err(error) => {
                item["error"] = json!(error);
                item["status"] = json!("failed");
                self.out.progress("response.mcp_call.failed", index, &id);
                format!("The tool call failed: {error}")
            }
        };
        self.out.item(true, index, &item);
        self.output.push(item);
        text
    }

    pub(crate) async fn file_search(&mut self, tool: usize, arguments: &str) -> String {
        self.count_server_call();
        let query = query_of(arguments).unwrap_or_else(|_| arguments.to_string());
        let index = self.output.len();
        let id = new_id("fs");
        let mut item = json!({"type": "file_search_call", "id": id, "queries": [query],
                              "status": "in_progress", "results": null});
        self.out.item(false, index, &item);
        self.out
            .progress("response.file_search_call.in_progress", index, &id);
        self.out
            .progress("response.file_search_call.searching", index, &id);
        let spec = self.req.tools[tool].clone();
        let text = match self.svc.file_search(&spec, &query).await {
            Ok(results) => {
                for r in &results {
                    let cited = (
                        r["file_id"].as_str().unwrap_or_default().to_string(),
                        r["filename"].as_str().unwrap_or_default().to_string(),
                    );
                    if !cited.0.is_empty() && !self.citations.contains(&cited) {
                        self.citations.push(cited);
                    }
                }
                item["status"] = json!("completed");
                if self
                    .req
                    .include
                    .iter()
                    .any(|i| i == "file_search_call.results")
                {
                    item["results"] = json!(results);
                }
                render_file_search(&query, &results)
            }
            Err(e) => {
                item["status"] = json!("failed");
                format!("The search failed: {}", e.message())
            }
        };
        self.out
            .progress("response.file_search_call.completed", index, &id);
        self.out.item(true, index, &item);
        self.output.push(item);
        text
    }

    pub(crate) async fn web_search(&mut self, arguments: &str) -> String {
        self.count_server_call();
        let query = query_of(arguments).unwrap_or_else(|_| arguments.to_string());
        let index = self.output.len();
        let id = new_id("ws");
        let mut item = json!({"type": "web_search_call", "id": id, "status": "in_progress",
                              "action": {"type": "search", "query": query}});
        self.out.item(false, index, &item);
        self.out
            .progress("response.web_search_call.in_progress", index, &id);
        self.out
            .progress("response.web_search_call.searching", index, &id);
        let text = match self.svc.web_search(&query).await {
            Ok(text) => {
                item["status"] = json!("completed");
                text
            }
            Err(e) => {
                item["status"] = json!("failed");
                format!("The search failed: {}", e.message())
            }
        };
        self.out
            .progress("response.web_search_call.completed", index, &id);
        self.out.item(true, index, &item);
        self.output.push(item);
        text
    }
}
