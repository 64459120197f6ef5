//! Numbers as 0.2-era clients send them: `llama-stack-client` 0.2's test harness (and clients
//! built like it) send every number as a string (`"384"`), which upstream's pydantic models
//! accept.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An optional unsigned number, given as a number or a numeric string.
pub fn opt_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {n}"))),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("expected a whole number, got the string \"{s}\""))
        }),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a whole number, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt_u32")]
        n: Option<u32>,
    }

    #[test]
    fn numbers_and_numeric_strings_are_read() {
        let read = |s: &str| serde_json::from_str::<T>(s).map(|t| t.n);
        assert_eq!(read(r#"{"n": 384}"#).unwrap(), Some(384));
        assert_eq!(read(r#"{"n": "384"}"#).unwrap(), Some(384));
        assert_eq!(read(r#"{}"#).unwrap(), None);
        assert!(read(r#"{"n": "abc"}"#).is_err());
        assert!(read(r#"{"n": -1}"#).is_err());
    }
}
