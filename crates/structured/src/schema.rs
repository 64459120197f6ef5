//! Checks a JSON Schema before it is compiled, so that what cannot be enforced is refused with
//! the keyword and its location, and normalises the few forms llguidance reads differently.

use serde_json::{Map, Value, json};

use crate::Error;

/// Keywords of JSON Schema drafts 4 to 2020-12 that constrain values in ways a token mask
/// does not enforce. llguidance would refuse most of them too, but without saying where.
const UNSUPPORTED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "contains",
    "minContains",
    "maxContains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$recursiveAnchor",
];

/// `format` values llguidance turns into a pattern. Others are dropped: JSON Schema treats
/// `format` as an annotation unless a validator opts in.
const KNOWN_FORMATS: &[&str] = &[
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
    "uri",
];

/// Keywords whose value is one subschema.
const SUBSCHEMA: &[&str] = &["additionalProperties", "additionalItems", "items"];
/// Keywords whose value is an array of subschemas.
const SUBSCHEMA_ARRAY: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAP: &[&str] = &["properties", "patternProperties", "$defs", "definitions"];

/// The schema llguidance should compile for `schema`, or why it cannot be enforced.
pub(crate) fn prepare(schema: &Value) -> Result<Value, Error> {
    match schema {
        Value::Bool(true) => Ok(json!({})),
        Value::Bool(false) => Err(Error::InvalidFormat(
            "the schema `false` accepts no value".into(),
        )),
        Value::Object(_) => {
            let mut prepared = schema.clone();
            visit(&mut prepared, &mut String::new())?;
            Ok(prepared)
        }
        _ => Err(Error::InvalidFormat(
            "a JSON Schema must be an object or a boolean".into(),
        )),
    }
}

fn visit(schema: &mut Value, path: &mut String) -> Result<(), Error> {
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(_) => return Ok(()),
        _ => {
            return Err(Error::InvalidFormat(format!(
                "the subschema at `{path}` must be an object or a boolean"
            )));
        }
    };
    // Only this crate sets llguidance's options; a client must not switch on `lenient`.
    map.remove("x-guidance");
    if let Some(keyword) = UNSUPPORTED.iter().find(|k| map.contains_key(**k)) {
        return Err(unsupported(format!("keyword `{keyword}`"), path));
    }
    match map.get("uniqueItems") {
        Some(Value::Bool(true)) => return Err(unsupported("`uniqueItems: true`".into(), path)),
        Some(_) => {
            map.remove("uniqueItems");
        }
        None => {}
    }
    if let Some(reference) = map.get("$ref") {
        match reference.as_str() {
            Some(r) if r.starts_with('#') => {}
            Some(r) => {
                return Err(unsupported(
                    format!("a $ref to another document (`{r}`)"),
                    path,
                ));
            }
            None => {
                return Err(Error::InvalidFormat(format!(
                    "`$ref` at `{path}` must be a string"
                )));
            }
        }
    }
    if map
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| !KNOWN_FORMATS.contains(&f))
    {
        map.remove("format");
    }

    let base = path.len();
    for (key, value) in map.iter_mut() {
        let key = key.as_str();
        if SUBSCHEMA.contains(&key) {
            push(path, key);
            // Draft 4's tuple form: `items` as an array of schemas.
            if let Value::Array(items) = value {
                visit_all(items, path)?;
            } else {
                visit(value, path)?;
            }
        } else if SUBSCHEMA_ARRAY.contains(&key) {
            push(path, key);
            match value {
                Value::Array(items) => visit_all(items, path)?,
                _ => return Err(Error::InvalidFormat(format!("`{path}` must be an array"))),
            }
        } else if SUBSCHEMA_MAP.contains(&key) {
            push(path, key);
            let Value::Object(entries) = value else {
                return Err(Error::InvalidFormat(format!("`{path}` must be an object")));
            };
            for (name, subschema) in entries.iter_mut() {
                let inner = path.len();
                push(path, name);
                visit(subschema, path)?;
                path.truncate(inner);
            }
        }
        path.truncate(base);
    }

    // OpenAPI 3.0's way to say "or null".
    if let Some(nullable) = map.remove("nullable")
        && nullable == Value::Bool(true)
    {
        *map = or_null(std::mem::take(map));
    }
    Ok(())
}

fn visit_all(items: &mut [Value], path: &mut String) -> Result<(), Error> {
    for (index, item) in items.iter_mut().enumerate() {
        let base = path.len();
        push(path, &index.to_string());
        visit(item, path)?;
        path.truncate(base);
    }
    Ok(())
}

/// `{"anyOf": [schema, {"type": "null"}]}`, keeping definitions where `$ref`s expect them.
fn or_null(mut schema: Map<String, Value>) -> Map<String, Value> {
    let mut wrapper = Map::new();
    for key in ["$defs", "definitions", "$schema", "$id"] {
        if let Some(value) = schema.remove(key) {
            wrapper.insert(key.to_string(), value);
        }
    }
    wrapper.insert(
        "anyOf".into(),
        json!([Value::Object(schema), {"type": "null"}]),
    );
    wrapper
}

/// Appends one JSON Pointer segment.
fn push(path: &mut String, segment: &str) {
    path.push('/');
    path.push_str(&segment.replace('~', "~0").replace('/', "~1"));
}

fn unsupported(feature: String, path: &str) -> Error {
    Error::UnsupportedSchema {
        feature,
        path: path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsupported_at(schema: Value) -> (String, String) {
        match prepare(&schema) {
            Err(Error::UnsupportedSchema { feature, path }) => (feature, path),
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }

    #[test]
    fn names_keyword_and_location() {
        let schema = json!({"type": "object", "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
        }});
        assert_eq!(
            unsupported_at(schema),
            ("`uniqueItems: true`".into(), "/properties/tags".into())
        );
        let schema = json!({"anyOf": [{"type": "string"}, {"not": {"type": "null"}}]});
        assert_eq!(
            unsupported_at(schema),
            ("keyword `not`".into(), "/anyOf/1".into())
        );
        let schema = json!({"$defs": {"a/b": {"if": {}}}});
        assert_eq!(
            unsupported_at(schema),
            ("keyword `if`".into(), "/$defs/a~1b".into())
        );
        let schema = json!({"$ref": "https://example.com/schema.json"});
        assert_eq!(unsupported_at(schema).1, "");
    }

    #[test]
    fn property_names_are_not_keywords() {
        let schema = json!({"type": "object", "properties": {
            "not": {"type": "string"}, "format": {"type": "string", "format": "hex-colour"},
        }});
        let prepared = prepare(&schema).unwrap();
        assert_eq!(prepared["properties"]["not"], json!({"type": "string"}));
        assert_eq!(prepared["properties"]["format"], json!({"type": "string"}));
    }

    #[test]
    fn known_formats_stay_and_client_options_go() {
        let schema = json!({"type": "string", "format": "date", "x-guidance": {"lenient": true}});
        assert_eq!(
            prepare(&schema).unwrap(),
            json!({"type": "string", "format": "date"})
        );
    }

    #[test]
    fn nullable_becomes_any_of_null() {
        let schema = json!({"type": "object", "properties": {
            "age": {"type": "integer", "nullable": true},
        }});
        let prepared = prepare(&schema).unwrap();
        assert_eq!(
            prepared["properties"]["age"],
            json!({"anyOf": [{"type": "integer"}, {"type": "null"}]})
        );
    }

    #[test]
    fn boolean_schemas() {
        assert_eq!(prepare(&json!(true)).unwrap(), json!({}));
        assert!(prepare(&json!(false)).unwrap_err().is_invalid_request());
        assert!(prepare(&json!("object")).unwrap_err().is_invalid_request());
    }
}
