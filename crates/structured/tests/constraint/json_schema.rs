//! Random walks over JSON Schemas: whatever allowed tokens are sampled, the output parses
//! and validates, and an end-of-sequence token is allowed exactly when it does.

use llama_stack_structured::{Constraint, Error, Format};
use serde_json::{Value, json};

use crate::support::{random_walk, vocabulary};

const WALKS: u64 = 50;
const MAX_STEPS: usize = 400;

/// `validate_with` is the schema the validator checks against when it differs from the one
/// compiled (the validator does not know OpenAPI's `nullable`).
fn check_schema(name: &str, schema: Value, validate_with: Option<Value>) {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let validator = jsonschema::validator_for(validate_with.as_ref().unwrap_or(&schema))
        .unwrap_or_else(|e| panic!("{name}: the test schema is invalid: {e}"));
    let format = Format::JsonSchema(schema);
    let mut ended = 0;
    for seed in 0..WALKS {
        let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
        let walk = random_walk(&mut constraint, seed, MAX_STEPS, |text, eos_allowed| {
            let parsed = serde_json::from_str::<Value>(text);
            let valid = parsed.as_ref().is_ok_and(|value| validator.is_valid(value));
            if eos_allowed && !valid {
                let errors: Vec<String> = match &parsed {
                    Ok(value) => validator
                        .iter_errors(value)
                        .map(|e| e.to_string())
                        .collect(),
                    Err(e) => vec![e.to_string()],
                };
                panic!("{name} seed {seed}: EOS allowed after {text:?}: {errors:?}");
            }
            assert!(
                eos_allowed || !valid,
                "{name} seed {seed}: {text:?} is a whole value but EOS is not allowed"
            );
        });
        if walk.ended {
            ended += 1;
            let value: Value = serde_json::from_str(&walk.text).unwrap();
            assert!(
                validator.is_valid(&value),
                "{name} seed {seed}: {}",
                walk.text
            );
        }
    }
    // The walks are steered to an end, but an unlucky one may still be writing a string.
    assert!(
        ended * 10 >= WALKS * 9,
        "{name}: only {ended} of {WALKS} walks ended"
    );
}

#[test]
fn flat_object_with_bounds() {
    check_schema(
        "person",
        json!({"type": "object", "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "born": {"type": "string", "format": "date"},
        }, "required": ["name", "age"], "additionalProperties": false}),
        None,
    );
}

#[test]
fn nested_objects_and_arrays() {
    check_schema(
        "nested",
        json!({"type": "object", "properties": {
            "address": {"type": "object", "properties": {
                "street": {"type": "string"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            }, "required": ["street", "zip"], "additionalProperties": false},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8},
                     "minItems": 1, "maxItems": 3},
        }, "required": ["address", "tags"], "additionalProperties": false}),
        None,
    );
}

#[test]
fn enums_and_consts() {
    check_schema(
        "enums",
        json!({"type": "object", "properties": {
            "status": {"enum": ["active", "in \"review\"", 3, null, true]},
            "kind": {"const": "user"},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "point": {"const": {"x": 1, "y": [true, null]}},
        }, "required": ["status", "kind", "level", "point"], "additionalProperties": false}),
        None,
    );
}

#[test]
fn any_of_and_one_of() {
    check_schema(
        "unions",
        json!({"type": "object", "properties": {
            "value": {"anyOf": [
                {"type": "string", "maxLength": 5}, {"type": "number"},
                {"type": "boolean"}, {"type": "null"},
            ]},
            "shape": {"oneOf": [
                {"type": "object", "properties": {
                    "kind": {"const": "circle"},
                    "radius": {"type": "number", "exclusiveMinimum": 0},
                }, "required": ["kind", "radius"], "additionalProperties": false},
                {"type": "object", "properties": {
                    "kind": {"const": "square"},
                    "side": {"type": "integer", "minimum": 1},
                }, "required": ["kind", "side"], "additionalProperties": false},
            ]},
        }, "required": ["value", "shape"], "additionalProperties": false}),
        None,
    );
}

#[test]
fn array_of_objects_with_numbers() {
    check_schema(
        "array",
        json!({"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        }, "required": ["id", "score"], "additionalProperties": false},
        "minItems": 1, "maxItems": 4}),
        None,
    );
}

#[test]
fn strings_with_escapes_lengths_and_patterns() {
    check_schema(
        "strings",
        json!({"type": "object", "properties": {
            "text": {"type": "string", "minLength": 2, "maxLength": 20},
            "quote": {"type": "string"},
            "path": {"type": "string", "pattern": "^/[a-z]+(/[a-z]+)*$"},
        }, "required": ["text", "quote", "path"], "additionalProperties": false}),
        None,
    );
}

#[test]
fn recursive_ref_to_defs() {
    check_schema(
        "tree",
        json!({"$defs": {"node": {"type": "object", "properties": {
            "value": {"type": "integer", "minimum": -100, "maximum": 100},
            "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
        }, "required": ["value"], "additionalProperties": false}},
        "$ref": "#/$defs/node"}),
        None,
    );
}

#[test]
fn definitions_refs_and_open_objects() {
    check_schema(
        "definitions",
        json!({"definitions": {"Color": {"type": "string", "enum": ["red", "green"]}},
        "type": "object", "properties": {
            "colors": {"type": "array", "items": {"$ref": "#/definitions/Color"}},
            "primary": {"$ref": "#/definitions/Color"},
        }, "required": ["primary"]}),
        None,
    );
}

#[test]
fn nullable_types_and_extra_properties() {
    let properties = |count: Value| {
        json!({"type": "object", "properties": {
            "note": {"type": ["string", "null"], "maxLength": 10},
            "count": count,
            "flag": {"type": "boolean"},
            "ratio": {"type": "number", "minimum": -1.5, "maximum": 2.25},
        }, "required": ["note", "count", "flag"]})
    };
    check_schema(
        "nullable",
        properties(json!({"type": "integer", "nullable": true})),
        Some(properties(json!({"type": ["integer", "null"]}))),
    );
}

#[test]
fn top_level_scalars() {
    check_schema(
        "integer",
        json!({"type": "integer", "minimum": 10, "maximum": 20}),
        None,
    );
    check_schema("choice", json!({"enum": ["yes", "no", "maybe"]}), None);
}

#[test]
fn known_formats_shape_strings() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    // The date pattern knows month lengths but not leap years: `2023-02-29` gets through.
    let date =
        regex::Regex::new(r#"^"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"$"#).unwrap();
    let format = Format::JsonSchema(json!({"type": "string", "format": "date"}));
    for seed in 0..10 {
        let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
        let walk = random_walk(&mut constraint, seed, 50, |_, _| {});
        assert!(walk.ended && date.is_match(&walk.text), "{}", walk.text);
    }
}

#[test]
fn unsupported_keywords_are_named_with_their_location() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let schema = json!({"type": "object", "properties": {
        "id": {"type": "string", "not": {"const": ""}},
    }});
    let error = Constraint::new(vocabulary.clone(), &Format::JsonSchema(schema)).unwrap_err();
    assert_eq!(
        error,
        Error::UnsupportedSchema {
            feature: "keyword `not`".into(),
            path: "/properties/id".into()
        }
    );
    assert!(
        error.to_string().contains("`not` at `/properties/id`"),
        "{error}"
    );

    for (schema, needle) in [
        (json!({"type": "strin"}), "strin"),
        (json!({"$ref": "#/$defs/missing"}), "missing"),
        (json!({"type": "string", "pattern": "(?=a)"}), "look-around"),
        (
            json!({"type": "integer", "minimum": 5, "maximum": 1}),
            "nsatisfiable",
        ),
    ] {
        let error = Constraint::new(vocabulary.clone(), &Format::JsonSchema(schema.clone()))
            .expect_err(&schema.to_string());
        assert!(error.is_invalid_request(), "{schema}: {error}");
        assert!(error.to_string().contains(needle), "{schema}: {error}");
    }
}

#[test]
fn escapes_and_lengths_count_characters() {
    let Some(vocabulary) = vocabulary() else {
        return;
    };
    let format = Format::JsonSchema(json!({"type": "object", "properties": {
        "s": {"type": "string", "maxLength": 5}}, "required": ["s"],
        "additionalProperties": false}));
    let accepts = |text: &str| {
        let mut constraint = Constraint::new(vocabulary.clone(), &format).unwrap();
        crate::support::feed(&mut constraint, text).is_ok() && constraint.can_finish().unwrap()
    };
    // Five characters: a, ", \, newline, é.
    assert!(accepts(r#"{"s": "a\"\\\n\u00e9"}"#));
    assert!(accepts(r#"{"s": "ééééé"}"#));
    // A surrogate pair is one character; half of one is not a character.
    assert!(accepts(r#"{"s": "\ud83d\ude00abcd"}"#));
    assert!(!accepts(r#"{"s": "\ud83d"}"#));
    assert!(!accepts(r#"{"s": "abcdef"}"#));
    assert!(!accepts(r#"{"s": "a\q"}"#));
    assert!(!accepts("{\"s\": \"a\nb\"}"));
    assert!(!accepts(r#"{"s": "a", "t": 1}"#));
}
