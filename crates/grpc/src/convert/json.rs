//! `google.protobuf.Struct`/`Value` ⇄ JSON, for the free-form parts of messages (metadata,
//! params, tool arguments).

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// Protobuf numbers are all doubles; whole numbers become JSON integers, since the core reads
/// counts such as `max_chunks` with `as_u64`. NaN and infinities, which JSON cannot carry,
/// become `null`.
pub(crate) fn to_json(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::ListValue(list)) => Json::Array(list.values.into_iter().map(to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_map(s)),
    }
}

fn number(n: f64) -> Json {
    // 2^53: beyond it a double no longer holds every integer, so keep it a float.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        if n >= 0.0 {
            return Json::Number(Number::from(n as u64));
        }
        return Json::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map(Json::Number).unwrap_or(Json::Null)
}

pub(crate) fn struct_to_map(s: Struct) -> Map<String, Json> {
    s.fields.into_iter().map(|(k, v)| (k, to_json(v))).collect()
}

/// An unset struct reads as an empty object.
pub(crate) fn opt_struct_to_map(s: Option<Struct>) -> Map<String, Json> {
    s.map(struct_to_map).unwrap_or_default()
}

/// An unset struct reads as absent.
pub(crate) fn opt_struct(s: Option<Struct>) -> Option<Map<String, Json>> {
    s.map(struct_to_map)
}

/// An unset value, or `null`, reads as absent.
pub(crate) fn opt_value(v: Option<Value>) -> Option<Json> {
    v.map(to_json).filter(|j| !j.is_null())
}

pub(crate) fn from_json(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(from_json).collect(),
        }),
        Json::Object(map) => Kind::StructValue(map_to_struct(map)),
    };
    Value { kind: Some(kind) }
}

pub(crate) fn map_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
    }
}

/// A JSON object as a struct; anything else (which the core never sends where a struct is
/// expected) as an empty one.
pub(crate) fn json_to_struct(value: &Json) -> Struct {
    match value {
        Json::Object(map) => map_to_struct(map),
        _ => Struct::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_survives_the_round_trip_with_integers_kept_whole() {
        let original = json!({"n": 3, "neg": -2, "f": 0.5, "s": "x", "b": true, "z": null,
                              "list": [1, {"k": "v"}]});
        let back = to_json(from_json(&original));
        assert_eq!(back, original);
        assert!(back["n"].is_u64());
    }

    #[test]
    fn non_finite_numbers_become_null() {
        let v = Value {
            kind: Some(Kind::NumberValue(f64::NAN)),
        };
        assert_eq!(to_json(v), Json::Null);
        assert_eq!(to_json(Value::default()), Json::Null);
    }
}
