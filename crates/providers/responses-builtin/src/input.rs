//! Input items: checked and given ids as they arrive, and turned into the OpenAI chat messages
//! the model reads.

use std::collections::HashSet;

use llama_stack_core::Result;
use serde_json::{Map, Value, json};

use crate::request::field_error;
use crate::store::new_id;

const ITEM_TYPES: &str = "message, function_call, function_call_output, mcp_approval_response, mcp_approval_request, mcp_call, mcp_list_tools, file_search_call, web_search_call, reasoning";

fn at(index: usize, field: &str) -> Vec<Value> {
    vec!["input".into(), index.into(), field.into()]
}

fn required_str(
    item: &Map<String, Value>,
    index: usize,
    field: &str,
    kind: &str,
) -> Result<String> {
    match item.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(field_error(
            &at(index, field),
            format!("input[{index}] ({kind}) needs a string `{field}`"),
        )),
    }
}

/// `input` as a list of items with ids: a string is one user message.
pub(crate) fn normalize_input(input: &Value) -> Result<Vec<Value>> {
    match input {
        Value::String(text) => Ok(vec![user_message(text)]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| normalize_item(i, item))
            .collect(),
        other => Err(field_error(
            &["input".into()],
            format!("input must be a string or a list of input items, got {other}"),
        )),
    }
}

pub(crate) fn user_message(text: &str) -> Value {
    json!({
        "type": "message",
        "id": new_id("msg"),
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    })
}

fn normalize_item(index: usize, item: &Value) -> Result<Value> {
    let Some(obj) = item.as_object() else {
        return Err(field_error(
            &["input".into(), index.into()],
            format!("input[{index}] must be an object, got {item}"),
        ));
    };
    let mut out = obj.clone();
    let kind = match obj.get("type") {
        None if obj.contains_key("role") => "message".to_string(),
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(field_error(
                &at(index, "type"),
                format!("input[{index}] needs a `type`, one of {ITEM_TYPES}"),
            ));
        }
    };
    out.insert("type".into(), json!(kind));
    let prefix = match kind.as_str() {
        "message" => {
            normalize_message(index, &mut out)?;
            "msg"
        }
        "function_call" => {
            required_str(obj, index, "call_id", &kind)?;
            required_str(obj, index, "name", &kind)?;
            match obj.get("arguments") {
                Some(Value::String(_)) => {}
                Some(Value::Object(_)) => {
                    out.insert("arguments".into(), json!(obj["arguments"].to_string()));
                }
                _ => {
                    return Err(field_error(
                        &at(index, "arguments"),
                        format!("input[{index}] (function_call) needs `arguments`, a JSON string"),
                    ));
                }
            }
            out.entry("status").or_insert(json!("completed"));
            "fc"
        }
        "function_call_output" => {
            required_str(obj, index, "call_id", &kind)?;
            match obj.get("output") {
                Some(Value::String(_)) => {}
                Some(Value::Array(parts)) => {
                    out.insert("output".into(), json!(parts_text(parts)));
                }
                _ => {
                    return Err(field_error(
                        &at(index, "output"),
                        format!(
                            "input[{index}] (function_call_output) needs `output`, the function's result as a string"
                        ),
                    ));
                }
            }
            "fco"
        }
        "mcp_approval_response" => {
            required_str(obj, index, "approval_request_id", &kind)?;
            if !obj.get("approve").is_some_and(Value::is_boolean) {
                return Err(field_error(
                    &at(index, "approve"),
                    format!(
                        "input[{index}] (mcp_approval_response) needs `approve`: true or false"
                    ),
                ));
            }
            "mcpa"
        }
        "mcp_approval_request"
        | "mcp_call"
        | "mcp_list_tools"
        | "file_search_call"
        | "web_search_call"
        | "reasoning" => "item",
        "item_reference" => {
            return Err(field_error(
                &at(index, "type"),
                format!(
                    "input[{index}] is an item_reference, which this server does not resolve: send the item itself, or continue with previous_response_id or conversation"
                ),
            ));
        }
        other => {
            return Err(field_error(
                &at(index, "type"),
                format!("input[{index}] has unknown type '{other}'; expected one of {ITEM_TYPES}"),
            ));
        }
    };
    if !out.get("id").is_some_and(Value::is_string) {
        out.insert("id".into(), json!(new_id(prefix)));
    }
    Ok(Value::Object(out))
}

/// A message item with its content as a list of parts.
fn normalize_message(index: usize, out: &mut Map<String, Value>) -> Result<()> {
    let role = match out.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "system" | "developer" | "assistant")) => r.to_string(),
        other => {
            return Err(field_error(
                &at(index, "role"),
                format!(
                    "input[{index}].role must be user, system, developer or assistant, got {}",
                    other
                        .map(|r| format!("'{r}'"))
                        .unwrap_or_else(|| "nothing".into())
                ),
            ));
        }
    };
    let text_type = if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    };
    let parts = match out.get("content") {
        Some(Value::String(text)) => vec![text_part(text_type, text)],
        Some(Value::Array(parts)) => {
            let mut checked = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                checked.push(normalize_part(index, j, part)?);
            }
            checked
        }
        _ => {
            return Err(field_error(
                &at(index, "content"),
                format!(
                    "input[{index}] (message) needs `content`: a string or a list of content parts"
                ),
            ));
        }
    };
    out.insert("content".into(), Value::Array(parts));
    out.entry("status").or_insert(json!("completed"));
    Ok(())
}

fn text_part(kind: &str, text: &str) -> Value {
    if kind == "output_text" {
        json!({"type": kind, "text": text, "annotations": []})
    } else {
        json!({"type": kind, "text": text})
    }
}

fn normalize_part(index: usize, j: usize, part: &Value) -> Result<Value> {
    let path = || vec!["input".into(), index.into(), "content".into(), j.into()];
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "input_text" | "output_text" | "text" => match part.get("text") {
            Some(Value::String(t)) => {
                let kind = if kind == "text" { "input_text" } else { kind };
                let mut p = part.as_object().cloned().unwrap_or_default();
                p.insert("type".into(), json!(kind));
                if kind == "output_text" {
                    p.entry("annotations").or_insert(json!([]));
                }
                let _ = t;
                Ok(Value::Object(p))
            }
            _ => Err(field_error(
                &path(),
                format!("input[{index}].content[{j}] needs a string `text`"),
            )),
        },
        "refusal" => Ok(part.clone()),
        "input_image" => match part.get("image_url") {
            Some(Value::String(_)) => Ok(part.clone()),
            _ if part.get("file_id").is_some() => Err(field_error(
                &path(),
                format!(
                    "input[{index}].content[{j}]: images by file_id are not supported; give image_url (an http(s) or data: URL)"
                ),
            )),
            _ => Err(field_error(
                &path(),
                format!("input[{index}].content[{j}] (input_image) needs an `image_url`"),
            )),
        },
        "input_file" => Err(field_error(
            &path(),
            format!(
                "input[{index}].content[{j}]: input_file is not supported; attach the file to a vector store and use the file_search tool"
            ),
        )),
        other => Err(field_error(
            &path(),
            format!(
                "input[{index}].content[{j}] has unknown type '{other}'; expected input_text, input_image, output_text or refusal"
            ),
        )),
    }
}

fn parts_text(parts: &[Value]) -> String {
    parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("")
}

/// The text of a message item's content.
pub(crate) fn message_text(item: &Value) -> String {
    match item.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| {
                p.get("text")
                    .or_else(|| p.get("refusal"))
                    .and_then(Value::as_str)
            })
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The ids of the tool calls `messages` made, which a `function_call_output` may answer.
pub(crate) fn tool_call_ids(messages: &[Value]) -> HashSet<String> {
    messages
        .iter()
        .filter_map(|m| m.get("tool_calls").and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("id").and_then(Value::as_str).map(str::to_string))
        .collect()
}

fn tool_call(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

/// Adds a tool call to the assistant message at the end of `messages`, or starts one.
pub(crate) fn push_tool_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(last) = messages.last_mut()
        && last["role"] == "assistant"
        && let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut)
    {
        calls.push(call);
        return;
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// The chat messages `items` amount to, after `known_calls` (the tool calls already made).
/// A `function_call_output` must answer a call made before it.
pub(crate) fn items_to_messages(
    items: &[Value],
    known_calls: &mut HashSet<String>,
) -> Result<Vec<Value>> {
    let mut messages: Vec<Value> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item["type"].as_str().unwrap_or_default() {
            "message" => messages.push(message_to_chat(item)),
            "function_call" => {
                let id = item["call_id"].as_str().unwrap_or_default();
                known_calls.insert(id.to_string());
                push_tool_call(
                    &mut messages,
                    tool_call(
                        id,
                        item["name"].as_str().unwrap_or_default(),
                        item["arguments"].as_str().unwrap_or("{}"),
                    ),
                );
            }
            "function_call_output" => {
                let id = item["call_id"].as_str().unwrap_or_default();
                if !known_calls.contains(id) {
                    return Err(field_error(
                        &at(index, "call_id"),
                        format!(
                            "input[{index}] answers call_id '{id}', but no function call with that id was made; continue the response that made it (previous_response_id or conversation), or send its function_call item first"
                        ),
                    ));
                }
                messages.push(json!({
                    "role": "tool", "tool_call_id": id,
                    "content": item["output"].as_str().unwrap_or_default(),
                }));
            }
            "mcp_call" => {
                let id = item["id"].as_str().unwrap_or_default();
                known_calls.insert(id.to_string());
                push_tool_call(
                    &mut messages,
                    tool_call(
                        id,
                        item["name"].as_str().unwrap_or_default(),
                        item["arguments"].as_str().unwrap_or("{}"),
                    ),
                );
                let output = item["output"]
                    .as_str()
                    .or_else(|| item["error"].as_str())
                    .unwrap_or_default();
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
            }
            // Approval responses are acted on before inference; listings, searches and
            // reasoning left their mark in the messages that followed them.
            _ => {}
        }
    }
    Ok(messages)
}

fn message_to_chat(item: &Value) -> Value {
    let role = item["role"].as_str().unwrap_or("user");
    match role {
        "system" | "developer" => json!({"role": "system", "content": message_text(item)}),
        "assistant" => json!({"role": "assistant", "content": message_text(item)}),
        _ => {
            let parts = item["content"].as_array().cloned().unwrap_or_default();
            if parts.iter().all(|p| p["type"] != "input_image") {
                return json!({"role": "user", "content": message_text(item)});
            }
            let parts: Vec<Value> = parts
                .iter()
                .map(|p| match p["type"].as_str() {
                    Some("input_image") => {
                        json!({"type": "image_url", "image_url": {"url": p["image_url"]}})
                    }
                    _ => json!({"type": "text", "text": p["text"].as_str().unwrap_or_default()}),
                })
                .collect();
            json!({"role": "user", "content": parts})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_one_user_message() {
        let items = normalize_input(&json!("hi")).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["role"], "user");
        assert_eq!(items[0]["content"][0]["type"], "input_text");
        assert!(items[0]["id"].as_str().unwrap().starts_with("msg_"));
    }

    #[test]
    fn bad_items_name_their_field() {
        let err =
            normalize_input(&json!([{"type": "function_call_output", "output": "x"}])).unwrap_err();
        assert_eq!(
            err.location().unwrap(),
            &[json!("body"), json!("input"), json!(0), json!("call_id")]
        );
        let err = normalize_input(&json!([{"type": "bogus"}])).unwrap_err();
        assert!(
            err.message().contains("unknown type 'bogus'"),
            "{}",
            err.message()
        );
        let err = normalize_input(&json!([{"role": "robot", "content": "x"}])).unwrap_err();
        assert!(err.message().contains("role"), "{}", err.message());
    }

    #[test]
    fn outputs_must_answer_a_known_call() {
        let items = normalize_input(&json!([
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ]))
        .unwrap();
        let messages = items_to_messages(&items, &mut HashSet::new()).unwrap();
        assert_eq!(messages[0]["tool_calls"][0]["id"], "c1");
        assert_eq!(messages[1]["role"], "tool");
        let lone = normalize_input(&json!([
            {"type": "function_call_output", "call_id": "c9", "output": "42"}
        ]))
        .unwrap();
        let err = items_to_messages(&lone, &mut HashSet::new()).unwrap_err();
        assert!(err.message().contains("c9"), "{}", err.message());
        let mut known = HashSet::from(["c9".to_string()]);
        assert!(items_to_messages(&lone, &mut known).is_ok());
    }

    #[test]
    fn images_become_image_url_parts() {
        let items = normalize_input(&json!([{"role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
        ]}]))
        .unwrap();
        let messages = items_to_messages(&items, &mut HashSet::new()).unwrap();
        assert_eq!(messages[0]["content"][1]["type"], "image_url");
        assert_eq!(
            messages[0]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAAA"
        );
    }
}
