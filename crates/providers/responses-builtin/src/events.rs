//! The streamed events of a response: each gets its `type` and the next `sequence_number`.
//! A response that is not streamed has no receiver, and nothing is built for it.

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use llama_stack_core::Result;

pub(crate) struct Emitter {
    next: u64,
    tx: Option<UnboundedSender<Result<Value>>>,
    /// Set by the run: upstream's item and content part events carry it, and
    /// llama-stack-client 0.7 reads those events by it.
    pub response_id: String,
}

/// The events that carry `response_id`.
const WITH_RESPONSE_ID: &[&str] = &[
    "response.output_item.added",
    "response.output_item.done",
    "response.content_part.added",
    "response.content_part.done",
];

impl Emitter {
    pub(crate) fn new(tx: Option<UnboundedSender<Result<Value>>>) -> Self {
        Emitter {
            next: 0,
            tx,
            response_id: String::new(),
        }
    }

    pub(crate) fn streaming(&self) -> bool {
        self.tx.is_some()
    }

    /// Sends one event. A client that went away does not stop the response: it runs to its
    /// end and is stored whole.
    pub(crate) fn emit(&mut self, kind: &str, body: impl FnOnce() -> Value) {
        let Some(tx) = &self.tx else {
            return;
        };
        let mut event = body();
        if let Some(obj) = event.as_object_mut() {
            obj.insert("type".into(), json!(kind));
            obj.insert("sequence_number".into(), json!(self.next));
            if WITH_RESPONSE_ID.contains(&kind) {
                obj.insert("response_id".into(), json!(self.response_id));
            }
        }
        self.next += 1;
        let _ = tx.send(Ok(event));
    }

    /// `response.output_item.added` or `.done`.
    pub(crate) fn item(&mut self, done: bool, output_index: usize, item: &Value) {
        let kind = if done {
            "response.output_item.done"
        } else {
            "response.output_item.added"
        };
        self.emit(kind, || json!({"output_index": output_index, "item": item}));
    }

    /// A tool call's progress event (`response.file_search_call.searching`, ...).
    pub(crate) fn progress(&mut self, kind: &str, output_index: usize, item_id: &str) {
        self.emit(
            kind,
            || json!({"output_index": output_index, "item_id": item_id}),
        );
    }
}
