//! The inference API trait every inference provider implements.

use async_trait::async_trait;
use futures::stream::BoxStream;
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponseStreamChunk, CompletionRequest,
    CompletionResponseStreamChunk, EmbeddingsRequest, HealthInfo, HealthStatus, Model,
};

use crate::error::{Error, Result};

/// A stream of classic chat chunks: `start`, `progress`..., `complete` (with `metrics`).
pub type ChatStream = BoxStream<'static, Result<ChatCompletionResponseStreamChunk>>;
/// A stream of classic completion chunks; the last carries `stop_reason` and `metrics`.
pub type CompletionStream = BoxStream<'static, Result<CompletionResponseStreamChunk>>;

/// What a provider computes for an embeddings request: one vector per input, in input order,
/// and the number of tokens read (the OpenAI route reports it as `usage`).
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// An inference provider. Requests arrive already validated and resolved: `model` is the
/// registered model and the request's `model_id` is its `provider_resource_id`.
///
/// Providers always stream; the stack collects a stream for non-streaming calls, and converts
/// it for the OpenAI-compatible routes, so one implementation serves every route.
#[async_trait]
pub trait InferenceProvider: Send + Sync {
    /// Called before a model is registered on this provider: check it can be served and load
    /// what it needs. An error refuses the registration.
    async fn register_model(&self, model: &Model) -> Result<()>;

    /// Called after a model was unregistered.
    async fn unregister_model(&self, _model: &Model) -> Result<()> {
        Ok(())
    }

    async fn chat_completion(
        &self,
        model: &Model,
        request: ChatCompletionRequest,
    ) -> Result<ChatStream>;

    async fn completion(
        &self,
        model: &Model,
        request: CompletionRequest,
    ) -> Result<CompletionStream>;

    /// Embeds `request.contents`. The stack has checked that the model is an embedding model,
    /// that there is at least one input, and that `text_truncation` and `task_type` hold known
    /// values; [`crate::inference_ops::embedding_texts`] reads the inputs as text.
    async fn embeddings(&self, model: &Model, _request: EmbeddingsRequest) -> Result<Embeddings> {
        Err(Error::unsupported(format!(
            "model '{}' is served by a provider without embeddings support",
            model.identifier
        )))
    }

    async fn health(&self) -> HealthInfo {
        HealthInfo {
            status: HealthStatus::NotImplemented,
            message: Some("Provider does not implement health check".into()),
        }
    }
}
