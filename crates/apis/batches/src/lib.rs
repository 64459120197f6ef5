//! The batches API (`/v1/batches`): OpenAI's Batch API. A batch is a JSONL file of requests
//! (uploaded with purpose `batch`) run in the background against one endpoint, answered by an
//! output file of results and an error file of failures.
//!
//! This crate owns what every provider shares: the batch object and its states, the checks of
//! a create request, and the validation of the input file line by line. Providers
//! (`inline::reference`) run the requests.

mod create;
mod input;
mod object;

use async_trait::async_trait;
use llama_stack_core::Result;
use serde_json::{Map, Value};

pub use create::{CreateBatch, batch_id_for_key};
pub use input::{BatchLine, MAX_LINES, referenced_models, validate_input};
pub use object::{BatchError, BatchErrors, BatchList, BatchObject, RequestCounts, Status};

/// The access-policy resource type of batches.
pub const BATCH: &str = "batch";

/// The endpoints a batch may run, as upstream serves them.
pub const ENDPOINTS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
];

/// The only completion window OpenAI and upstream accept.
pub const COMPLETION_WINDOW: &str = "24h";

/// How long a batch has before it expires, from its creation.
pub const COMPLETION_WINDOW_SECS: i64 = 24 * 3600;

#[async_trait]
pub trait Batches: Send + Sync {
    /// `POST /v1/batches`: checks the request and answers the new batch, `validating`; the
    /// input file is read in the background. With an `idempotency_key`, the same key answers
    /// the batch it first created.
    async fn create_batch(&self, body: Map<String, Value>) -> Result<BatchObject>;
    /// `GET /v1/batches/{batch_id}`.
    async fn get_batch(&self, batch_id: &str) -> Result<BatchObject>;
    /// `GET /v1/batches`: newest first, `after` a batch id, `limit` 1 to 100 (default 20).
    async fn list_batches(&self, after: Option<&str>, limit: Option<usize>) -> Result<BatchList>;
    /// `POST /v1/batches/{batch_id}/cancel`: `cancelling` until the requests under way end.
    async fn cancel_batch(&self, batch_id: &str) -> Result<BatchObject>;
    /// Takes up the batches an earlier process (or another replica) left unfinished, now and
    /// whenever their lease runs out.
    async fn resume(&self) -> Result<()>;
}
