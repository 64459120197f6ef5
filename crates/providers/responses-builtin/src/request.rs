//! `POST /v1/responses` bodies: read field by field so that every problem names its field, in
//! OpenAI's error shape (`param`). Fields the OpenAI API has and this server does not use
//! (`user`, `service_tier`, `prompt_cache_key`, ...) are accepted and ignored, so newer SDKs
//! keep working.

use llama_stack_core::{Error, Result};
use serde_json::{Map, Value, json};

use crate::input::normalize_input;
use crate::store::well_formed;
use crate::tools::{ToolSpec, parse_tools};

/// What `include` may ask for. Only the first two change what is answered; the others name
/// outputs this server never produces and are accepted as OpenAI accepts them.
const INCLUDABLE: &[&str] = &[
    "file_search_call.results",
    "message.output_text.logprobs",
    "web_search_call.action.sources",
    "web_search_call.results",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
];

/// A checked create request.
#[derive(Debug, Clone)]
pub(crate) struct CreateRequest {
    pub model: String,
    /// The input items, each with its id; a string input is one user message.
    pub input: Vec<Value>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub conversation: Option<String>,
    pub store: bool,
    pub stream: bool,
    pub background: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_output_tokens: Option<u32>,
    pub top_logprobs: Option<u32>,
    /// `text`, with `format` defaulting to plain text.
    pub text: Value,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: Value,
    pub parallel_tool_calls: bool,
    pub max_tool_calls: Option<u32>,
    pub max_infer_iters: u32,
    pub include: Vec<String>,
    pub metadata: Map<String, Value>,
    pub truncation: String,
    /// Shield ids from `guardrails`, run on the input and on the answer.
    pub guardrails: Vec<String>,
}

pub(crate) fn field_error(path: &[Value], message: impl Into<String>) -> Error {
    let mut location = vec![Value::from("body")];
    location.extend(path.iter().cloned());
    Error::invalid(message).with_location(location)
}

fn bad(field: &str, message: impl Into<String>) -> Error {
    field_error(&[field.into()], message)
}

fn present<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    body.get(field).filter(|v| !v.is_null())
}

fn opt_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(field, format!("{field} must be a string, got {other}"))),
    }
}

fn opt_bool(body: &Map<String, Value>, field: &str) -> Result<Option<bool>> {
    match present(body, field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(bad(
            field,
            format!("{field} must be true or false, got {other}"),
        )),
    }
}

fn opt_number(body: &Map<String, Value>, field: &str, min: f64, max: f64) -> Result<Option<f64>> {
    match present(body, field) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(bad(
                field,
                format!("{field} must be a number from {min} to {max}, got {v}"),
            )),
        },
    }
}

fn opt_count(body: &Map<String, Value>, field: &str, min: u64, max: u64) -> Result<Option<u32>> {
    match present(body, field) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n as u32)),
            _ => Err(bad(
                field,
                format!("{field} must be an integer from {min} to {max}, got {v}"),
            )),
        },
    }
}

/// `conversation`: an id, or `{"id": ...}`.
fn conversation(body: &Map<String, Value>) -> Result<Option<String>> {
    let id = match present(body, "conversation") {
        None => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        Some(Value::Object(o)) => match o.get("id") {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(bad(
                    "conversation",
                    "conversation must be a conversation id or {\"id\": \"conv_...\"}",
                ));
            }
        },
        Some(other) => {
            return Err(bad(
                "conversation",
                format!("conversation must be a conversation id, got {other}"),
            ));
        }
    };
    if !well_formed(&id, "conv") {
        return Err(bad(
            "conversation",
            format!(
                "conversation '{id}' is not a conversation id: ids are 'conv_' followed by 48 lowercase hex digits, as POST /v1/conversations gives them"
            ),
        ));
    }
    Ok(Some(id))
}

/// `text`: `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
fn text(body: &Map<String, Value>) -> Result<Value> {
    let Some(text) = present(body, "text") else {
        return Ok(json!({"format": {"type": "text"}}));
    };
    let Some(obj) = text.as_object() else {
        return Err(bad("text", format!("text must be an object, got {text}")));
    };
    let mut out = obj.clone();
    match obj.get("format").filter(|v| !v.is_null()) {
        None => {
            out.insert("format".into(), json!({"type": "text"}));
        }
        Some(format) => {
            let at = |m: String| field_error(&["text".into(), "format".into()], m);
            match format.get("type").and_then(Value::as_str) {
                Some("text") | Some("json_object") => {}
                Some("json_schema") => match format.get("schema") {
                    Some(Value::Object(_)) => {}
                    _ => {
                        return Err(at(
                            "text.format of type json_schema needs a `schema` object".into(),
                        ));
                    }
                },
                Some(other) => {
                    return Err(at(format!(
                        "text.format.type must be 'text', 'json_object' or 'json_schema', got '{other}'"
                    )));
                }
                None => return Err(at("text.format needs a `type`".into())),
            }
        }
    }
    Ok(Value::Object(out))
}

/// `guardrails`: shield ids, as strings or `{"id": ...}` objects.
fn guardrails(body: &Map<String, Value>) -> Result<Vec<String>> {
    let Some(value) = present(body, "guardrails") else {
        return Ok(Vec::new());
    };
    let Some(list) = value.as_array() else {
        return Err(bad("guardrails", "guardrails must be a list of shield ids"));
    };
    list.iter()
        .enumerate()
        .map(|(i, g)| match g {
            Value::String(id) => Ok(id.clone()),
            Value::Object(o) => o
                .get("id")
                .or_else(|| o.get("shield_id"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    field_error(
                        &["guardrails".into(), i.into()],
                        "a guardrail object needs an `id` naming a shield",
                    )
                }),
            other => Err(field_error(
                &["guardrails".into(), i.into()],
                format!("a guardrail is a shield id, got {other}"),
            )),
        })
        .collect()
}

fn tool_choice(body: &Map<String, Value>) -> Result<Value> {
    match present(body, "tool_choice") {
        None => Ok(json!("auto")),
        Some(Value::String(mode)) if ["auto", "none", "required"].contains(&mode.as_str()) => {
            Ok(json!(mode))
        }
        Some(Value::Object(o)) if o.get("type").and_then(Value::as_str).is_some() => {
            Ok(Value::Object(o.clone()))
        }
        Some(other) => Err(bad(
            "tool_choice",
            format!(
                "tool_choice must be 'auto', 'none', 'required' or a tool object such as {{\"type\": \"function\", \"name\": \"...\"}}, got {other}"
            ),
        )),
    }
}

/// Reads and checks a create request. `default_iters` is the provider's `max_infer_iters`.
pub(crate) fn parse(body: &Map<String, Value>, default_iters: u32) -> Result<CreateRequest> {
    let model = match present(body, "model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        Some(other) => {
            return Err(bad(
                "model",
                format!("model must name a model, got {other}"),
            ));
        }
        None => {
            return Err(bad(
                "model",
                "model is required: the id of a model from GET /v1/models",
            ));
        }
    };
    let input = match present(body, "input") {
        Some(v) => normalize_input(v)?,
        None => {
            return Err(bad(
                "input",
                "input is required: a string or a list of input items",
            ));
        }
    };
    let previous_response_id = opt_string(body, "previous_response_id")?;
    let conversation = conversation(body)?;
    if previous_response_id.is_some() && conversation.is_some() {
        return Err(bad(
            "previous_response_id",
            "previous_response_id and conversation cannot both be given: a response continues either another response or a conversation",
        ));
    }
    let stream = opt_bool(body, "stream")?.unwrap_or(false);
    let background = opt_bool(body, "background")?.unwrap_or(false);
    let store = opt_bool(body, "store")?.unwrap_or(true);
    if background && !store {
        return Err(bad(
            "background",
            "background responses must be stored: remove store: false",
        ));
    }
    if background && stream {
        return Err(bad(
            "background",
            "background and stream cannot both be true: create the background response, then poll it with GET /v1/responses/{id}",
        ));
    }
    let include = match present(body, "include") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if INCLUDABLE.contains(&s) => out.push(s.to_string()),
                    _ => {
                        return Err(field_error(
                            &["include".into(), i.into()],
                            format!(
                                "include[{i}] is {item}; it must be one of {}",
                                INCLUDABLE.join(", ")
                            ),
                        ));
                    }
                }
            }
            out
        }
        Some(other) => {
            return Err(bad(
                "include",
                format!("include must be a list, got {other}"),
            ));
        }
    };
    let metadata = match present(body, "metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => {
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(field_error(
                    &["metadata".into(), k.as_str().into()],
                    format!("metadata values must be strings; '{k}' is not"),
                ));
            }
            m.clone()
        }
        Some(other) => {
            return Err(bad(
                "metadata",
                format!("metadata must be an object, got {other}"),
            ));
        }
    };
    let truncation = match opt_string(body, "truncation")? {
        None => "disabled".to_string(),
        Some(t) if t == "auto" || t == "disabled" => t,
        Some(t) => {
            return Err(bad(
                "truncation",
                format!("truncation must be 'auto' or 'disabled', got '{t}'"),
            ));
        }
    };
    Ok(CreateRequest {
        model,
        input,
        instructions: opt_string(body, "instructions")?,
        previous_response_id,
        conversation,
        store,
        stream,
        background,
        temperature: opt_number(body, "temperature", 0.0, 2.0)?,
        top_p: opt_number(body, "top_p", 0.0, 1.0)?,
        max_output_tokens: opt_count(body, "max_output_tokens", 1, 1 << 20)?,
        top_logprobs: opt_count(body, "top_logprobs", 0, 20)?,
        text: text(body)?,
        tools: parse_tools(present(body, "tools"))?,
        tool_choice: tool_choice(body)?,
        parallel_tool_calls: opt_bool(body, "parallel_tool_calls")?.unwrap_or(true),
        max_tool_calls: opt_count(body, "max_tool_calls", 1, 1000)?,
        max_infer_iters: opt_count(body, "max_infer_iters", 1, 100)?.unwrap_or(default_iters),
        include,
        metadata,
        truncation,
        guardrails: guardrails(body)?,
    })
}
