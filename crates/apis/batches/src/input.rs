//! Validation of a batch's input file, every line before any runs: a file with any bad line
//! fails the batch with one error per problem (its line and field), as OpenAI and upstream do,
//! so that no half of a batch runs on a file the client must fix anyway.

use std::collections::{BTreeSet, HashSet};

use serde_json::{Map, Value};

use crate::object::BatchError;

/// Most requests one batch may hold, as OpenAI allows.
pub const MAX_LINES: usize = 50_000;

/// One request of the input file that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLine {
    /// 1-based, counting blank lines, as errors report it.
    pub line: u64,
    pub custom_id: String,
    pub url: String,
    pub body: Map<String, Value>,
}

/// Lines that are not blank, with their 1-based numbers.
fn lines(text: &str) -> impl Iterator<Item = (u64, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// The distinct `body.model` values of the file, to look up before [`validate_input`].
pub fn referenced_models(content: &[u8]) -> BTreeSet<String> {
    let text = String::from_utf8_lossy(content);
    lines(&text)
        .filter_map(|(_, l)| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["body"]["model"].as_str().map(str::to_string))
        .collect()
}

fn type_name(param: &str) -> String {
    match param {
        "url" => "URL".into(),
        other => {
            let mut chars = other.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                .unwrap_or_default()
        }
    }
}

/// A field a line needs: its name, its check, and how to say what it must be.
type Required = (&'static str, fn(&Value) -> bool, &'static str);

/// The body fields each endpoint needs.
fn required_body(endpoint: &str) -> &'static [Required] {
    match endpoint {
        "/v1/chat/completions" => &[
            ("model", Value::is_string, "a string"),
            ("messages", Value::is_array, "an array"),
        ],
        "/v1/completions" => &[
            ("model", Value::is_string, "a string"),
            (
                "prompt",
                |v| v.is_string() || v.is_array(),
                "a string or an array",
            ),
        ],
        "/v1/responses" => &[
            ("model", Value::is_string, "a string"),
            (
                "input",
                |v| v.is_string() || v.is_array(),
                "a string or an array of items",
            ),
        ],
        _ => &[
            ("model", Value::is_string, "a string"),
            (
                "input",
                |v| v.is_string() || v.is_array(),
                "a string or array of strings",
            ),
        ],
    }
}

/// Checks every line of `content` against the batch's `endpoint`; `model_exists` says whether
/// a `body.model` is served. Answers the problems (ordered by line) and the good requests.
pub fn validate_input(
    content: &[u8],
    endpoint: &str,
    model_exists: &dyn Fn(&str) -> bool,
) -> (Vec<BatchError>, Vec<BatchLine>) {
    let Ok(text) = std::str::from_utf8(content) else {
        return (
            vec![
                BatchError::new(
                    "invalid_request",
                    "The input file is not UTF-8 text: it must be JSONL, one JSON object per line",
                )
                .param("input_file_id"),
            ],
            Vec::new(),
        );
    };
    let mut errors = Vec::new();
    let mut requests = Vec::new();
    let mut custom_ids = HashSet::new();
    let mut count = 0usize;
    for (number, line) in lines(text) {
        count += 1;
        if count > MAX_LINES {
            errors.push(
                BatchError::new(
                    "too_many_requests",
                    format!("A batch holds at most {MAX_LINES} requests; split the file"),
                )
                .at(number),
            );
            break;
        }
        let request = match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                errors.push(
                    BatchError::new(
                        "invalid_request",
                        "Each line must be a JSON dictionary object",
                    )
                    .at(number),
                );
                continue;
            }
            Err(_) => {
                errors.push(
                    BatchError::new(
                        "invalid_json_line",
                        "This line is not parseable as valid JSON.",
                    )
                    .at(number),
                );
                continue;
            }
        };
        let before = errors.len();
        let fields: [Required; 4] = [
            ("custom_id", Value::is_string, "string"),
            ("method", Value::is_string, "string"),
            ("url", Value::is_string, "string"),
            ("body", Value::is_object, "JSON dictionary object"),
        ];
        for (param, check, what) in fields {
            match request.get(param) {
                None => errors.push(
                    BatchError::new(
                        "missing_required_parameter",
                        format!("Missing required parameter: {param}"),
                    )
                    .at(number)
                    .param(param),
                ),
                Some(v) if !check(v) => errors.push(
                    BatchError::new(
                        "invalid_request",
                        format!("{} must be a {what}", type_name(param)),
                    )
                    .at(number)
                    .param(param),
                ),
                Some(_) => {}
            }
        }
        if let Some(Value::String(method)) = request.get("method")
            && !method.eq_ignore_ascii_case("POST")
        {
            errors.push(
                BatchError::new(
                    "invalid_request",
                    format!("Method must be POST, got '{method}'"),
                )
                .at(number)
                .param("method"),
            );
        }
        if let Some(Value::String(url)) = request.get("url")
            && url != endpoint
        {
            errors.push(
                BatchError::new(
                    "invalid_url",
                    "URL provided for this request does not match the batch endpoint",
                )
                .at(number)
                .param("url"),
            );
        }
        if let Some(Value::String(id)) = request.get("custom_id")
            && !custom_ids.insert(id.clone())
        {
            errors.push(
                BatchError::new(
                    "duplicate_custom_id",
                    format!("The custom_id '{id}' is used by an earlier line; each request needs its own"),
                )
                .at(number)
                .param("custom_id"),
            );
        }
        if let Some(Value::Object(body)) = request.get("body") {
            if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
                errors.push(
                    BatchError::new(
                        "streaming_unsupported",
                        "Streaming is not supported in batch processing",
                    )
                    .at(number)
                    .param("body.stream"),
                );
            }
            if body
                .get("background")
                .and_then(Value::as_bool)
                .unwrap_or(false)
            {
                errors.push(
                    BatchError::new(
                        "invalid_request",
                        "background is not supported in batch processing: a batch already runs in the background",
                    )
                    .at(number)
                    .param("body.background"),
                );
            }
            for (param, check, what) in required_body(endpoint) {
                let message = match body.get(*param) {
                    None => format!("{} parameter is required", type_name(param)),
                    Some(v) if !check(v) => format!("{} must be {what}", type_name(param)),
                    Some(_) => continue,
                };
                errors.push(
                    BatchError::new("invalid_request", message)
                        .at(number)
                        .param(&format!("body.{param}")),
                );
            }
            if let Some(Value::String(model)) = body.get("model")
                && !model_exists(model)
            {
                errors.push(
                    BatchError::new(
                        "model_not_found",
                        format!("Model '{model}' does not exist or is not supported"),
                    )
                    .at(number)
                    .param("body.model"),
                );
            }
        }
        if errors.len() == before {
            let text = |field: &str| request[field].as_str().unwrap_or_default().to_string();
            requests.push(BatchLine {
                line: number,
                custom_id: text("custom_id"),
                url: text("url"),
                body: request["body"].as_object().cloned().unwrap_or_default(),
            });
        }
    }
    if count == 0 {
        errors.push(
            BatchError::new(
                "empty_file",
                "The input file holds no requests: it must be JSONL, one request object per line",
            )
            .param("input_file_id"),
        );
    }
    (errors, requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHAT: &str = "/v1/chat/completions";

    fn line(v: Value) -> String {
        v.to_string()
    }

    fn known(model: &str) -> bool {
        model == "m"
    }

    fn chat(id: &str) -> Value {
        json!({"custom_id": id, "method": "POST", "url": CHAT,
               "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]}})
    }

    #[test]
    fn good_lines_become_requests_numbered_by_file_line() {
        let file = format!("{}\n\n{}\n", line(chat("a")), line(chat("b")));
        let (errors, requests) = validate_input(file.as_bytes(), CHAT, &known);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].line, requests[1].line), (1, 3));
        assert_eq!(requests[1].custom_id, "b");
        assert_eq!(
            referenced_models(file.as_bytes())
                .into_iter()
                .collect::<Vec<_>>(),
            vec!["m"]
        );
    }

    #[test]
    fn each_missing_field_is_reported_on_its_line() {
        let mut lines = Vec::new();
        for field in ["custom_id", "method", "url", "body"] {
            let mut v = chat(field);
            v.as_object_mut().unwrap().remove(field);
            lines.push(line(v));
        }
        let (errors, requests) = validate_input(lines.join("\n").as_bytes(), CHAT, &known);
        assert!(requests.is_empty());
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.code.as_str(), e.line, e.param.as_deref()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("missing_required_parameter", Some(1), Some("custom_id")),
                ("missing_required_parameter", Some(2), Some("method")),
                ("missing_required_parameter", Some(3), Some("url")),
                ("missing_required_parameter", Some(4), Some("body")),
            ]
        );
    }

    #[test]
    fn bad_json_streaming_urls_models_and_duplicates() {
        let mut stream = chat("s");
        stream["body"]["stream"] = json!(true);
        let mut other_url = chat("u");
        other_url["url"] = json!("/v1/embeddings");
        let mut unknown = chat("x");
        unknown["body"]["model"] = json!("nope");
        let mut no_messages = chat("n");
        no_messages["body"]
            .as_object_mut()
            .unwrap()
            .remove("messages");
        let file = [
            "{not json".to_string(),
            line(stream),
            line(other_url),
            line(unknown),
            line(chat("a")),
            line(chat("a")),
            line(no_messages),
            "[1, 2]".to_string(),
        ]
        .join("\n");
        let (errors, requests) = validate_input(file.as_bytes(), CHAT, &known);
        let found: Vec<_> = errors.iter().map(|e| (e.code.as_str(), e.line)).collect();
        assert_eq!(
            found,
            vec![
                ("invalid_json_line", Some(1)),
                ("streaming_unsupported", Some(2)),
                ("invalid_url", Some(3)),
                ("model_not_found", Some(4)),
                ("duplicate_custom_id", Some(6)),
                ("invalid_request", Some(7)),
                ("invalid_request", Some(8)),
            ]
        );
        assert_eq!(errors[5].param.as_deref(), Some("body.messages"));
        assert!(errors[5].message.contains("Messages parameter is required"));
        assert_eq!(requests.iter().map(|r| r.line).collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn empty_and_binary_files_are_refused() {
        let (errors, _) = validate_input(b"\n  \n", CHAT, &known);
        assert_eq!(errors[0].code, "empty_file");
        let (errors, _) = validate_input(&[0xff, 0xfe, 0x00], CHAT, &known);
        assert_eq!(errors[0].param.as_deref(), Some("input_file_id"));
    }

    #[test]
    fn embeddings_take_a_string_or_list_input() {
        let ok = json!({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                        "body": {"model": "m", "input": ["a", "b"]}});
        let bad = json!({"custom_id": "f", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "m", "input": 3}});
        let file = format!("{}\n{}", line(ok), line(bad));
        let (errors, requests) = validate_input(file.as_bytes(), "/v1/embeddings", &known);
        assert_eq!(requests.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .message
                .contains("Input must be a string or array of strings")
        );
    }
}
