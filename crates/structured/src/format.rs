//! What the output must look like, as a request states it, and its compilation into the
//! grammar llguidance runs.

use llguidance::api::TopLevelGrammar;
use serde_json::{Map, Value, json};

use crate::constraint::ConstraintOptions;
use crate::{Error, gbnf, schema};

/// The shape a request asks the output to take.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// JSON that validates against this JSON Schema (the crate documentation lists what is
    /// supported; anything else is refused with [`Error::UnsupportedSchema`]).
    JsonSchema(Value),
    /// Any JSON object.
    JsonObject,
    /// A sentence of a context-free grammar: GBNF (llama.cpp's format, recognised by its
    /// `::=` rules, start rule `root`) or llguidance's Lark dialect (start rule `start`).
    Grammar(String),
}

impl Format {
    /// Reads a wire `response_format` object. `None` means unconstrained text.
    ///
    /// Accepts Llama Stack's `{"type":"json_schema","json_schema":<schema>}` and
    /// `{"type":"grammar","bnf":<grammar>}` (the grammar as a string, or an object holding it
    /// under `grammar`, `gbnf` or `lark`), and OpenAI's `{"type":"json_schema","json_schema":
    /// {"name":..,"schema":<schema>,"strict":..}}`, `{"type":"json_object"}` and
    /// `{"type":"text"}`.
    pub fn from_response_format(response_format: &Value) -> Result<Option<Format>, Error> {
        let invalid = |what: &str| Err(Error::InvalidFormat(what.to_string()));
        let Some(object) = response_format.as_object() else {
            return invalid("must be an object with a `type`");
        };
        match object.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(Format::JsonObject)),
            Some("json_schema") => match object.get("json_schema") {
                Some(Value::Object(inner)) if is_openai_json_schema(inner) => {
                    // OpenAI makes `schema` optional: without one, any JSON value will do.
                    let schema = inner.get("schema").cloned().unwrap_or(json!({}));
                    Ok(Some(Format::JsonSchema(schema)))
                }
                Some(schema @ (Value::Object(_) | Value::Bool(_))) => {
                    Ok(Some(Format::JsonSchema(schema.clone())))
                }
                _ => invalid("`json_schema` must be a JSON Schema object"),
            },
            Some("grammar") => match object.get("bnf") {
                Some(Value::String(grammar)) => Ok(Some(Format::Grammar(grammar.clone()))),
                Some(Value::Object(inner)) => ["grammar", "gbnf", "lark"]
                    .iter()
                    .find_map(|key| inner.get(*key).and_then(Value::as_str))
                    .map(|grammar| Some(Format::Grammar(grammar.to_string())))
                    .ok_or_else(|| {
                        Error::InvalidFormat(
                            "`bnf` must hold the grammar text under `grammar`, `gbnf` or `lark`"
                                .into(),
                        )
                    }),
                _ => invalid("`bnf` must be the grammar text or an object holding it"),
            },
            Some(other) => Err(Error::InvalidFormat(format!(
                "unknown type `{other}`; expected json_schema, json_object, grammar or text"
            ))),
            None => invalid("`type` is missing"),
        }
    }

    /// The llguidance grammar for this format.
    pub(crate) fn to_grammar(&self, options: &ConstraintOptions) -> Result<TopLevelGrammar, Error> {
        match self {
            Format::JsonSchema(schema) => {
                let prepared = schema::prepare(schema)?;
                Ok(TopLevelGrammar::from_json_schema(with_json_options(
                    prepared, options,
                )))
            }
            Format::JsonObject => Ok(TopLevelGrammar::from_json_schema(with_json_options(
                json!({"type": "object"}),
                options,
            ))),
            Format::Grammar(text) if gbnf::looks_like_gbnf(text) => {
                Ok(TopLevelGrammar::from_lark(gbnf::gbnf_to_lark(text)?))
            }
            Format::Grammar(text) => Ok(TopLevelGrammar::from_lark(text.clone())),
        }
    }
}

fn is_openai_json_schema(inner: &Map<String, Value>) -> bool {
    inner.get("name").is_some_and(Value::is_string)
        && inner
            .keys()
            .all(|k| matches!(k.as_str(), "name" | "description" | "schema" | "strict"))
}

/// Attaches llguidance's JSON options to a schema object (its `x-guidance` keyword).
fn with_json_options(mut schema: Value, options: &ConstraintOptions) -> Value {
    let whitespace = match options.json_whitespace {
        0 => Value::Null,
        n => Value::String(format!(r"[\x20\x0A\x0D\x09]{{1,{n}}}")),
    };
    let guidance = json!({
        "item_separator": ",",
        "key_separator": ":",
        "whitespace_flexible": false,
        "whitespace_pattern": whitespace,
        // Schemas written for tools use oneOf where anyOf is meant; the branches are nearly
        // always disjoint (a different `type` or `const` tag), where the two agree.
        "coerce_one_of": true,
        // `\u00e9` as well as `é`: models trained on ASCII-only JSON (Python's default)
        // write the escapes.
        "json_allow_general_unicode_escapes": true,
    });
    if let Value::Object(map) = &mut schema {
        map.insert("x-guidance".into(), guidance);
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let llama = json!({"type": "json_schema", "json_schema": schema});
        assert_eq!(
            Format::from_response_format(&llama).unwrap(),
            Some(Format::JsonSchema(schema.clone()))
        );
        let openai = json!({"type": "json_schema",
            "json_schema": {"name": "x", "schema": schema, "strict": true}});
        assert_eq!(
            Format::from_response_format(&openai).unwrap(),
            Some(Format::JsonSchema(schema))
        );
        assert_eq!(
            Format::from_response_format(&json!({"type": "json_object"})).unwrap(),
            Some(Format::JsonObject)
        );
        assert_eq!(
            Format::from_response_format(&json!({"type": "text"})).unwrap(),
            None
        );
        let bnf = json!({"type": "grammar", "bnf": {"gbnf": "root ::= \"a\""}});
        assert_eq!(
            Format::from_response_format(&bnf).unwrap(),
            Some(Format::Grammar("root ::= \"a\"".into()))
        );
    }

    #[test]
    fn wire_errors_are_invalid_requests() {
        for bad in [
            json!("json"),
            json!({}),
            json!({"type": "xml"}),
            json!({"type": "json_schema"}),
            json!({"type": "grammar", "bnf": {"rules": []}}),
        ] {
            let err = Format::from_response_format(&bad).unwrap_err();
            assert!(err.is_invalid_request(), "{bad}: {err}");
        }
    }
}
