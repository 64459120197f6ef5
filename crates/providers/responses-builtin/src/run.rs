//! One response, start to end: input guardrails, MCP tool listings, approved MCP calls, then
//! inference iterations (OpenAI chat completions, streamed) with the server-side tool calls
//! run between them, and output guardrails. Client `function` calls and MCP approval requests
//! end the response; the client continues with `previous_response_id` or `conversation`.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use llama_stack_core::{Error, Result};
use llama_stack_inference::openai_compat::OpenAiOutput;
use llama_stack_types::openai::OpenAiChatCompletionRequest;
use serde_json::{Map, Value, json};

use crate::BuiltinResponses;
use crate::events::Emitter;
use crate::request::CreateRequest;
use crate::store::new_id;
use crate::tools::{FILE_SEARCH, McpServer, ToolSpec, WEB_SEARCH, function_def, query_parameters};

/// What a function offered to the model stands for.
#[derive(Debug, Clone)]
enum Offered {
    Function,
    FileSearch(usize),
    WebSearch,
    Mcp(usize),
}

/// A tool call the model made in one iteration.
#[derive(Debug, Default, Clone)]
pub(crate) struct Call {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) arguments: String,
    /// Its `function_call` item's place in the output, once announced.
    pub(crate) output_index: Option<usize>,
    pub(crate) item_id: String,
}

/// The message item being streamed in one iteration.
struct TextItem {
    output_index: usize,
    item_id: String,
    text: String,
    logprobs: Vec<Value>,
}

/// A response being produced.
pub(crate) struct Run {
    pub(crate) svc: Arc<BuiltinResponses>,
    pub(crate) req: CreateRequest,
    pub(crate) id: String,
    pub(crate) created_at: i64,
    pub(crate) out: Emitter,
    pub(crate) output: Vec<Value>,
    /// The chat history so far, without `instructions`.
    pub(crate) messages: Vec<Value>,
    /// Earlier items (of the previous response or the conversation) an approval may answer.
    pub(crate) prior_items: Vec<Value>,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) citations: Vec<(String, String)>,
    pub(crate) server_calls: u32,
    /// MCP tools by name: their server's index in `mcp_servers`.
    pub(crate) mcp_tools: HashMap<String, usize>,
    pub(crate) mcp_defs: Vec<Value>,
    pub(crate) status: &'static str,
    pub(crate) incomplete_reason: Option<&'static str>,
}

impl Run {
    pub(crate) fn new(
        svc: Arc<BuiltinResponses>,
        req: CreateRequest,
        id: String,
        created_at: i64,
        mut out: Emitter,
        messages: Vec<Value>,
        prior_items: Vec<Value>,
    ) -> Self {
        out.response_id = id.clone();
        Run {
            svc,
            req,
            id,
            created_at,
            out,
            output: Vec::new(),
            messages,
            prior_items,
            input_tokens: 0,
            output_tokens: 0,
            citations: Vec::new(),
            server_calls: 0,
            mcp_tools: HashMap::new(),
            mcp_defs: Vec::new(),
            status: "in_progress",
            incomplete_reason: None,
        }
    }

    pub(crate) fn mcp_servers(&self) -> Vec<McpServer> {
        self.req
            .tools
            .iter()
            .filter_map(|t| match t {
                ToolSpec::Mcp(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// The response object as it stands.
    pub(crate) fn object(&self, status: &str) -> Value {
        response_object(
            &self.req,
            &self.id,
            self.created_at,
            status,
            &self.output,
            self.usage(),
        )
    }

    fn usage(&self) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        })
    }

    /// Runs the response to its end: the finished object, with status `completed` or
    /// `incomplete`. An error is returned as it is; the caller decides how it is shown.
    pub(crate) async fn run(&mut self) -> Result<Value> {
        let started = self.object("in_progress");
        self.out
            .emit("response.created", || json!({"response": started.clone()}));
        self.out
            .emit("response.in_progress", || json!({"response": started}));

        if let Some(refusal) = self.check_input().await? {
            self.refuse(&refusal);
            return Ok(self.finish());
        }
        self.list_mcp_tools().await?;
        self.run_approved_calls().await?;

        for _ in 0..self.req.max_infer_iters {
            let (text, calls, finish) = self.infer().await?;
            let offered = self.offered_kinds();
            let mut pending_client = false;
            let mut ran_server = false;
            let mut assistant = json!({"role": "assistant", "content": text.clone()});
            let mut chat_calls = Vec::new();
            let mut results = Vec::new();
            for call in &calls {
                match offered.get(&call.name) {
                    Some(Offered::Function) => {
                        pending_client = true;
                        chat_calls.push(chat_call(call));
                    }
                    None => {
                        // A name the model made up: say so, and let it try again.
                        chat_calls.push(chat_call(call));
                        let note = format!("There is no tool named '{}'.", call.name);
                        results.push(tool_message(&call.id, note));
                        ran_server = true;
                    }
                    Some(Offered::Mcp(server)) => {
                        let server = self.mcp_servers()[*server].clone();
                        if server.approval.required(&call.name) {
                            self.request_approval(&server, call);
                            pending_client = true;
                        } else {
                            chat_calls.push(chat_call(call));
                            let output = self.mcp_call(&server, &call.name, &call.arguments).await;
                            results.push(tool_message(&call.id, output));
                            ran_server = true;
                        }
                    }
                    Some(Offered::FileSearch(tool)) => {
                        chat_calls.push(chat_call(call));
                        let output = self.file_search(*tool, &call.arguments).await;
                        results.push(tool_message(&call.id, output));
                        ran_server = true;
                    }
                    Some(Offered::WebSearch) => {
                        chat_calls.push(chat_call(call));
                        let output = self.web_search(&call.arguments).await;
                        results.push(tool_message(&call.id, output));
                        ran_server = true;
                    }
                }
            }
            if !chat_calls.is_empty() {
                assistant["tool_calls"] = Value::Array(chat_calls);
            }
            if text.is_some() || assistant.get("tool_calls").is_some() {
                self.messages.push(assistant);
            }
            self.messages.extend(results);
            if finish.as_deref() == Some("length") {
                self.incomplete_reason = Some("max_output_tokens");
                break;
            }
            if pending_client || !ran_server {
                break;
            }
        }
        self.check_output().await?;
        Ok(self.finish())
    }

    fn finish(&mut self) -> Value {
        let has_message = self.output.iter().any(|i| {
            matches!(
                i["type"].as_str(),
                Some("message" | "function_call" | "mcp_approval_request")
            )
        });
        if !has_message {
            // An empty reply is still a message, so that output_text reads as "".
            let index = self.output.len();
            let item = json!({"type": "message", "id": new_id("msg"), "status": "completed",
                "role": "assistant", "content": [{"type": "output_text", "text": "", "annotations": []}]});
            self.out.item(false, index, &item);
            self.out.item(true, index, &item);
            self.output.push(item);
        }
        self.status = if self.incomplete_reason.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        let mut object = self.object(self.status);
        if let Some(reason) = self.incomplete_reason {
            object["incomplete_details"] = json!({"reason": reason});
        }
        object["completed_at"] = json!(llama_stack_core::now_secs());
        object
    }

    /// The functions offered to the model, with what each stands for.
    fn offered_kinds(&self) -> HashMap<String, Offered> {
        let mut kinds = HashMap::new();
        for (i, tool) in self.req.tools.iter().enumerate() {
            match tool {
                ToolSpec::Function { name, .. } => {
                    kinds.insert(name.clone(), Offered::Function);
                }
                ToolSpec::FileSearch { .. } => {
                    kinds.insert(FILE_SEARCH.to_string(), Offered::FileSearch(i));
                }
                ToolSpec::WebSearch { .. } => {
                    kinds.insert(WEB_SEARCH.to_string(), Offered::WebSearch);
                }
                ToolSpec::Mcp(_) => {}
            }
        }
        for (name, server) in &self.mcp_tools {
            kinds.insert(name.clone(), Offered::Mcp(*server));
        }
        kinds
    }

    /// The chat tool definitions for the next iteration. Server-side tools are withdrawn once
    /// `max_tool_calls` is reached.
    fn chat_tools(&self) -> Vec<Value> {
        let limit_reached = self
            .req
            .max_tool_calls
            .is_some_and(|max| self.server_calls >= max);
        let mut defs = Vec::new();
        for tool in &self.req.tools {
            match tool {
                ToolSpec::Function {
                    name,
                    description,
                    parameters,
                    strict,
                } => {
                    let mut def = function_def(
                        name,
                        description.as_deref().unwrap_or_default(),
                        parameters.clone(),
                    );
                    if let Some(strict) = strict {
                        def["function"]["strict"] = json!(strict);
                    }
                    defs.push(def);
                }
                _ if limit_reached => {}
                ToolSpec::FileSearch { .. } => defs.push(function_def(
                    FILE_SEARCH,
                    "Search the user's documents for passages relevant to a query.",
                    query_parameters("What to look for in the documents"),
                )),
                ToolSpec::WebSearch { .. } => defs.push(function_def(
                    WEB_SEARCH,
                    "Search the web for current information.",
                    query_parameters("The search query"),
                )),
                ToolSpec::Mcp(_) => {}
            }
        }
        if !limit_reached {
            defs.extend(self.mcp_defs.iter().cloned());
        }
        defs
    }

    fn chat_tool_choice(&self) -> Value {
        let choice = &self.req.tool_choice;
        let function = |name: &str| json!({"type": "function", "function": {"name": name}});
        match choice["type"].as_str() {
            None => choice.clone(),
            Some("function") => function(choice["name"].as_str().unwrap_or_default()),
            Some("file_search") => function(FILE_SEARCH),
            Some(t) if t.starts_with("web_search") => function(WEB_SEARCH),
            Some("mcp") => match choice["name"].as_str() {
                Some(name) => function(name),
                None => json!("required"),
            },
            Some("allowed_tools") => json!(choice["mode"].as_str().unwrap_or("auto")),
            Some(_) => json!("auto"),
        }
    }

    fn chat_request(&self) -> Result<OpenAiChatCompletionRequest> {
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if let Some(instructions) = &self.req.instructions {
            messages.push(json!({"role": "system", "content": instructions}));
        }
        messages.extend(self.messages.iter().cloned());
        let mut body = json!({
            "model": self.req.model, "messages": messages, "stream": true,
            "stream_options": {"include_usage": true},
        });
        let r = &self.req;
        if let Some(t) = r.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(p) = r.top_p {
            body["top_p"] = json!(p);
        }
        if let Some(max) = r.max_output_tokens {
            body["max_tokens"] = json!(max);
        }
        let tools = self.chat_tools();
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools);
            body["tool_choice"] = self.chat_tool_choice();
            if !r.parallel_tool_calls {
                body["parallel_tool_calls"] = json!(false);
            }
        }
        let format = &r.text["format"];
        match format["type"].as_str() {
            Some("json_object") => body["response_format"] = json!({"type": "json_object"}),
            Some("json_schema") => {
                body["response_format"] = json!({"type": "json_schema", "json_schema": {
                    "name": format["name"].as_str().unwrap_or("response"),
                    "schema": format["schema"],
                    "strict": format["strict"].as_bool().unwrap_or(true),
                }})
            }
            _ => {}
        }
        if r.include
            .iter()
            .any(|i| i == "message.output_text.logprobs")
        {
            body["logprobs"] = json!(true);
            body["top_logprobs"] = json!(r.top_logprobs.unwrap_or(0));
        }
        serde_json::from_value(body)
            .map_err(|e| Error::invalid(format!("cannot build the chat request: {e}")))
    }

    /// One inference iteration: streams the reply into a message item and the tool calls.
    async fn infer(&mut self) -> Result<(Option<String>, Vec<Call>, Option<String>)> {
        let request = self.chat_request()?;
        let reply = self.svc.inference.openai_chat_completion(request).await?;
        let mut chunks: BoxStream<'static, Result<Value>> = match reply {
            OpenAiOutput::Stream(s) => s
                .map(|c| {
                    c.and_then(|c| {
                        serde_json::to_value(c).map_err(|e| Error::internal(e.to_string()))
                    })
                })
                .boxed(),
            OpenAiOutput::ForwardedStream(s) => s,
            OpenAiOutput::Complete(c) => {
                let c = serde_json::to_value(c).map_err(|e| Error::internal(e.to_string()))?;
                futures::stream::iter([Ok(as_chunk(c))]).boxed()
            }
            OpenAiOutput::Forwarded(c) => futures::stream::iter([Ok(as_chunk(c))]).boxed(),
        };
        let function_names: Vec<String> = self
            .req
            .tools
            .iter()
            .filter_map(|t| match t {
                ToolSpec::Function { name, .. } => Some(name.clone()),
                _ => None,
            })
            .collect();
        let with_logprobs = self
            .req
            .include
            .iter()
            .any(|i| i == "message.output_text.logprobs");
        let mut text: Option<TextItem> = None;
        let mut calls: Vec<Call> = Vec::new();
        let mut finish = None;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
                self.input_tokens += usage["prompt_tokens"].as_u64().unwrap_or(0);
                self.output_tokens += usage["completion_tokens"].as_u64().unwrap_or(0);
            }
            let Some(choice) = chunk["choices"].get(0) else {
                continue;
            };
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(reason.to_string());
            }
            let delta = &choice["delta"];
            let logprobs: Vec<Value> = if with_logprobs {
                choice["logprobs"]["content"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if let Some(piece) = delta["content"].as_str().filter(|s| !s.is_empty()) {
                let item = match &mut text {
                    Some(item) => item,
                    None => text.insert(self.start_message()),
                };
                item.text.push_str(piece);
                item.logprobs.extend(logprobs.iter().cloned());
                let (index, id) = (item.output_index, item.item_id.clone());
                self.out.emit("response.output_text.delta", || {
                    json!({"item_id": id, "output_index": index, "content_index": 0,
                           "delta": piece, "logprobs": logprobs})
                });
            }
            for (position, tc) in delta["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let slot = tc["index"].as_u64().map(|i| i as usize).unwrap_or(position);
                while calls.len() <= slot {
                    calls.push(Call::default());
                }
                let call = &mut calls[slot];
                if let Some(id) = tc["id"].as_str().filter(|s| !s.is_empty()) {
                    call.id = id.to_string();
                }
                if let Some(name) = tc["function"]["name"].as_str() {
                    call.name.push_str(name);
                }
                let piece = tc["function"]["arguments"].as_str().unwrap_or_default();
                call.arguments.push_str(piece);
                let is_function = function_names.contains(&call.name);
                if is_function && call.output_index.is_none() {
                    let index = self.output.len();
                    if call.id.is_empty() {
                        call.id = new_id("call");
                    }
                    call.item_id = new_id("fc");
                    call.output_index = Some(index);
                    let item = function_item(call, "in_progress", "");
                    self.output.push(item.clone());
                    self.out.item(false, index, &item);
                    let (id, all) = (call.item_id.clone(), call.arguments.clone());
                    if !all.is_empty() {
                        self.out.emit(
                            "response.function_call_arguments.delta",
                            || json!({"item_id": id, "output_index": index, "delta": all}),
                        );
                    }
                } else if let (true, Some(index)) = (is_function, call.output_index)
                    && !piece.is_empty()
                {
                    let id = call.item_id.clone();
                    self.out.emit(
                        "response.function_call_arguments.delta",
                        || json!({"item_id": id, "output_index": index, "delta": piece}),
                    );
                }
            }
        }
        let text_value = text.as_ref().map(|t| t.text.clone());
        if let Some(item) = text {
            self.finish_message(item);
        }
        for call in &mut calls {
            if call.id.is_empty() {
                call.id = new_id("call");
            }
            if call.arguments.trim().is_empty() {
                call.arguments = "{}".into();
            }
            if let Some(index) = call.output_index {
                let item = function_item(call, "completed", &call.arguments);
                let (id, args, name) = (
                    call.item_id.clone(),
                    call.arguments.clone(),
                    call.name.clone(),
                );
                self.out.emit("response.function_call_arguments.done", || {
                    json!({"item_id": id, "output_index": index, "arguments": args, "name": name})
                });
                self.out.item(true, index, &item);
                self.output[index] = item;
            }
        }
        Ok((text_value, calls, finish))
    }

    fn start_message(&mut self) -> TextItem {
        let index = self.output.len();
        let id = new_id("msg");
        let item = json!({"type": "message", "id": id, "status": "in_progress",
                          "role": "assistant", "content": []});
        self.output.push(item.clone());
        self.out.item(false, index, &item);
        let item_id = id.clone();
        self.out.emit("response.content_part.added", || {
            json!({"item_id": item_id, "output_index": index, "content_index": 0,
                   "part": {"type": "output_text", "text": "", "annotations": []}})
        });
        TextItem {
            output_index: index,
            item_id: id,
            text: String::new(),
            logprobs: Vec::new(),
        }
    }

    /// Closes a streamed message: its citations, then the done events.
    fn finish_message(&mut self, item: TextItem) {
        let TextItem {
            output_index: index,
            item_id: id,
            text,
            logprobs,
        } = item;
        let annotations: Vec<Value> = self
            .citations
            .iter()
            .map(|(file_id, filename)| {
                json!({"type": "file_citation", "file_id": file_id, "filename": filename,
                       "index": text.chars().count()})
            })
            .collect();
        for (i, annotation) in annotations.iter().enumerate() {
            let item_id = id.clone();
            self.out.emit("response.output_text.annotation.added", || {
                json!({"item_id": item_id, "output_index": index, "content_index": 0,
                       "annotation_index": i, "annotation": annotation})
            });
        }
        let mut part = json!({"type": "output_text", "text": text, "annotations": annotations});
        if self
            .req
            .include
            .iter()
            .any(|i| i == "message.output_text.logprobs")
        {
            part["logprobs"] = Value::Array(logprobs);
        }
        let (item_id, t) = (id.clone(), text.clone());
        self.out.emit(
            "response.output_text.done",
            || json!({"item_id": item_id, "output_index": index, "content_index": 0, "text": t}),
        );
        let (item_id, p) = (id.clone(), part.clone());
        self.out.emit(
            "response.content_part.done",
            || json!({"item_id": item_id, "output_index": index, "content_index": 0, "part": p}),
        );
        let done = json!({"type": "message", "id": id, "status": "completed",
                          "role": "assistant", "content": [part]});
        self.out.item(true, index, &done);
        self.output[index] = done;
    }

    /// Adds a finished item with its added and done events.
    pub(crate) fn push_item(&mut self, item: Value) -> usize {
        let index = self.output.len();
        self.out.item(false, index, &item);
        self.out.item(true, index, &item);
        self.output.push(item);
        index
    }
}

fn chat_call(call: &Call) -> Value {
    json!({"id": call.id, "type": "function",
           "function": {"name": call.name, "arguments": call.arguments}})
}

pub(crate) fn tool_message(call_id: &str, content: String) -> Value {
    json!({"role": "tool", "tool_call_id": call_id, "content": content})
}

fn function_item(call: &Call, status: &str, arguments: &str) -> Value {
    json!({"type": "function_call", "id": call.item_id, "call_id": call.id, "name": call.name,
           "arguments": arguments, "status": status})
}

/// A whole chat completion as one stream chunk, for a provider that answered without streaming.
fn as_chunk(completion: Value) -> Value {
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    let calls: Vec<Value> = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let mut c = c.clone();
            c["index"] = json!(i);
            c
        })
        .collect();
    json!({"choices": [{"index": 0, "finish_reason": choice["finish_reason"],
            "logprobs": choice["logprobs"],
            "delta": {"content": message["content"], "tool_calls": calls}}],
           "usage": completion["usage"]})
}

/// The response object.
pub(crate) fn response_object(
    req: &CreateRequest,
    id: &str,
    created_at: i64,
    status: &str,
    output: &[Value],
    usage: Value,
) -> Value {
    let metadata: Map<String, Value> = req.metadata.clone();
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": req.background,
        "error": null,
        "incomplete_details": null,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "model": req.model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls,
        "previous_response_id": req.previous_response_id,
        "conversation": req.conversation.as_ref().map(|c| json!({"id": c})),
        "store": req.store,
        "temperature": req.temperature,
        "text": req.text,
        "tool_choice": req.tool_choice,
        "tools": req.tools.iter().map(ToolSpec::echo).collect::<Vec<_>>(),
        "top_p": req.top_p,
        "top_logprobs": req.top_logprobs,
        "truncation": req.truncation,
        "usage": usage,
        "metadata": metadata,
    })
}
