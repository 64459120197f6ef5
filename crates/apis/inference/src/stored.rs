//! Stored chat completions: a `POST /v1/chat/completions` with `store: true` keeps its request
//! messages and its answer in the metadata store, for `GET /v1/chat/completions` (list),
//! `GET /v1/chat/completions/{id}` and `GET /v1/chat/completions/{id}/messages`. A streamed
//! answer is put together from its chunks and stored when the stream ends; one the client
//! abandons is not stored.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use futures::stream::BoxStream;
use llama_stack_core::access::{self, Action, User};
use llama_stack_core::{Error, Result};
use llama_stack_types::openai::OpenAiChatCompletionRequest;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use llama_stack_core::RegistryStore;

use crate::service::InferenceService;

const KIND: &str = "chat_completion";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCompletion {
    completion: Value,
    input_messages: Vec<Value>,
    /// Creation order, finer than `created`.
    seq: u64,
    /// The authenticated caller that created it; `None` while auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<User>,
}

impl StoredCompletion {
    fn id(&self) -> &str {
        self.completion["id"].as_str().unwrap_or_default()
    }

    fn readable(&self) -> bool {
        access::can_read(KIND, self.id(), self.owner.as_ref())
    }
}

/// Paging of the list routes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompletionQuery {
    pub after: Option<String>,
    pub limit: Option<usize>,
    pub model: Option<String>,
    /// `asc` (the default, as OpenAI) or `desc`.
    pub order: Option<String>,
}

/// Whether a request asks to be stored.
pub(crate) fn wants_store(request: &OpenAiChatCompletionRequest) -> bool {
    request.extra.get("store").and_then(Value::as_bool) == Some(true)
}

/// An answer assembled from stream chunks (typed or forwarded, both as JSON).
#[derive(Default)]
struct Assembled {
    id: Option<String>,
    created: Option<Value>,
    model: Option<String>,
    content: String,
    tool_calls: Vec<Value>,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

impl Assembled {
    fn add(&mut self, chunk: &Value) {
        if self.id.is_none() {
            self.id = chunk["id"].as_str().map(str::to_string);
            self.created = chunk.get("created").cloned();
            self.model = chunk["model"].as_str().map(str::to_string);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str() {
            self.content.push_str(text);
        }
        for (position, call) in delta["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let slot = call["index"]
                .as_u64()
                .map(|i| i as usize)
                .unwrap_or(position);
            while self.tool_calls.len() <= slot {
                self.tool_calls.push(json!({"id": null, "type": "function",
                    "function": {"name": "", "arguments": ""}}));
            }
            let entry = &mut self.tool_calls[slot];
            if let Some(id) = call["id"].as_str() {
                entry["id"] = json!(id);
            }
            for field in ["name", "arguments"] {
                if let Some(piece) = call["function"][field].as_str() {
                    let so_far = entry["function"][field].as_str().unwrap_or_default();
                    entry["function"][field] = json!(format!("{so_far}{piece}"));
                }
            }
        }
    }

    fn completion(self, fallback_model: &str) -> Value {
        let mut message = json!({"role": "assistant", "content": self.content});
        if !self.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(self.tool_calls);
        }
        json!({
            "id": self.id.unwrap_or_else(|| format!("chatcmpl-{}", uuid::Uuid::new_v4())),
            "object": "chat.completion",
            "created": self.created.unwrap_or(json!(llama_stack_core::now_secs())),
            "model": self.model.unwrap_or_else(|| fallback_model.to_string()),
            "choices": [{"index": 0, "message": message,
                         "finish_reason": self.finish_reason.unwrap_or_else(|| "stop".into()),
                         "logprobs": null}],
            "usage": self.usage,
        })
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!(
        "Chat completion '{id}' not found; only completions created with store: true are kept"
    ))
    .with_location(vec!["path".into(), "completion_id".into()])
}

fn page(items: Vec<Value>, query: &CompletionQuery) -> Result<Value> {
    let request = llama_stack_core::paging::PageRequest {
        limit: query.limit,
        order: query.order.as_deref(),
        after: query.after.as_deref(),
        before: None,
    };
    // Oldest first by default, as OpenAI lists stored completions.
    llama_stack_core::paging::page(items, request, 20, "asc")
}

/// Keeps an answer with the request's messages.
pub(crate) async fn store_completion(
    store: &dyn RegistryStore,
    completion: Value,
    request: &OpenAiChatCompletionRequest,
) -> Result<()> {
    let id = completion["id"].as_str().unwrap_or_default().to_string();
    let input_messages = request
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut m = serde_json::to_value(m).unwrap_or(Value::Null);
            if let Some(obj) = m.as_object_mut() {
                obj.insert("id".into(), json!(format!("{id}-{i}")));
            }
            m
        })
        .collect();
    let mut completion = completion;
    if let Some(metadata) = request.extra.get("metadata").filter(|m| m.is_object()) {
        completion["metadata"] = metadata.clone();
    }
    let record = StoredCompletion {
        completion,
        input_messages,
        seq: llama_stack_core::now_nanos(),
        owner: access::owner_for_new(),
    };
    let value = serde_json::to_value(&record).map_err(|e| Error::internal(e.to_string()))?;
    store.put(KIND, &id, &value).await
}

/// A stream that stores the answer it carried once it has been read to its end.
pub(crate) fn storing_stream<T: Serialize + Send + 'static>(
    store: Arc<dyn RegistryStore>,
    stream: BoxStream<'static, Result<T>>,
    request: OpenAiChatCompletionRequest,
) -> BoxStream<'static, Result<T>> {
    let assembled = Arc::new(Mutex::new(Assembled::default()));
    let tap = assembled.clone();
    let tapped = stream.inspect(move |item| {
        if let Ok(chunk) = item
            && let Ok(value) = serde_json::to_value(chunk)
            && let Ok(mut a) = tap.lock()
        {
            a.add(&value);
        }
    });
    // The stream ends after the handler returned: the answer belongs to the request's caller,
    // whatever scope the last poll runs in.
    let caller = access::current();
    let finish = futures::stream::once(access::within(caller, async move {
        let done = std::mem::take(&mut *assembled.lock().unwrap_or_else(|p| p.into_inner()));
        let completion = done.completion(&request.model);
        if let Err(e) = store_completion(store.as_ref(), completion, &request).await {
            tracing::error!(error = %e, "Cannot store a chat completion");
        }
    }))
    .filter_map(|()| async { None });
    tapped.chain(finish).boxed()
}

impl InferenceService {
    async fn stored(&self) -> Result<Vec<StoredCompletion>> {
        let mut all: Vec<StoredCompletion> = self
            .store
            .list(KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        all.sort_by_key(|r| r.seq);
        Ok(all)
    }

    /// `GET /v1/chat/completions`.
    pub async fn list_chat_completions(&self, query: &CompletionQuery) -> Result<Value> {
        let items = self
            .stored()
            .await?
            .into_iter()
            .filter(StoredCompletion::readable)
            .filter(|r| {
                query
                    .model
                    .as_deref()
                    .is_none_or(|m| r.completion["model"].as_str() == Some(m))
            })
            .map(|r| {
                let mut c = r.completion;
                c["input_messages"] = Value::Array(r.input_messages);
                c
            })
            .collect();
        page(items, query)
    }

    /// A stored completion the caller may do `action` to; one they may not read is not found.
    async fn stored_one(&self, id: &str, action: Action) -> Result<StoredCompletion> {
        let record: StoredCompletion = self
            .store
            .get(KIND, id)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| not_found(id))?;
        access::check(action, KIND, id, record.owner.as_ref(), || not_found(id))?;
        Ok(record)
    }

    /// `GET /v1/chat/completions/{id}`.
    pub async fn get_chat_completion(&self, id: &str) -> Result<Value> {
        let record = self.stored_one(id, Action::Read).await?;
        let mut c = record.completion;
        c["input_messages"] = Value::Array(record.input_messages);
        Ok(c)
    }

    /// `GET /v1/chat/completions/{id}/messages`.
    pub async fn list_chat_completion_messages(
        &self,
        id: &str,
        query: &CompletionQuery,
    ) -> Result<Value> {
        page(
            self.stored_one(id, Action::Read).await?.input_messages,
            query,
        )
    }

    /// `DELETE /v1/chat/completions/{id}`.
    pub async fn delete_chat_completion(&self, id: &str) -> Result<Value> {
        self.stored_one(id, Action::Delete).await?;
        if !self.store.delete(KIND, id).await? {
            return Err(not_found(id));
        }
        Ok(json!({"id": id, "object": "chat.completion.deleted", "deleted": true}))
    }
}

/// The metadata a request may carry (`metadata`: string values), checked.
pub(crate) fn check_metadata(request: &OpenAiChatCompletionRequest) -> Result<()> {
    match request.extra.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
        Some(_) => Err(
            Error::invalid("metadata must be an object of string values")
                .with_location(vec!["body".into(), "metadata".into()]),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_assemble_into_a_completion() {
        let mut a = Assembled::default();
        a.add(&json!({"id": "c1", "created": 5, "model": "m",
                      "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]}));
        a.add(&json!({"id": "c1", "choices": [{"index": 0, "delta": {"content": "lo",
            "tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{\"a\""}}]}}]}));
        a.add(&json!({"id": "c1", "choices": [{"index": 0, "delta": {
            "tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}, "finish_reason": "tool_calls"}]}));
        a.add(&json!({"id": "c1", "choices": [], "usage": {"total_tokens": 3}}));
        let c = a.completion("fallback");
        assert_eq!(c["id"], "c1");
        assert_eq!(c["model"], "m");
        assert_eq!(c["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            c["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":1}"
        );
        assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(c["usage"]["total_tokens"], 3);
    }

    #[test]
    fn pages_default_to_oldest_first() {
        let items: Vec<Value> = (1..=3).map(|i| json!({"id": format!("c{i}")})).collect();
        let first = page(
            items.clone(),
            &CompletionQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(first["first_id"], "c1");
        assert_eq!(first["has_more"], true);
        let rest = page(
            items,
            &CompletionQuery {
                after: Some("c2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(rest["data"][0]["id"], "c3");
    }
}
