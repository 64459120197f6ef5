//! Reading tool calls out of generated text, and writing them back into a
//! prompt when they are part of the history.

use std::sync::OnceLock;

use llama_stack_types::{StopReason, ToolCall};
use regex::Regex;
use serde_json::{Map, Value, json};

use crate::json_text::python_dumps;
use crate::python_literal::parse_call_list;

/// Tools the models were trained to call with `name.call(query="...")` (or,
/// for the code interpreter, with raw code after `<|python_tag|>`).
pub const BUILTIN_TOOLS: [&str; 4] = [
    "brave_search",
    "wolfram_alpha",
    "photogen",
    "code_interpreter",
];
pub const CODE_INTERPRETER: &str = "code_interpreter";

const PYTHON_TAG_TEXT: &str = "<|python_tag|>";
const EOT_TEXT: &str = "<|eot_id|>";
const EOM_TEXT: &str = "<|eom_id|>";
const ASSISTANT_HEADER_TEXT: &str = "<|start_header_id|>assistant<|end_header_id|>\n\n";

pub fn is_builtin_tool(name: &str) -> bool {
    BUILTIN_TOOLS.contains(&name)
}

fn function_tag_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"<function=(?P<name>[^}]+)>(?P<args>\{.*?\})").expect("valid regex")
    })
}

fn builtin_call_pattern() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r#"\b(?P<name>\w+)\.call\(query="(?P<query>[^"]*)"\)"#).expect("valid regex")
    })
}

/// An assistant reply taken apart: what to show as text, why it stopped (when
/// the text itself ended in a stop token) and the tool call it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAssistantMessage {
    /// Empty when a tool call was found, as the call replaces the text.
    pub content: String,
    pub stop_reason: Option<StopReason>,
    pub tool_calls: Vec<ToolCall>,
}

/// Decodes generated text that may still carry the assistant header, a leading
/// `<|python_tag|>` and a trailing `<|eot_id|>`/`<|eom_id|>`.
pub fn decode_assistant_content(text: &str) -> DecodedAssistantMessage {
    let mut content = text.trim_matches(' ');
    content = content
        .strip_prefix(ASSISTANT_HEADER_TEXT)
        .unwrap_or(content);
    let had_python_tag = content.starts_with(PYTHON_TAG_TEXT);
    content = content.strip_prefix(PYTHON_TAG_TEXT).unwrap_or(content);
    let mut stop_reason = None;
    if let Some(rest) = content.strip_suffix(EOT_TEXT) {
        content = rest;
        stop_reason = Some(StopReason::EndOfTurn);
    } else if let Some(rest) = content.strip_suffix(EOM_TEXT) {
        content = rest;
        stop_reason = Some(StopReason::EndOfMessage);
    }
    let tool_calls = parse_tool_calls(content, had_python_tag);
    DecodedAssistantMessage {
        content: if tool_calls.is_empty() {
            content.to_string()
        } else {
            String::new()
        },
        stop_reason,
        tool_calls,
    }
}

/// The tool call in `text` (already stripped of `<|python_tag|>` and the stop
/// token), trying in order: `<function=...>` tag, a JSON object, a Python-style
/// call list (only its first call is used, as the reference server does), a
/// builtin `name.call(query="...")`, and finally, if the reply began with
/// `<|python_tag|>`, the whole text as code for the code interpreter.
/// Returns an empty vector when the text is a plain answer.
pub fn parse_tool_calls(text: &str, had_python_tag: bool) -> Vec<ToolCall> {
    let found = match parse_custom_call(text) {
        Some((name, args)) => Some(builtin_in_custom_form(name, args)),
        None => builtin_call_pattern().captures(text).map(|c| {
            let query = c["query"].to_string();
            (c["name"].to_string(), json!({ "query": query }))
        }),
    };
    let found = found.or_else(|| {
        had_python_tag.then(|| (CODE_INTERPRETER.to_string(), json!({ "code": text })))
    });
    found
        .map(|(tool_name, arguments)| vec![new_tool_call(tool_name, arguments)])
        .unwrap_or_default()
}

/// A call with a fresh id and `arguments_json` filled in.
pub fn new_tool_call(tool_name: String, arguments: Value) -> ToolCall {
    ToolCall {
        call_id: uuid::Uuid::new_v4().to_string(),
        arguments_json: Some(python_dumps(&arguments)),
        tool_name,
        arguments,
    }
}

/// The first custom-format call. Like the reference parser, a `<function=...>`
/// tag whose arguments are unreadable rules out the JSON and list forms (the
/// builtin form is still tried by the caller).
fn parse_custom_call(text: &str) -> Option<(String, Value)> {
    if let Some(caps) = function_tag_pattern().captures(text) {
        let args_start = caps.name("args").expect("group always present").start();
        let args = function_tag_arguments(&text[args_start..], caps["args"].len())?;
        return Some((caps["name"].to_string(), args));
    }
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text) {
        return json_call(object);
    }
    let mut calls = parse_call_list(text)?;
    let (name, args) = calls.swap_remove(0);
    Some((name, Value::Object(args)))
}

/// The JSON after `<function=name>`. The tag's pattern stops at the first
/// `}`, which cuts nested objects short, so later `}`s are tried as the end
/// too. Models often write single-quoted pseudo-JSON; that is read by
/// swapping the quotes, but only after the text failed as real JSON, since the
/// swap breaks apostrophes inside strings.
fn function_tag_arguments(from_brace: &str, shortest: usize) -> Option<Value> {
    let ends = from_brace
        .char_indices()
        .filter(|&(i, c)| c == '}' && i + 1 >= shortest)
        .map(|(i, _)| i + 1);
    for end in ends {
        let candidate = &from_brace[..end];
        let parsed = serde_json::from_str::<Value>(candidate)
            .or_else(|_| serde_json::from_str::<Value>(&candidate.replace('\'', "\"")));
        if let Ok(value @ Value::Object(_)) = parsed {
            return Some(value);
        }
    }
    None
}

/// `{"type": "function", "name": ..., "parameters": {...}}`, or any object
/// with a name and parameters. `arguments` is taken in place of `parameters`
/// because that is the OpenAI spelling models sometimes drift to.
fn json_call(mut object: Map<String, Value>) -> Option<(String, Value)> {
    let is_function = object.get("type").and_then(Value::as_str) == Some("function");
    let args = object
        .remove("parameters")
        .or_else(|| object.remove("arguments"));
    let name = match object.remove("name") {
        Some(Value::String(name)) => name,
        _ => return None,
    };
    match args {
        Some(args) => Some((name, args)),
        None if is_function => Some((name, Value::Object(Map::new()))),
        None => None,
    }
}

/// Models sometimes call a builtin tool in the custom format; the builtin
/// expects its single argument under `query` (or `code`).
fn builtin_in_custom_form(name: String, args: Value) -> (String, Value) {
    if !is_builtin_tool(&name) {
        return (name, args);
    }
    let first = match &args {
        Value::Object(map) => map.values().next().cloned(),
        _ => None,
    };
    match first {
        Some(value) if name == CODE_INTERPRETER => (name, json!({ "code": value })),
        Some(value) => (name, json!({ "query": value })),
        None => (name, args),
    }
}

/// A call as the model would have written it, for putting an earlier
/// assistant turn back into the prompt. `format` is `json`, `function_tag` or
/// `python_list`; anything else is treated as `json`, the Llama 3.1 default.
pub fn encode_tool_call(call: &ToolCall, format: &str) -> String {
    let args = arguments_value(&call.arguments);
    let text_arg = |key: &str| match args.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let name = call.tool_name.as_str();
    match name {
        CODE_INTERPRETER => text_arg("code"),
        _ if is_builtin_tool(name) => format!("{name}.call(query=\"{}\")", text_arg("query")),
        _ => match format {
            "function_tag" => format!("<function={name}>{}</function>", python_dumps(&args)),
            "python_list" => {
                let pairs = match &args {
                    Value::Object(map) => map
                        .iter()
                        .map(|(k, v)| format!("{k}={}", python_literal(v)))
                        .collect::<Vec<_>>(),
                    _ => Vec::new(),
                };
                format!("[{name}({})]", pairs.join(", "))
            }
            // Built by hand because the map type would sort the keys, and the
            // models emit `type` first.
            _ => format!(
                "{{\"type\": \"function\", \"name\": {}, \"parameters\": {}}}",
                python_dumps(&Value::String(name.to_string())),
                python_dumps(&args)
            ),
        },
    }
}

/// Some providers hand arguments over as a JSON string; unwrap it so the
/// prompt shows the object the model originally wrote.
fn arguments_value(arguments: &Value) -> Value {
    match arguments {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| arguments.clone()),
        other => other.clone(),
    }
}

fn python_literal(value: &Value) -> String {
    match value {
        Value::Null => "None".to_string(),
        Value::Bool(true) => "True".to_string(),
        Value::Bool(false) => "False".to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => python_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", python_string(k), python_literal(v)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

fn python_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[path = "tool_calls_tests.rs"]
mod tests;
