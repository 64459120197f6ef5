//! The OpenAI Responses and Conversations API (`/v1/responses`, `/v1/conversations`): the trait
//! a responses provider implements. The reference implementation, with its inference and tool
//! loop, is the `inline::builtin` provider; another implementation is one provider crate
//! implementing [`Responses`] plus one registration line.
//!
//! Requests and objects cross this boundary as JSON in the OpenAI shapes, as the vector store
//! routes do: the provider parses each request itself so that a bad field is reported with its
//! name, and the objects it answers with are exactly what is stored and streamed.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use llama_stack_core::Result;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The events of one streamed response, each a JSON object with its `type` and an increasing
/// `sequence_number`, ending with `response.completed`, `response.incomplete` or
/// `response.failed`.
pub type ResponseEvents = BoxStream<'static, Result<Value>>;

/// What `POST /v1/responses` answers.
pub enum CreatedResponse {
    /// The response object: finished, or `queued` for a background response.
    Object(Value),
    /// `stream: true`: the events as they happen.
    Stream(ResponseEvents),
}

/// Paging of `GET /v1/responses`, `GET /v1/responses/{id}/input_items` and
/// `GET /v1/conversations/{id}/items`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// Items per page, 1 to 100 (default 20; 50 for listing responses).
    pub limit: Option<usize>,
    /// `asc` or `desc` (default `desc`).
    pub order: Option<String>,
    /// Start after this id.
    pub after: Option<String>,
    /// Stop before this id.
    pub before: Option<String>,
    /// Only responses of this model (listing responses only).
    pub model: Option<String>,
}

#[async_trait]
pub trait Responses: Send + Sync {
    /// `POST /v1/responses`. Runs to its end even when the caller stops reading the stream.
    async fn create_response(self: Arc<Self>, body: Map<String, Value>) -> Result<CreatedResponse>;
    /// `GET /v1/responses/{id}`.
    async fn get_response(&self, id: &str) -> Result<Value>;
    /// `GET /v1/responses`: stored responses, newest first unless `order` is `asc`.
    async fn list_responses(&self, query: ListQuery) -> Result<Value>;
    /// `DELETE /v1/responses/{id}`, with its input items.
    async fn delete_response(&self, id: &str) -> Result<Value>;
    /// `GET /v1/responses/{id}/input_items`.
    async fn list_input_items(&self, id: &str, query: ListQuery) -> Result<Value>;
    /// `POST /v1/responses/{id}/cancel`: stops a background response that has not finished.
    async fn cancel_response(&self, id: &str) -> Result<Value>;

    /// Called once the stack has restored its registries: background responses an earlier
    /// process left queued or running are started again, so none stays `in_progress` for ever.
    async fn resume_background(self: Arc<Self>) -> Result<()>;

    /// `POST /v1/conversations`.
    async fn create_conversation(&self, body: Map<String, Value>) -> Result<Value>;
    /// `GET /v1/conversations/{id}`.
    async fn get_conversation(&self, id: &str) -> Result<Value>;
    /// `POST /v1/conversations/{id}`: replaces its metadata.
    async fn update_conversation(&self, id: &str, body: Map<String, Value>) -> Result<Value>;
    /// `DELETE /v1/conversations/{id}`, with its items.
    async fn delete_conversation(&self, id: &str) -> Result<Value>;
    /// `GET /v1/conversations/{id}/items`.
    async fn list_conversation_items(&self, id: &str, query: ListQuery) -> Result<Value>;
    /// `POST /v1/conversations/{id}/items`.
    async fn add_conversation_items(&self, id: &str, body: Map<String, Value>) -> Result<Value>;
    /// `GET /v1/conversations/{id}/items/{item_id}`.
    async fn get_conversation_item(&self, id: &str, item_id: &str) -> Result<Value>;
    /// `DELETE /v1/conversations/{id}/items/{item_id}`: answers with the conversation.
    async fn delete_conversation_item(&self, id: &str, item_id: &str) -> Result<Value>;
}
