//! How batches and their results are kept in the metadata store.
//!
//! A batch record is the batch object plus its `owner` and `lease`. Each request's result is a
//! record of its own, under a kind named after the batch and an identifier made of the line
//! number padded to a fixed width, so the store lists them in line order.

use llama_stack_batches::{BatchObject, Status};
use llama_stack_core::{Error, Result};
use llama_stack_types::User;
use serde_json::{Value, json};

pub(crate) const KIND: &str = "batch";

pub(crate) fn batch_not_found(batch_id: &str) -> Error {
    Error::not_found(format!("Batch '{batch_id}' not found"))
}

pub(crate) fn status_of(record: &Value) -> Option<Status> {
    serde_json::from_value(record["status"].clone()).ok()
}

/// Whether the batch still has work: someone must hold its lease.
pub(crate) fn unfinished(record: &Value) -> bool {
    status_of(record).is_some_and(Status::is_unfinished)
}

pub(crate) fn owner_of(record: &Value) -> Option<User> {
    serde_json::from_value(record["owner"].clone()).ok()
}

pub(crate) fn object_of(record: Value) -> Result<BatchObject> {
    serde_json::from_value(record)
        .map_err(|e| Error::internal(format!("unreadable batch record: {e}")))
}

pub(crate) fn record_of(batch: &BatchObject, owner: Option<User>) -> Result<Value> {
    let mut record = serde_json::to_value(batch).map_err(|e| Error::internal(e.to_string()))?;
    if let Some(owner) = owner {
        record["owner"] =
            serde_json::to_value(owner).map_err(|e| Error::internal(e.to_string()))?;
    }
    Ok(record)
}

/// The kind a batch's results are kept under.
pub(crate) fn results_kind(batch_id: &str) -> String {
    format!("batch_result:{batch_id}")
}

pub(crate) fn result_key(line: u64) -> String {
    format!("{line:010}")
}

/// One request's result as stored: its line, whether it succeeded, and its output line.
pub(crate) fn result_record(line: u64, ok: bool, output: Value) -> Value {
    json!({"line": line, "ok": ok, "output": output})
}

/// The id of a request's result, as upstream forms it.
pub(crate) fn request_id(batch_id: &str, line: u64) -> String {
    format!("batch_req_{batch_id}_{line}")
}

/// The output line of an answered request.
pub(crate) fn success_line(batch_id: &str, line: u64, custom_id: &str, body: Value) -> Value {
    let id = request_id(batch_id, line);
    json!({
        "id": id,
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": id, "body": body},
        "error": null,
    })
}

/// The error-file line of a request that failed.
pub(crate) fn error_line(batch_id: &str, line: u64, custom_id: &str, err: &Error) -> Value {
    json!({
        "id": request_id(batch_id, line),
        "custom_id": custom_id,
        "response": null,
        "error": {"type": "request_failed", "code": err.kind().as_str(), "message": err.message()},
    })
}
