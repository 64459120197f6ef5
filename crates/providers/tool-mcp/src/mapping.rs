//! MCP tools and results in the stack's terms, and the per-request headers a client sends for
//! an MCP server.

use llama_stack_core::Error;
use llama_stack_types::{ContentItem, ImageContent, ToolDef, ToolInvocationResult, ToolParameter};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents, Tool};
use serde_json::{Value, json};

/// A tool of the server at `uri` as a [`ToolDef`]; upstream records the endpoint in the
/// metadata.
pub(crate) fn tool_def(tool: &Tool, uri: &str) -> ToolDef {
    let schema = &tool.input_schema;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let parameters = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| ToolParameter {
                    name: name.clone(),
                    parameter_type: parameter_type(property),
                    description: property
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    required: required.contains(&name.as_str()),
                    default: property.get("default").cloned(),
                })
                .collect()
        })
        .unwrap_or_default();
    ToolDef {
        name: tool.name.to_string(),
        description: tool.description.as_deref().unwrap_or_default().to_string(),
        parameters,
        metadata: Some(json!({ "endpoint": uri })),
    }
}

/// The JSON schema type of a property; `["integer", "null"]` (an optional value) is `integer`.
/// A property without one (`anyOf`, `$ref`) is `string`, as upstream has it.
fn parameter_type(property: &Value) -> String {
    match property.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string")
            .to_string(),
        _ => "string".to_string(),
    }
}

/// Whether the tool's input schema declares `name` as a parameter.
pub(crate) fn declares_parameter(tool: &Tool, name: &str) -> bool {
    tool.input_schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|properties| properties.contains_key(name))
}

/// A `tools/call` result as the stack's result: the content as a list of content items, and a
/// result the server flags as an error also as `error_message` with `error_code` 1.
pub(crate) fn invocation_result(tool: &str, result: CallToolResult) -> ToolInvocationResult {
    let mut items: Vec<ContentItem> = result.content.iter().filter_map(content_item).collect();
    if items.is_empty() {
        // A server may answer with structured content alone.
        if let Some(structured) = &result.structured_content {
            items.push(ContentItem::Text {
                text: structured.to_string(),
            });
        }
    }
    let is_error = result.is_error == Some(true);
    let error_message = is_error.then(|| {
        let text: Vec<&str> = items
            .iter()
            .filter_map(|item| match item {
                ContentItem::Text { text } => Some(text.as_str()),
                ContentItem::Image { .. } => None,
            })
            .collect();
        if text.is_empty() {
            format!("Tool '{tool}' reported an error")
        } else {
            text.join("\n")
        }
    });
    ToolInvocationResult {
        content: Some(serde_json::to_value(items).unwrap_or(Value::Array(vec![]))),
        error_message,
        error_code: Some(if is_error { 1 } else { 0 }),
        metadata: None,
    }
}

fn content_item(block: &ContentBlock) -> Option<ContentItem> {
    match block {
        ContentBlock::Text(text) => Some(ContentItem::Text {
            text: text.text.clone(),
        }),
        ContentBlock::Image(image) => Some(image_item(&image.data)),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { text, .. } => {
                Some(ContentItem::Text { text: text.clone() })
            }
            ResourceContents::BlobResourceContents {
                blob, mime_type, ..
            } if mime_type
                .as_deref()
                .is_some_and(|m| m.starts_with("image/")) =>
            {
                Some(image_item(blob))
            }
            ResourceContents::BlobResourceContents { uri, mime_type, .. } => {
                tracing::warn!(%uri, mime_type = mime_type.as_deref().unwrap_or("unknown"), "Dropping a binary MCP resource from a tool result");
                None
            }
            _ => {
                tracing::warn!("Dropping an MCP resource of an unknown kind from a tool result");
                None
            }
        },
        // A link is text the model can act on.
        ContentBlock::ResourceLink(link) => Some(ContentItem::Text {
            text: match &link.description {
                Some(description) => format!("{} ({}): {description}", link.name, link.uri),
                None => format!("{} ({})", link.name, link.uri),
            },
        }),
        ContentBlock::Audio(audio) => {
            tracing::warn!(mime_type = %audio.mime_type, "Dropping audio from an MCP tool result");
            None
        }
        _ => {
            tracing::warn!("Dropping MCP content of an unknown kind from a tool result");
            None
        }
    }
}

fn image_item(base64: &str) -> ContentItem {
    ContentItem::Image {
        image: ImageContent {
            url: None,
            data: Some(base64.to_string()),
        },
    }
}

/// The headers `mcp_headers` (from the request's provider data) gives for the server at `uri`:
/// `{"<uri>": {"<header>": "<value>"}}`, as upstream takes them; a list of `"Name: value"`
/// strings, as older clients sent, is read too. URIs match on host and path, as upstream's do.
pub(crate) fn request_headers(mcp_headers: Option<&Value>, uri: &str) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    let Some(mcp_headers) = mcp_headers else {
        return Ok(headers);
    };
    let Some(by_uri) = mcp_headers.as_object() else {
        return Err(Error::invalid(
            "provider data mcp_headers must be an object of {\"<mcp endpoint uri>\": {\"<header>\": \"<value>\"}}",
        ));
    };
    let wanted = canonical_uri(uri);
    for (endpoint, values) in by_uri {
        if canonical_uri(endpoint) != wanted {
            continue;
        }
        let pairs: Vec<(String, String)> = match values {
            Value::Object(map) => map
                .iter()
                .map(|(name, value)| match value {
                    Value::String(s) => Ok((name.clone(), s.clone())),
                    _ => Err(bad_header(endpoint, name)),
                })
                .collect::<Result<_, _>>()?,
            Value::Array(lines) => lines
                .iter()
                .map(|line| {
                    line.as_str()
                        .and_then(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                        .ok_or_else(|| bad_header(endpoint, "(list entry)"))
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(bad_header(endpoint, "(all)")),
        };
        for (name, value) in pairs {
            let header_name = HeaderName::try_from(name.as_str());
            let header_value = HeaderValue::try_from(value);
            match (header_name, header_value) {
                (Ok(n), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.insert(n, v);
                }
                _ => return Err(bad_header(endpoint, &name)),
            }
        }
    }
    Ok(headers)
}

// Values are credentials: the message names the header only.
fn bad_header(endpoint: &str, name: &str) -> Error {
    Error::invalid(format!(
        "provider data mcp_headers[\"{endpoint}\"] header {name} is not a valid HTTP header; give each as \"<name>\": \"<value>\""
    ))
}

fn canonical_uri(uri: &str) -> String {
    match reqwest::Url::parse(uri) {
        Ok(url) => {
            let host = url.host_str().unwrap_or_default();
            let netloc = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            format!("{netloc}/{}", url.path())
        }
        Err(_) => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_on_host_and_path() {
        let data = json!({
            "https://mcp.example.com/sse": {"Authorization": "Bearer t1"},
            "http://other.example.com/sse": {"Authorization": "Bearer t2"},
        });
        let h = request_headers(Some(&data), "http://mcp.example.com/sse").unwrap();
        assert_eq!(h["authorization"], "Bearer t1");
        assert!(h["authorization"].is_sensitive());
        let none = request_headers(Some(&data), "http://mcp.example.com/mcp").unwrap();
        assert!(none.is_empty());
        assert!(request_headers(None, "http://x/y").unwrap().is_empty());
    }

    #[test]
    fn header_lists_are_read_and_bad_headers_refused() {
        let data = json!({"http://h:1/mcp": ["X-Api-Key: k", "X-Team:  t "]});
        let h = request_headers(Some(&data), "http://h:1/mcp").unwrap();
        assert_eq!(
            (&h["x-api-key"], &h["x-team"]),
            (&"k".parse().unwrap(), &"t".parse().unwrap())
        );
        let bad = json!({"http://h:1/mcp": {"bad header": "secret-value"}});
        let err = request_headers(Some(&bad), "http://h:1/mcp").unwrap_err();
        assert!(err.message().contains("bad header") && !err.message().contains("secret-value"));
        assert!(request_headers(Some(&json!(["x"])), "http://h:1/mcp").is_err());
    }

    #[test]
    fn optional_types_keep_their_type() {
        assert_eq!(
            parameter_type(&json!({"type": ["integer", "null"]})),
            "integer"
        );
        assert_eq!(
            parameter_type(&json!({"anyOf": [{"type": "integer"}]})),
            "string"
        );
    }
}
