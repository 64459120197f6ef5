//! The Anthropic Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`) over the
//! same providers: a request is turned into an OpenAI chat completion (which every provider
//! serves, local or remote), and the answer or its stream back into Anthropic's message and
//! events.

use futures::StreamExt;
use futures::stream::BoxStream;
use llama_stack_core::{Error, Result};
use llama_stack_types::openai::OpenAiChatCompletionRequest;
use serde_json::{Map, Value, json};

use crate::openai_compat::OpenAiOutput;
use crate::service::InferenceService;

/// An Anthropic stream: each item is an event's name and its data.
pub type MessageEvents = BoxStream<'static, Result<(String, Value)>>;

/// What `POST /v1/messages` answers.
pub enum MessagesOutput {
    Message(Value),
    Stream(MessageEvents),
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// One Anthropic message as OpenAI chat messages (tool results become tool messages).
fn message_to_openai(index: usize, message: &Value, out: &mut Vec<Value>) -> Result<()> {
    let at = |m: String| bad("messages", format!("messages[{index}]: {m}"));
    let role = match message["role"].as_str() {
        Some(r @ ("user" | "assistant")) => r,
        other => return Err(at(format!("role must be user or assistant, got {other:?}"))),
    };
    let blocks = match &message["content"] {
        Value::String(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(at(
                "content must be a string or a list of content blocks".into()
            ));
        }
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => {
                let source = &block["source"];
                let url = match source["type"].as_str() {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        source["media_type"].as_str().unwrap_or("image/png"),
                        source["data"].as_str().unwrap_or_default()
                    ),
                    Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
                    _ => {
                        return Err(at(format!(
                            "content[{j}]: an image needs a base64 or url source"
                        )));
                    }
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_use") => calls.push(json!({
                "id": block["id"], "type": "function",
                "function": {"name": block["name"],
                             "arguments": block.get("input").unwrap_or(&json!({})).to_string()}})),
            Some("tool_result") => {
                let mut text = text_of(&block["content"]);
                if block["is_error"] == json!(true) {
                    text = format!("Error: {text}");
                }
                out.push(json!({"role": "tool", "tool_call_id": block["tool_use_id"],
                                "content": text}));
            }
            other => {
                return Err(at(format!(
                    "content[{j}] has type {other:?}; supported: text, image, tool_use, tool_result"
                )));
            }
        }
    }
    if role == "assistant" {
        let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        let mut m = json!({"role": "assistant", "content": text.join("")});
        if !calls.is_empty() {
            m["tool_calls"] = Value::Array(calls);
        }
        out.push(m);
    } else if !parts.is_empty() {
        let only_text = parts.iter().all(|p| p["type"] == "text");
        let content = if only_text {
            json!(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        } else {
            Value::Array(parts)
        };
        out.push(json!({"role": "user", "content": content}));
    }
    Ok(())
}

/// The OpenAI chat request a Messages request amounts to.
pub fn to_openai(body: &Map<String, Value>, stream: bool) -> Result<OpenAiChatCompletionRequest> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("model", "model is required"))?;
    let mut messages = Vec::new();
    match body.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => messages.push(json!({"role": "system", "content": text_of(system)})),
    }
    let given = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("messages", "messages is required: a non-empty list"))?;
    for (i, m) in given.iter().enumerate() {
        message_to_openai(i, m, &mut messages)?;
    }
    let mut request = json!({"model": model, "messages": messages, "stream": stream});
    if stream {
        request["stream_options"] = json!({"include_usage": true});
    }
    match body.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => request["max_tokens"] = json!(n),
        _ => return Err(bad("max_tokens", "max_tokens is required: at least 1")),
    }
    for (ours, theirs) in [("temperature", "temperature"), ("top_p", "top_p")] {
        if let Some(v) = body.get(theirs).filter(|v| !v.is_null()) {
            request[ours] = v.clone();
        }
    }
    if let Some(stops) = body.get("stop_sequences").filter(|v| !v.is_null()) {
        request["stop"] = stops.clone();
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        let defs: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t["name"], "description": t["description"],
                    "parameters": t.get("input_schema").cloned()
                        .unwrap_or(json!({"type": "object", "properties": {}}))}})
            })
            .collect();
        if !defs.is_empty() {
            request["tools"] = Value::Array(defs);
        }
        request["tool_choice"] = match body.get("tool_choice").map(|c| &c["type"]) {
            Some(Value::String(t)) if t == "any" => json!("required"),
            Some(Value::String(t)) if t == "none" => json!("none"),
            Some(Value::String(t)) if t == "tool" => {
                let name = body.get("tool_choice").map(|c| c["name"].clone());
                json!({"type": "function", "function": {"name": name}})
            }
            _ => json!("auto"),
        };
    }
    serde_json::from_value(request)
        .map_err(|e| bad("messages", format!("cannot read the messages: {e}")))
}

fn stop_reason(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls") => "tool_use",
        Some("stop_sequence") => "stop_sequence",
        _ => "end_turn",
    }
}

fn message_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// An OpenAI completion as an Anthropic message.
fn completion_to_message(c: &Value, model: &str) -> Value {
    let choice = &c["choices"][0];
    let mut content = Vec::new();
    if let Some(text) = choice["message"]["content"]
        .as_str()
        .filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in choice["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let input: Value = call["function"]["arguments"]
            .as_str()
            .and_then(|a| serde_json::from_str(a).ok())
            .unwrap_or(json!({}));
        content.push(json!({"type": "tool_use", "id": call["id"],
                            "name": call["function"]["name"], "input": input}));
    }
    json!({
        "id": message_id(), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop_reason(choice["finish_reason"].as_str()),
        "stop_sequence": null,
        "usage": {"input_tokens": c["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                  "output_tokens": c["usage"]["completion_tokens"].as_u64().unwrap_or(0)},
    })
}

/// Turns OpenAI chunks into Anthropic events, block by block.
struct Translator {
    model: String,
    started: bool,
    /// The open block: its index and whether it is text (else a tool use).
    open: Option<(usize, bool)>,
    next_index: usize,
    finish: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
}

impl Translator {
    fn chunk(&mut self, chunk: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            out.push((
                "message_start".into(),
                json!({"type": "message_start", "message": {
                "id": message_id(), "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            ));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.input_tokens = usage["prompt_tokens"].as_u64().unwrap_or(self.input_tokens);
            self.output_tokens = usage["completion_tokens"]
                .as_u64()
                .unwrap_or(self.output_tokens);
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return out;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if !matches!(self.open, Some((_, true))) {
                self.close(&mut out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((index, true));
                out.push((
                    "content_block_start".into(),
                    json!({"type": "content_block_start",
                    "index": index, "content_block": {"type": "text", "text": ""}}),
                ));
            }
            let index = self.open.map(|(i, _)| i).unwrap_or(0);
            out.push((
                "content_block_delta".into(),
                json!({"type": "content_block_delta",
                "index": index, "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if call["id"].is_string() || call["function"]["name"].is_string() {
                self.close(&mut out);
                let index = self.next_index;
                self.next_index += 1;
                self.open = Some((index, false));
                out.push((
                    "content_block_start".into(),
                    json!({"type": "content_block_start",
                    "index": index, "content_block": {"type": "tool_use",
                        "id": call["id"].as_str().map(str::to_string)
                            .unwrap_or_else(|| format!("toolu_{}", uuid::Uuid::new_v4().simple())),
                        "name": call["function"]["name"], "input": {}}}),
                ));
            }
            if let Some(args) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                let index = self.open.map(|(i, _)| i).unwrap_or(0);
                out.push((
                    "content_block_delta".into(),
                    json!({"type": "content_block_delta",
                    "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        out
    }

    fn close(&mut self, out: &mut Vec<(String, Value)>) {
        if let Some((index, _)) = self.open.take() {
            out.push((
                "content_block_stop".into(),
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn end(&mut self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        self.close(&mut out);
        out.push((
            "message_delta".into(),
            json!({"type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish.as_deref()), "stop_sequence": null},
            "usage": {"output_tokens": self.output_tokens}}),
        ));
        out.push(("message_stop".into(), json!({"type": "message_stop"})));
        out
    }
}

impl InferenceService {
    /// `POST /v1/messages`.
    pub async fn anthropic_messages(&self, body: Map<String, Value>) -> Result<MessagesOutput> {
        let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
        let request = to_openai(&body, stream)?;
        let model = request.model.clone();
        let reply = self.openai_chat_completion(request).await?;
        let chunks: BoxStream<'static, Result<Value>> = match reply {
            OpenAiOutput::Complete(c) => {
                let c = serde_json::to_value(c).map_err(|e| Error::internal(e.to_string()))?;
                return Ok(MessagesOutput::Message(completion_to_message(&c, &model)));
            }
            OpenAiOutput::Forwarded(c) => {
                return Ok(MessagesOutput::Message(completion_to_message(&c, &model)));
            }
            OpenAiOutput::Stream(s) => s
                .map(|c| {
                    c.and_then(|c| {
                        serde_json::to_value(c).map_err(|e| Error::internal(e.to_string()))
                    })
                })
                .boxed(),
            OpenAiOutput::ForwardedStream(s) => s,
        };
        let mut translator = Translator {
            model,
            started: false,
            open: None,
            next_index: 0,
            finish: None,
            input_tokens: 0,
            output_tokens: 0,
        };
        let events = async_stream_events(chunks, move |chunk| match chunk {
            Some(c) => translator.chunk(&c),
            None => translator.end(),
        });
        Ok(MessagesOutput::Stream(events))
    }

    /// `POST /v1/messages/count_tokens`: the prompt tokens of the request, as the model's own
    /// tokenizer counts them (one token is generated to learn it).
    pub async fn anthropic_count_tokens(&self, mut body: Map<String, Value>) -> Result<Value> {
        body.insert("max_tokens".into(), json!(1));
        let mut request = to_openai(&body, false)?;
        request.max_tokens = Some(1);
        let usage = match self.openai_chat_completion(request).await? {
            OpenAiOutput::Complete(c) => serde_json::to_value(c.usage).unwrap_or(Value::Null),
            OpenAiOutput::Forwarded(c) => c["usage"].clone(),
            _ => Value::Null,
        };
        let tokens = usage["prompt_tokens"]
            .as_u64()
            .ok_or_else(|| Error::unsupported("this model's provider reports no token counts"))?;
        Ok(json!({"input_tokens": tokens}))
    }
}

/// Maps each chunk (and the end, as `None`) to events, in order.
fn async_stream_events(
    chunks: BoxStream<'static, Result<Value>>,
    mut map: impl FnMut(Option<Value>) -> Vec<(String, Value)> + Send + 'static,
) -> MessageEvents {
    let ended = futures::stream::once(async { None });
    chunks
        .map(Some)
        .chain(ended)
        .flat_map(move |item| {
            let events: Vec<Result<(String, Value)>> = match item {
                Some(Ok(chunk)) => map(Some(chunk)).into_iter().map(Ok).collect(),
                Some(Err(e)) => vec![Err(e)],
                None => map(None).into_iter().map(Ok).collect(),
            };
            futures::stream::iter(events)
        })
        .boxed()
}
