//! The inference API trait every inference provider implements.

use async_trait::async_trait;
use futures::stream::BoxStream;
use llama_stack_types::openai::{
    OpenAiChatCompletionRequest, OpenAiCompletionRequest, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse,
};
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponseStreamChunk, CompletionRequest,
    CompletionResponseStreamChunk, EmbeddingsRequest, HealthInfo, HealthStatus, Model, ModelType,
    RerankRequest, RerankResponse,
};

use llama_stack_core::{Error, Result};

/// A stream of classic chat chunks: `start`, `progress`..., `complete` (with `metrics`).
pub type ChatStream = BoxStream<'static, Result<ChatCompletionResponseStreamChunk>>;
/// A stream of classic completion chunks; the last carries `stop_reason` and `metrics`.
pub type CompletionStream = BoxStream<'static, Result<CompletionResponseStreamChunk>>;

/// A stream of OpenAI-shaped JSON objects as an upstream sent them.
pub type JsonStream = BoxStream<'static, Result<serde_json::Value>>;

/// An OpenAI-shaped answer a provider forwards from its upstream: one object, or the objects of
/// an event stream.
pub enum ForwardedReply {
    Json(serde_json::Value),
    Stream(JsonStream),
}

/// A model a provider serves on its own account (an upstream's model list), for the stack to
/// list as `provider_id/provider_resource_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderModel {
    pub provider_resource_id: String,
    pub model_type: ModelType,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

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
    /// values; `ops::embedding_texts` reads the inputs as text.
    async fn embeddings(&self, model: &Model, _request: EmbeddingsRequest) -> Result<Embeddings> {
        Err(Error::unsupported(format!(
            "model '{}' is served by a provider without embeddings support",
            model.identifier
        )))
    }

    /// Scores `request.items` against `request.query` for `POST /v1alpha/inference/rerank`. The
    /// stack has checked that the model is a rerank model and that there is at least one item,
    /// and set `request.model` to the `provider_resource_id`; `rerank::rerank_texts` reads the
    /// inputs as text. The answer may come in any order and may leave items out (an upstream
    /// asked for `max_num_results`); the stack sorts it and cuts it to `max_num_results`.
    async fn rerank(&self, model: &Model, _request: RerankRequest) -> Result<RerankResponse> {
        Err(Error::unsupported(format!(
            "model '{}' is served by provider '{}', which does not support reranking",
            model.identifier, model.provider_id
        )))
    }

    /// Whether the OpenAI-compatible routes hand requests to this provider as they came (with
    /// `model` set to the `provider_resource_id`) through the `openai_*` methods below, instead of
    /// converting them to classic requests. Providers in front of an OpenAI-compatible server
    /// say yes, so that nothing the client asked for is lost in translation.
    fn forwards_openai(&self) -> bool {
        false
    }

    /// `POST /v1/chat/completions` for a provider that [forwards](Self::forwards_openai).
    async fn openai_chat_completion(
        &self,
        model: &Model,
        _request: OpenAiChatCompletionRequest,
    ) -> Result<ForwardedReply> {
        Err(not_forwarded(model))
    }

    /// `POST /v1/completions` for a provider that [forwards](Self::forwards_openai).
    async fn openai_completion(
        &self,
        model: &Model,
        _request: OpenAiCompletionRequest,
    ) -> Result<ForwardedReply> {
        Err(not_forwarded(model))
    }

    /// `POST /v1/embeddings` for a provider that [forwards](Self::forwards_openai).
    async fn openai_embeddings(
        &self,
        model: &Model,
        _request: OpenAiEmbeddingsRequest,
    ) -> Result<OpenAiEmbeddingsResponse> {
        Err(not_forwarded(model))
    }

    /// The models the provider offers on its own (an upstream's model list), or `None` when it
    /// does not list them. The stack lists them beside the registered models without storing
    /// them.
    async fn list_provider_models(&self) -> Option<Result<Vec<ProviderModel>>> {
        None
    }

    async fn health(&self) -> HealthInfo {
        HealthInfo {
            status: HealthStatus::NotImplemented,
            message: Some("Provider does not implement health check".into()),
        }
    }
}

fn not_forwarded(model: &Model) -> Error {
    Error::internal(format!(
        "provider '{}' does not forward OpenAI requests",
        model.provider_id
    ))
}
