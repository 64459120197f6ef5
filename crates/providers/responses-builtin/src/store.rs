//! Responses and conversations as they are kept in the metadata store, ids, and list paging.
//!
//! A response is one record holding the wire object, its input items and the chat history it
//! ends with, written once when the response ends (or when a background response is queued
//! and again when it ends), so a crash never leaves part of one. A conversation is two
//! records: the wire object, and its items with the chat history they amount to.

use llama_stack_core::{Error, RegistryStore, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use llama_stack_responses::ListQuery;

pub(crate) const RESPONSE_KIND: &str = "response";
pub(crate) const CONVERSATION_KIND: &str = "conversation";
pub(crate) const CONVERSATION_ITEMS_KIND: &str = "conversation_items";

/// A new id: `prefix_` and 48 lowercase hex digits, the shape upstream checks conversation
/// ids against.
pub(crate) fn new_id(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{a}{}", &b[..16])
}

/// Whether `id` has the shape [`new_id`] gives with `prefix`.
pub(crate) fn well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| {
            hex.len() == 48
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Nanoseconds since the epoch: the creation order of responses, finer than `created_at`.
pub(crate) fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A response as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResponseRecord {
    /// The wire object.
    pub response: Value,
    /// The input items, each with its id.
    pub input: Vec<Value>,
    /// The chat history once the response ended (without `instructions`, which each response
    /// gives anew), for a response that continues from it with `previous_response_id`.
    pub messages: Vec<Value>,
    /// Creation order.
    pub seq: u64,
    /// The request of a background response, to run it again after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The authenticated principal that created it; `None` while auth is off.
    #[serde(default)]
    pub owner: Option<String>,
}

/// A conversation's items and the chat history they amount to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ConversationItems {
    pub items: Vec<Value>,
    pub messages: Vec<Value>,
}

/// A conversation as stored: the wire object and its owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConversationRecord {
    pub conversation: Value,
    #[serde(default)]
    pub owner: Option<String>,
}

pub(crate) async fn get_response(store: &dyn RegistryStore, id: &str) -> Result<ResponseRecord> {
    store
        .get(RESPONSE_KIND, id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| {
            Error::not_found(format!(
                "Response '{id}' not found. Use 'client.responses.list()' to list available Responses."
            ))
                .with_location(vec!["path".into(), "response_id".into()])
        })
}

pub(crate) async fn put_response(store: &dyn RegistryStore, record: &ResponseRecord) -> Result<()> {
    let id = record.response["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let value = serde_json::to_value(record)
        .map_err(|e| Error::internal(format!("cannot encode response {id}: {e}")))?;
    store.put(RESPONSE_KIND, &id, &value).await
}

pub(crate) async fn get_conversation(
    store: &dyn RegistryStore,
    id: &str,
) -> Result<ConversationRecord> {
    store
        .get(CONVERSATION_KIND, id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| Error::not_found(format!("Conversation '{id}' not found.")))
}

pub(crate) async fn get_items(store: &dyn RegistryStore, id: &str) -> Result<ConversationItems> {
    Ok(store
        .get(CONVERSATION_ITEMS_KIND, id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

pub(crate) async fn put_items(
    store: &dyn RegistryStore,
    id: &str,
    items: &ConversationItems,
) -> Result<()> {
    let value = serde_json::to_value(items)
        .map_err(|e| Error::internal(format!("cannot encode conversation {id}: {e}")))?;
    store.put(CONVERSATION_ITEMS_KIND, id, &value).await
}

fn query_error(field: &str, message: String) -> Error {
    Error::invalid(message).with_location(vec!["query".into(), field.into()])
}

/// One page of `items` (in stored order, oldest first) as an OpenAI list object.
pub(crate) fn page(items: Vec<Value>, query: &ListQuery, default_limit: usize) -> Result<Value> {
    let limit = query.limit.unwrap_or(default_limit);
    if !(1..=100).contains(&limit) {
        return Err(query_error(
            "limit",
            format!("limit must be between 1 and 100, got {limit}"),
        ));
    }
    let mut items = items;
    match query.order.as_deref().unwrap_or("desc") {
        "desc" => items.reverse(),
        "asc" => {}
        other => {
            return Err(query_error(
                "order",
                format!("order must be 'asc' or 'desc', got '{other}'"),
            ));
        }
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    if let Some(after) = &query.after {
        let at = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after.as_str()))
            .ok_or_else(|| query_error("after", format!("after names no item: '{after}'")))?;
        items.drain(..=at);
    }
    if let Some(before) = &query.before {
        let at = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(before.as_str()))
            .ok_or_else(|| query_error("before", format!("before names no item: '{before}'")))?;
        items.truncate(at);
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(json!({
        "object": "list",
        "first_id": items.first().and_then(id_of),
        "last_id": items.last().and_then(id_of),
        "has_more": has_more,
        "data": items,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_checked_shape() {
        let id = new_id("conv");
        assert!(well_formed(&id, "conv"), "{id}");
        assert!(!well_formed(&id, "resp"));
        assert!(!well_formed("conv_123", "conv"));
        assert!(!well_formed(&format!("conv_{}", "G".repeat(48)), "conv"));
    }

    #[test]
    fn pages_follow_order_and_cursor() {
        let items: Vec<Value> = (1..=5).map(|i| json!({"id": format!("i{i}")})).collect();
        let q = |order: &str, after: Option<&str>, limit| ListQuery {
            limit: Some(limit),
            order: Some(order.into()),
            after: after.map(str::to_string),
            ..ListQuery::default()
        };
        let desc = page(items.clone(), &q("desc", None, 2), 20).unwrap();
        assert_eq!(desc["first_id"], "i5");
        assert_eq!(desc["last_id"], "i4");
        assert_eq!(desc["has_more"], true);
        let asc = page(items.clone(), &q("asc", Some("i3"), 10), 20).unwrap();
        assert_eq!(asc["data"].as_array().unwrap().len(), 2);
        assert_eq!(asc["first_id"], "i4");
        assert_eq!(asc["has_more"], false);
        let err = page(items.clone(), &q("up", None, 2), 20).unwrap_err();
        assert!(err.message().contains("order"), "{}", err.message());
        assert!(page(items, &q("asc", Some("nope"), 2), 20).is_err());
    }
}
