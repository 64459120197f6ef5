//! Conversations (`/v1/conversations`): a conversation object, and its items with the chat
//! history they amount to. Responses given `conversation` read that history and append their
//! input and output items to it.

use std::collections::HashSet;

use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, Result, now_secs};
use serde_json::{Map, Value, json};

use crate::BuiltinResponses;
use crate::input::{items_to_messages, normalize_input, tool_call_ids};
use crate::request::field_error;
use crate::store::{
    CONVERSATION_ITEMS_KIND, CONVERSATION_KIND, CONVERSATION_RESOURCE, ConversationItems,
    ConversationRecord, get_conversation, get_items, new_id, put_items,
};

/// Items one request may add, as OpenAI limits them.
const MAX_ITEMS_PER_REQUEST: usize = 20;

fn metadata(body: &Map<String, Value>) -> Result<Option<Map<String, Value>>> {
    match body.get("metadata").filter(|v| !v.is_null()) {
        None => Ok(None),
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(field_error(
                    &["metadata".into()],
                    format!("metadata may hold at most 16 keys, got {}", m.len()),
                ));
            }
            if let Some((k, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                return Err(field_error(
                    &["metadata".into(), k.as_str().into()],
                    format!("metadata values must be strings; '{k}' is not"),
                ));
            }
            Ok(Some(m.clone()))
        }
        Some(other) => Err(field_error(
            &["metadata".into()],
            format!("metadata must be an object of strings, got {other}"),
        )),
    }
}

/// `items` of a create or add request, checked and given ids.
fn items(body: &Map<String, Value>, required: bool) -> Result<Vec<Value>> {
    match body.get("items").filter(|v| !v.is_null()) {
        None if required => Err(field_error(
            &["items".into()],
            "items is required: a list of conversation items",
        )),
        None => Ok(Vec::new()),
        Some(list @ Value::Array(a)) => {
            if a.len() > MAX_ITEMS_PER_REQUEST {
                return Err(field_error(
                    &["items".into()],
                    format!(
                        "at most {MAX_ITEMS_PER_REQUEST} items may be added at once, got {}",
                        a.len()
                    ),
                ));
            }
            normalize_input(list).map_err(rename_input)
        }
        Some(other) => Err(field_error(
            &["items".into()],
            format!("items must be a list, got {other}"),
        )),
    }
}

/// An input error as an `items` error.
fn rename_input(error: Error) -> Error {
    let location = error.location().map(|l| {
        l.iter()
            .map(|v| {
                if v == "input" {
                    json!("items")
                } else {
                    v.clone()
                }
            })
            .collect::<Vec<_>>()
    });
    let message = error.message().replace("input[", "items[");
    let renamed = Error::new(error.kind(), message);
    match location {
        Some(l) => renamed.with_location(l),
        None => renamed,
    }
}

/// The chat history of `items` when it cannot be kept up to date item by item (after one is
/// deleted): outputs are kept even when their call is gone.
fn rebuild_messages(items: &[Value]) -> Vec<Value> {
    let mut known: HashSet<String> = items
        .iter()
        .filter_map(|i| i["call_id"].as_str().map(str::to_string))
        .collect();
    items_to_messages(items, &mut known).unwrap_or_default()
}

impl BuiltinResponses {
    pub(crate) async fn create_conversation(&self, body: Map<String, Value>) -> Result<Value> {
        let metadata = metadata(&body)?.unwrap_or_default();
        let items = items(&body, false)?;
        let messages = items_to_messages(&items, &mut HashSet::new()).map_err(rename_input)?;
        let id = new_id("conv");
        access::check_create(CONVERSATION_RESOURCE, &id)?;
        let conversation = json!({"id": id, "object": "conversation",
                                  "created_at": now_secs(), "metadata": metadata});
        put_items(
            self.store.as_ref(),
            &id,
            &ConversationItems { items, messages },
        )
        .await?;
        let record = ConversationRecord {
            conversation: conversation.clone(),
            owner: access::owner_for_new(),
        };
        let value = serde_json::to_value(&record).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put(CONVERSATION_KIND, &id, &value).await?;
        Ok(conversation)
    }

    pub(crate) async fn update_conversation(
        &self,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        let mut record = get_conversation(self.store.as_ref(), id, Action::Update).await?;
        let Some(metadata) = metadata(&body)? else {
            return Err(field_error(
                &["metadata".into()],
                "metadata is required: the conversation's new metadata",
            ));
        };
        record.conversation["metadata"] = Value::Object(metadata);
        let value = serde_json::to_value(&record).map_err(|e| Error::internal(e.to_string()))?;
        self.store.put(CONVERSATION_KIND, id, &value).await?;
        Ok(record.conversation)
    }

    pub(crate) async fn delete_conversation(&self, id: &str) -> Result<Value> {
        get_conversation(self.store.as_ref(), id, Action::Delete).await?;
        let lock = self.conversation_lock(id).await;
        let _guard = lock.lock().await;
        // The object goes first: without it the items can no longer be reached.
        self.store.delete(CONVERSATION_KIND, id).await?;
        self.store.delete(CONVERSATION_ITEMS_KIND, id).await?;
        Ok(json!({"id": id, "object": "conversation.deleted", "deleted": true}))
    }

    pub(crate) async fn add_conversation_items(
        &self,
        id: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        get_conversation(self.store.as_ref(), id, Action::Update).await?;
        let added = items(&body, true)?;
        let lock = self.conversation_lock(id).await;
        let _guard = lock.lock().await;
        let mut stored = get_items(self.store.as_ref(), id).await?;
        let mut known = tool_call_ids(&stored.messages);
        let messages = items_to_messages(&added, &mut known).map_err(rename_input)?;
        stored.items.extend(added.iter().cloned());
        stored.messages.extend(messages);
        put_items(self.store.as_ref(), id, &stored).await?;
        let id_of = |v: Option<&Value>| v.map(|i| i["id"].clone()).unwrap_or(Value::Null);
        Ok(
            json!({"object": "list", "data": added, "first_id": id_of(added.first()),
                  "last_id": id_of(added.last()), "has_more": false}),
        )
    }

    pub(crate) async fn delete_conversation_item(&self, id: &str, item_id: &str) -> Result<Value> {
        // Taking an item out changes the conversation, as adding one does.
        let record = get_conversation(self.store.as_ref(), id, Action::Update).await?;
        let lock = self.conversation_lock(id).await;
        let _guard = lock.lock().await;
        let mut stored = get_items(self.store.as_ref(), id).await?;
        let before = stored.items.len();
        stored.items.retain(|i| i["id"] != item_id);
        if stored.items.len() == before {
            return Err(Error::not_found(format!(
                "Conversation item '{item_id}' not found in conversation '{id}'. Use 'client.conversations.items.list(\"{id}\")' to list available conversation items."
            )));
        }
        stored.messages = rebuild_messages(&stored.items);
        put_items(self.store.as_ref(), id, &stored).await?;
        Ok(record.conversation)
    }
}
