//! Responses and conversations as they are kept in the metadata store, ids, and list paging.
//!
//! A response is one record holding the wire object, its input items and the chat history it
//! ends with, written once when the response ends (or when a background response is queued
//! and again when it ends), so a crash never leaves part of one. A conversation is two
//! records: the wire object, and its items with the chat history they amount to.

use llama_stack_core::access::{self, Action};
use llama_stack_core::paging::PageRequest;
use llama_stack_core::{Error, RegistryStore, Result};
use llama_stack_types::User;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use llama_stack_responses::ListQuery;

pub(crate) const RESPONSE_KIND: &str = "response";
pub(crate) const CONVERSATION_KIND: &str = "conversation";
pub(crate) const CONVERSATION_ITEMS_KIND: &str = "conversation_items";

/// Resource types as access policies name them.
pub(crate) const RESPONSE_RESOURCE: &str = "response";
pub(crate) const CONVERSATION_RESOURCE: &str = "conversation";

/// A new id: `prefix_` and 48 lowercase hex digits.
pub(crate) fn new_id(prefix: &str) -> String {
    llama_stack_core::hex_id(prefix)
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

pub(crate) use llama_stack_core::now_nanos;

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
    /// The user that created it; `None` while auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
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
    /// The user that created it; `None` while auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

pub(crate) fn response_not_found(id: &str) -> Error {
    Error::not_found(format!(
        "Response '{id}' not found. Use 'client.responses.list()' to list available Responses."
    ))
    .with_location(vec!["path".into(), "response_id".into()])
}

pub(crate) fn conversation_not_found(id: &str) -> Error {
    Error::not_found(format!("Conversation '{id}' not found."))
}

/// The stored response, whoever asks: for the server's own bookkeeping.
pub(crate) async fn get_response(store: &dyn RegistryStore, id: &str) -> Result<ResponseRecord> {
    store
        .get(RESPONSE_KIND, id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| response_not_found(id))
}

/// The response, once the caller may do `action` to it; one they cannot read is not found.
pub(crate) async fn response_for(
    store: &dyn RegistryStore,
    id: &str,
    action: Action,
) -> Result<ResponseRecord> {
    let record = get_response(store, id).await?;
    access::check(action, RESPONSE_RESOURCE, id, record.owner.as_ref(), || {
        response_not_found(id)
    })?;
    Ok(record)
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

/// The conversation, once the caller may do `action` to it; one they cannot read is not found.
pub(crate) async fn get_conversation(
    store: &dyn RegistryStore,
    id: &str,
    action: Action,
) -> Result<ConversationRecord> {
    let record: ConversationRecord = store
        .get(CONVERSATION_KIND, id)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| conversation_not_found(id))?;
    access::check(
        action,
        CONVERSATION_RESOURCE,
        id,
        record.owner.as_ref(),
        || conversation_not_found(id),
    )?;
    Ok(record)
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

/// One page of `items` (in stored order, oldest first) as an OpenAI list object.
pub(crate) fn page(items: Vec<Value>, query: &ListQuery, default_limit: usize) -> Result<Value> {
    let request = PageRequest {
        limit: query.limit,
        order: query.order.as_deref(),
        after: query.after.as_deref(),
        before: query.before.as_deref(),
    };
    llama_stack_core::paging::page(items, request, default_limit, "desc")
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
}
