//! The checks of `POST /v1/batches`. A request that fails them creates nothing (400); problems
//! inside the input file are found later, line by line, and fail the batch instead.

use llama_stack_core::{Error, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{COMPLETION_WINDOW, ENDPOINTS};

/// Metadata bounds, as OpenAI sets them.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

/// A create request that passed the checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub completion_window: String,
    pub metadata: Option<Map<String, Value>>,
    pub idempotency_key: Option<String>,
}

fn body_error(path: &[&str], message: impl Into<String>) -> Error {
    let mut location = vec![Value::from("body")];
    location.extend(path.iter().map(|p| Value::from(*p)));
    Error::invalid(message).with_location(location)
}

fn required_string(body: &Map<String, Value>, field: &str, what: &str) -> Result<String> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        None | Some(Value::Null) => {
            Err(body_error(&[field], format!("{field} is required: {what}")))
        }
        Some(other) => Err(body_error(
            &[field],
            format!("{field} must be a non-empty string ({what}), got {other}"),
        )),
    }
}

impl CreateBatch {
    pub fn parse(body: &Map<String, Value>) -> Result<CreateBatch> {
        let input_file_id = required_string(
            body,
            "input_file_id",
            "the id of a JSONL file uploaded with purpose 'batch'",
        )?;
        let endpoint = required_string(body, "endpoint", "the endpoint every line calls")?;
        if !ENDPOINTS.contains(&endpoint.as_str()) {
            return Err(body_error(
                &["endpoint"],
                format!(
                    "Invalid endpoint: {endpoint}. Supported values: {}. Code: invalid_value. Param: endpoint",
                    ENDPOINTS.join(", ")
                ),
            ));
        }
        let completion_window =
            required_string(body, "completion_window", "'24h', the only window served")?;
        if completion_window != COMPLETION_WINDOW {
            return Err(body_error(
                &["completion_window"],
                format!(
                    "Invalid completion_window: {completion_window}. Supported values are: {COMPLETION_WINDOW}. Code: invalid_value. Param: completion_window"
                ),
            ));
        }
        let metadata = match body.get("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(check_metadata(map)?),
            Some(other) => {
                return Err(body_error(
                    &["metadata"],
                    format!(
                        "metadata must be an object of string keys and string values, got {other}"
                    ),
                ));
            }
        };
        let idempotency_key = match body.get("idempotency_key") {
            None | Some(Value::Null) => None,
            Some(Value::String(key)) if !key.is_empty() => Some(key.clone()),
            Some(other) => {
                return Err(body_error(
                    &["idempotency_key"],
                    format!("idempotency_key must be a non-empty string, got {other}"),
                ));
            }
        };
        Ok(CreateBatch {
            input_file_id,
            endpoint,
            completion_window,
            metadata,
            idempotency_key,
        })
    }

    /// Whether an earlier batch created with the same idempotency key asked for the same.
    pub fn same_request(
        &self,
        input_file_id: &str,
        endpoint: &str,
        window: &str,
        metadata: Option<&Map<String, Value>>,
    ) -> bool {
        self.input_file_id == input_file_id
            && self.endpoint == endpoint
            && self.completion_window == window
            && self.metadata.as_ref() == metadata
    }
}

fn check_metadata(map: &Map<String, Value>) -> Result<Map<String, Value>> {
    if map.len() > MAX_METADATA_PAIRS {
        return Err(body_error(
            &["metadata"],
            format!(
                "metadata may hold at most {MAX_METADATA_PAIRS} pairs, got {}",
                map.len()
            ),
        ));
    }
    for (key, value) in map {
        if key.chars().count() > MAX_METADATA_KEY {
            return Err(body_error(
                &["metadata", key],
                format!(
                    "metadata keys are at most {MAX_METADATA_KEY} characters; '{key}' is longer"
                ),
            ));
        }
        match value {
            Value::String(s) if s.chars().count() <= MAX_METADATA_VALUE => {}
            Value::String(_) => {
                return Err(body_error(
                    &["metadata", key],
                    format!("metadata.{key}: values are at most {MAX_METADATA_VALUE} characters"),
                ));
            }
            other => {
                return Err(body_error(
                    &["metadata", key],
                    format!("metadata.{key}: Input should be a valid string, got {other}"),
                ));
            }
        }
    }
    Ok(map.clone())
}

/// The id a batch created with an idempotency key gets, so that the same key always names the
/// same batch (on every replica).
pub fn batch_id_for_key(key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("batch_{}", &digest[..24])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<CreateBatch> {
        CreateBatch::parse(v.as_object().unwrap())
    }

    fn ok_body() -> Value {
        json!({"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    }

    #[test]
    fn accepts_a_well_formed_request() {
        let mut body = ok_body();
        body["metadata"] = json!({"job": "nightly"});
        body["idempotency_key"] = json!("k1");
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.endpoint, "/v1/chat/completions");
        assert_eq!(parsed.metadata.unwrap()["job"], "nightly");
        assert_eq!(parsed.idempotency_key.as_deref(), Some("k1"));
    }

    #[test]
    fn names_the_endpoint_and_the_supported_ones() {
        let mut body = ok_body();
        body["endpoint"] = json!("/v1/invalid/endpoint");
        let err = parse(body).unwrap_err();
        let message = err.message().to_lowercase();
        for part in [
            "invalid",
            "/v1/invalid/endpoint",
            "supported values",
            "invalid_value",
        ] {
            assert!(message.contains(part), "{message}");
        }
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::InvalidRequest);
    }

    #[test]
    fn refuses_other_windows_and_non_string_metadata() {
        let mut body = ok_body();
        body["completion_window"] = json!("1h");
        assert!(
            parse(body)
                .unwrap_err()
                .message()
                .contains("completion_window")
        );
        let mut body = ok_body();
        body["metadata"] = json!({"tags": ["a", "b"]});
        let message = parse(body).unwrap_err().message().to_string();
        assert!(
            message.contains("tags") && message.contains("string"),
            "{message}"
        );
        let mut body = ok_body();
        body["metadata"] = Value::Object((0..17).map(|i| (format!("k{i}"), json!("v"))).collect());
        assert!(parse(body).unwrap_err().message().contains("at most 16"));
    }

    #[test]
    fn requires_the_file_and_endpoint() {
        let err =
            parse(json!({"endpoint": "/v1/embeddings", "completion_window": "24h"})).unwrap_err();
        assert!(err.message().contains("input_file_id is required"));
    }

    #[test]
    fn one_key_one_id() {
        assert_eq!(batch_id_for_key("a"), batch_id_for_key("a"));
        assert_ne!(batch_id_for_key("a"), batch_id_for_key("b"));
        assert_eq!(batch_id_for_key("a").len(), "batch_".len() + 24);
    }
}
