//! JSON text in the two shapes the Llama 3 formats use: Python's
//! `json.dumps` layout for tool-call arguments, and the indented layout of the
//! function lists in tool prompts.

use serde::Serialize;
use serde_json::Value;
use std::io;

/// `value` written the way Python's `json.dumps` writes it by default
/// (`", "` and `": "` separators, non-ASCII escaped), because the models saw
/// tool calls in that form during training and clients compare
/// `arguments_json` against what the reference server sends.
pub fn python_dumps(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value
        .serialize(&mut serializer)
        .expect("serialising a Value into memory cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII only")
}

struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A JSON tree whose object keys keep the order they were pushed in, which
/// `serde_json::Map` does not do in this workspace.
#[derive(Debug, Clone)]
pub enum JsonNode {
    /// Already-encoded JSON text (a string, number, bool or null).
    Raw(String),
    List(Vec<JsonNode>),
    Object(Vec<(String, JsonNode)>),
}

impl JsonNode {
    pub fn string(s: &str) -> JsonNode {
        JsonNode::Raw(serde_json::to_string(s).expect("strings always encode"))
    }

    pub fn value(v: &Value) -> JsonNode {
        JsonNode::Raw(serde_json::to_string(v).expect("values always encode"))
    }

    pub fn object<const N: usize>(entries: [(&str, JsonNode); N]) -> JsonNode {
        JsonNode::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// Indented by four spaces per level; lists of plain values stay on one
    /// line, as in the function lists of Meta's prompt templates.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(0, &mut out);
        out
    }

    fn write(&self, depth: usize, out: &mut String) {
        match self {
            JsonNode::Raw(text) => out.push_str(text),
            JsonNode::List(items) if items.iter().all(|i| matches!(i, JsonNode::Raw(_))) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write(depth, out);
                }
                out.push(']');
            }
            JsonNode::List(items) => {
                write_block(
                    out,
                    depth,
                    ('[', ']'),
                    items.iter().map(|item| (None, item)),
                );
            }
            JsonNode::Object(entries) if entries.is_empty() => out.push_str("{}"),
            JsonNode::Object(entries) => {
                let entries = entries.iter().map(|(k, v)| (Some(k.as_str()), v));
                write_block(out, depth, ('{', '}'), entries);
            }
        }
    }
}

fn write_block<'a>(
    out: &mut String,
    depth: usize,
    (open, close): (char, char),
    entries: impl Iterator<Item = (Option<&'a str>, &'a JsonNode)>,
) {
    let inner = "    ".repeat(depth + 1);
    out.push(open);
    for (i, (key, node)) in entries.enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&inner);
        if let Some(key) = key {
            out.push_str(&serde_json::to_string(key).expect("strings always encode"));
            out.push_str(": ");
        }
        node.write(depth + 1, out);
    }
    out.push('\n');
    out.push_str(&"    ".repeat(depth));
    out.push(close);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_dumps_matches_json_dumps() {
        let v = json!({"city": "Zürich", "days": [1, 2.5, true, null], "nested": {}});
        assert_eq!(
            python_dumps(&v),
            r#"{"city": "Z\u00fcrich", "days": [1, 2.5, true, null], "nested": {}}"#
        );
        assert_eq!(python_dumps(&json!("😀")), r#""\ud83d\ude00""#);
        assert_eq!(python_dumps(&json!("a\"b\n")), r#""a\"b\n""#);
    }

    #[test]
    fn pretty_keeps_key_order_and_inline_scalar_lists() {
        let node = JsonNode::object([
            ("name", JsonNode::string("f")),
            ("required", JsonNode::List(vec![JsonNode::string("a")])),
            ("empty", JsonNode::Object(vec![])),
            (
                "items",
                JsonNode::List(vec![JsonNode::object([("x", JsonNode::Raw("1".into()))])]),
            ),
        ]);
        let expected = "{\n    \"name\": \"f\",\n    \"required\": [\"a\"],\n    \"empty\": {},\n    \"items\": [\n        {\n            \"x\": 1\n        }\n    ]\n}";
        assert_eq!(node.pretty(), expected);
    }
}
