//! Classic requests as OpenAI request bodies.

use llama_stack_core::{Error, Result};
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, ContentItem, ImageContent, InterleavedContent,
    LogProbConfig, Message, SamplingParams, SamplingStrategy, ToolCall, ToolDefinition,
};
use serde_json::{Map, Value, json};

/// What differs between upstreams in a request body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// The upstream accepts `top_k` and `repetition_penalty`.
    pub extra_sampling: bool,
    /// `max_tokens` to send when the request leaves it to the provider.
    pub default_max_tokens: Option<u32>,
}

fn field_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

/// An image as the URL OpenAI's `image_url` part takes: the URL itself, or a `data:` URL
/// for base64 data (the media type read from the data's first bytes).
fn image_url(image: &ImageContent) -> Result<String> {
    if let Some(url) = &image.url {
        return Ok(url.uri.clone());
    }
    let data = image
        .data
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| field_error("messages", "an image item needs `url` or `data`"))?;
    // Base64 of the magic numbers: PNG, JPEG, GIF, WebP.
    let media_type = [
        ("iVBORw0KGgo", "image/png"),
        ("/9j/", "image/jpeg"),
        ("R0lGOD", "image/gif"),
        ("UklGR", "image/webp"),
    ]
    .iter()
    .find(|(prefix, _)| data.starts_with(prefix))
    .map_or("image/png", |(_, media)| media);
    Ok(format!("data:{media_type};base64,{data}"))
}

fn part(item: &ContentItem) -> Result<Value> {
    Ok(match item {
        ContentItem::Text { text } => json!({"type": "text", "text": text}),
        ContentItem::Image { image } => {
            json!({"type": "image_url", "image_url": {"url": image_url(image)?}})
        }
    })
}

/// A string stays a string; items become OpenAI content parts (text and `image_url`), which
/// keeps their boundaries exactly as the client gave them.
fn content(content: &InterleavedContent) -> Result<Value> {
    match content {
        InterleavedContent::Text(text) => Ok(Value::String(text.clone())),
        InterleavedContent::Item(item) => Ok(Value::Array(vec![part(item)?])),
        InterleavedContent::Items(items) => Ok(Value::Array(
            items.iter().map(part).collect::<Result<Vec<_>>>()?,
        )),
    }
}

/// Content plus a user message's RAG `context`, which upstream appends after the content.
fn with_context(main: &InterleavedContent, context: Option<&InterleavedContent>) -> Result<Value> {
    let Some(extra) = context else {
        return content(main);
    };
    let mut items = main.items();
    items.extend(extra.items());
    content(&InterleavedContent::Items(items))
}

fn tool_call(call: &ToolCall) -> Value {
    let arguments = call
        .arguments_json
        .clone()
        .unwrap_or_else(|| match &call.arguments {
            Value::String(raw) => raw.clone(),
            other => other.to_string(),
        });
    json!({
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.tool_name, "arguments": arguments},
    })
}

fn message(message: &Message) -> Result<Value> {
    Ok(match message {
        Message::System { content: c } => json!({"role": "system", "content": content(c)?}),
        Message::User {
            content: c,
            context,
        } => json!({"role": "user", "content": with_context(c, context.as_ref())?}),
        Message::Tool {
            call_id,
            content: c,
            ..
        } => json!({"role": "tool", "tool_call_id": call_id, "content": content(c)?}),
        Message::Assistant {
            content: c,
            tool_calls,
            ..
        } => {
            let mut out = Map::new();
            out.insert("role".into(), "assistant".into());
            let empty = matches!(c, InterleavedContent::Text(t) if t.is_empty());
            // OpenAI wants `null` rather than "" next to tool calls.
            let text = if empty && !tool_calls.is_empty() {
                Value::Null
            } else {
                content(c)?
            };
            out.insert("content".into(), text);
            if !tool_calls.is_empty() {
                out.insert(
                    "tool_calls".into(),
                    tool_calls.iter().map(tool_call).collect(),
                );
            }
            Value::Object(out)
        }
    })
}

/// A classic tool as an OpenAI function; `param_type` goes through as the JSON Schema `type`,
/// as upstream sends it.
fn tool(definition: &ToolDefinition) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, param) in definition.parameters.iter().flatten() {
        let mut schema = Map::new();
        schema.insert("type".into(), param.param_type.clone().into());
        if let Some(description) = &param.description {
            schema.insert("description".into(), description.clone().into());
        }
        if let Some(default) = &param.default {
            schema.insert("default".into(), default.clone());
        }
        properties.insert(name.clone(), Value::Object(schema));
        if param.required {
            required.push(Value::String(name.clone()));
        }
    }
    let mut function = Map::new();
    function.insert("name".into(), definition.tool_name.clone().into());
    if let Some(description) = &definition.description {
        function.insert("description".into(), description.clone().into());
    }
    function.insert(
        "parameters".into(),
        json!({"type": "object", "properties": properties, "required": required}),
    );
    json!({"type": "function", "function": function})
}

fn tool_choice(choice: &str) -> Value {
    match choice {
        "auto" | "required" | "none" => Value::String(choice.to_string()),
        name => json!({"type": "function", "function": {"name": name}}),
    }
}

/// Classic `response_format` in OpenAI's shape. A classic `json_schema` carries the schema
/// itself; OpenAI wraps it with a name. An OpenAI-shaped value passes as it is.
fn response_format(format: &Value) -> Result<Value> {
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {
            let schema = format.get("json_schema").cloned().unwrap_or(json!({}));
            let already_openai = schema.get("schema").is_some_and(Value::is_object)
                && schema.get("properties").is_none();
            if already_openai {
                Ok(format.clone())
            } else {
                Ok(json!({"type": "json_schema",
                          "json_schema": {"name": "response", "schema": schema}}))
            }
        }
        Some("json_object") | Some("text") => Ok(format.clone()),
        Some("grammar") => Err(Error::unsupported(
            "grammar response formats cannot be sent to an OpenAI-compatible provider; use json_schema",
        )),
        _ => Err(field_error(
            "response_format",
            "response_format.type must be json_schema, json_object or grammar",
        )),
    }
}

fn sampling(
    params: Option<&SamplingParams>,
    options: RequestOptions,
    body: &mut Map<String, Value>,
) {
    let default = SamplingParams::default();
    let params = params.unwrap_or(&default);
    match &params.strategy {
        SamplingStrategy::Greedy => {
            body.insert("temperature".into(), json!(0.0));
        }
        SamplingStrategy::TopP { temperature, top_p } => {
            if let Some(t) = temperature {
                body.insert("temperature".into(), json!(t));
            }
            body.insert("top_p".into(), json!(top_p));
        }
        SamplingStrategy::TopK { top_k } => {
            if options.extra_sampling {
                body.insert("top_k".into(), json!(top_k));
            }
        }
    }
    if let Some(n) = params
        .max_tokens
        .filter(|n| *n > 0)
        .or(options.default_max_tokens)
    {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(p) = params.repetition_penalty
        && options.extra_sampling
        && p != 1.0
    {
        body.insert("repetition_penalty".into(), json!(p));
    }
    if let Some(stop) = params.stop.as_ref().filter(|s| !s.is_empty()) {
        body.insert("stop".into(), json!(stop));
    }
    if let Some(seed) = params.seed {
        body.insert("seed".into(), json!(seed));
    }
}

fn stream_fields(stream: bool, body: &mut Map<String, Value>) {
    if stream {
        body.insert("stream".into(), true.into());
        // Usage arrives in a last chunk of its own; without it the metrics would be unknown.
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
}

/// `POST /chat/completions` for a classic chat request (already normalised by the stack:
/// `tool_choice` and `tool_prompt_format` are in `tool_config`).
pub fn chat_body(
    request: &ChatCompletionRequest,
    stream: bool,
    options: RequestOptions,
) -> Result<Value> {
    let mut body = Map::new();
    body.insert("model".into(), request.model_id.clone().into());
    body.insert(
        "messages".into(),
        request
            .messages
            .iter()
            .map(message)
            .collect::<Result<Vec<_>>>()?
            .into(),
    );
    sampling(request.sampling_params.as_ref(), options, &mut body);
    if let Some(tools) = request.tools.as_ref().filter(|t| !t.is_empty()) {
        body.insert("tools".into(), tools.iter().map(tool).collect());
        let choice = request
            .tool_config
            .as_ref()
            .and_then(|c| c.tool_choice.as_deref())
            .or(request.tool_choice.as_deref());
        if let Some(choice) = choice {
            body.insert("tool_choice".into(), tool_choice(choice));
        }
    }
    if let Some(format) = &request.response_format {
        body.insert("response_format".into(), response_format(format)?);
    }
    if let Some(LogProbConfig { top_k }) = &request.logprobs {
        body.insert("logprobs".into(), true.into());
        body.insert("top_logprobs".into(), json!(top_k.unwrap_or(0)));
    }
    stream_fields(stream, &mut body);
    Ok(Value::Object(body))
}

/// `POST /completions` for a classic completion request: the content is the prompt text.
pub fn completion_body(
    request: &CompletionRequest,
    stream: bool,
    options: RequestOptions,
) -> Result<Value> {
    let items = request.content.items();
    if items.iter().any(|i| matches!(i, ContentItem::Image { .. })) {
        return Err(field_error(
            "content",
            "a completion prompt sent to an OpenAI-compatible provider must be text; use chat completion for images",
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), request.model_id.clone().into());
    body.insert("prompt".into(), request.content.as_text("").into());
    sampling(request.sampling_params.as_ref(), options, &mut body);
    if let Some(format) = &request.response_format {
        body.insert("response_format".into(), response_format(format)?);
    }
    if let Some(LogProbConfig { top_k }) = &request.logprobs {
        body.insert("logprobs".into(), json!(top_k.unwrap_or(0)));
    }
    stream_fields(stream, &mut body);
    Ok(Value::Object(body))
}

/// `POST /embeddings` for texts.
pub fn embeddings_body(model: &str, texts: Vec<String>, dimensions: Option<u32>) -> Value {
    let mut body = json!({"model": model, "input": texts, "encoding_format": "float"});
    if let Some(d) = dimensions {
        body["dimensions"] = json!(d);
    }
    body
}

/// An OpenAI-shaped request sent on as the client wrote it. Fields the client left out are
/// left out (not sent as `null`, which some servers refuse).
pub fn forwarded_body<T: serde::Serialize>(request: &T) -> Result<Value> {
    let mut value = serde_json::to_value(request)
        .map_err(|e| Error::internal(format!("cannot serialize the request: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    Ok(value)
}
