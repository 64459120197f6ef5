//! The inference service: the inference providers, the model registry that routes each request
//! to one of them, and the handle other APIs call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{RegistryStore, Result};
use llama_stack_types::openai::{OpenAiChatCompletion, OpenAiChatCompletionRequest};
use llama_stack_types::{ChatCompletionRequest, EmbeddingsRequest, Model};
use tokio::sync::RwLock;

use crate::openai_compat::{OpenAiChatStream, OpenAiOutput};
use crate::provider::{ChatStream, Embeddings, InferenceProvider};

/// The inference API as the other APIs see it (safety's guard models, memory's embeddings,
/// the agents' turn loop). The stack's [`InferenceService`] implements it.
#[async_trait]
pub trait InferenceApi: Send + Sync {
    /// A registered (or provider-listed) model by identifier.
    async fn get_model(&self, model_id: &str) -> Result<Model>;
    /// Every model served.
    async fn list_models(&self) -> Vec<Model>;
    /// A classic chat completion, routed to the model's provider; always a stream.
    async fn chat_completion(&self, request: ChatCompletionRequest) -> Result<ChatStream>;
    /// Embeddings of the request's contents by an embedding model.
    async fn embed(&self, request: EmbeddingsRequest) -> Result<Embeddings>;
    /// An OpenAI chat completion (`POST /v1/chat/completions`): translated for providers that
    /// speak the classic API, forwarded as it is to upstreams that speak OpenAI's.
    async fn openai_chat_completion(
        &self,
        request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>>;
    /// An OpenAI inference route's request as its JSON body (`/v1/chat/completions`,
    /// `/v1/completions` or `/v1/embeddings`), answered as that route's JSON, never streamed:
    /// how batches run their lines.
    async fn openai_json(
        &self,
        endpoint: &str,
        _body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        Err(llama_stack_core::Error::unsupported(format!(
            "{endpoint} is not served by this inference handle"
        )))
    }
}

/// The inference providers by id and the model registry over them.
pub struct InferenceService {
    pub(crate) providers: Vec<(String, Arc<dyn InferenceProvider>)>,
    pub(crate) store: Arc<dyn RegistryStore>,
    /// Registered models by identifier; the store is the source of truth across restarts.
    /// Also holds the models providers list on their own, which are not stored.
    pub(crate) models: RwLock<BTreeMap<String, Model>>,
    /// The identifiers in `models` that come from provider model lists.
    pub(crate) listed: RwLock<BTreeSet<String>>,
}

impl InferenceService {
    pub fn new(
        providers: Vec<(String, Arc<dyn InferenceProvider>)>,
        store: Arc<dyn RegistryStore>,
    ) -> Self {
        InferenceService {
            providers,
            store,
            models: RwLock::new(BTreeMap::new()),
            listed: RwLock::new(BTreeSet::new()),
        }
    }

    pub(crate) fn inference_provider(
        &self,
        provider_id: &str,
    ) -> Option<Arc<dyn InferenceProvider>> {
        self.providers
            .iter()
            .find(|(id, _)| id == provider_id)
            .map(|(_, p)| p.clone())
    }

    /// Every inference provider with its id.
    pub(crate) fn inference_providers(&self) -> Vec<(String, Arc<dyn InferenceProvider>)> {
        self.providers.clone()
    }

    pub(crate) fn inference_provider_ids(&self) -> Vec<String> {
        self.providers.iter().map(|(id, _)| id.clone()).collect()
    }
}

#[async_trait]
impl InferenceApi for InferenceService {
    async fn get_model(&self, model_id: &str) -> Result<Model> {
        InferenceService::get_model(self, model_id).await
    }

    async fn list_models(&self) -> Vec<Model> {
        InferenceService::list_models(self).await
    }

    async fn chat_completion(&self, request: ChatCompletionRequest) -> Result<ChatStream> {
        InferenceService::chat_completion(self, request).await
    }

    async fn embed(&self, request: EmbeddingsRequest) -> Result<Embeddings> {
        InferenceService::embed(self, request).await
    }

    async fn openai_chat_completion(
        &self,
        request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>> {
        InferenceService::openai_chat_completion(self, request).await
    }

    async fn openai_json(
        &self,
        endpoint: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        InferenceService::openai_json(self, endpoint, body).await
    }
}
