//! The `InferenceProvider` of every remote type: classic requests translated to the OpenAI
//! protocol, OpenAI requests forwarded as they came, and the upstream's model list.

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_inference::ops::embedding_texts;
use llama_stack_inference::{
    ChatStream, CompletionStream, Embeddings, ForwardedReply, InferenceProvider, ProviderModel,
};
use llama_stack_types::openai::{
    OpenAiChatCompletionRequest, OpenAiCompletionRequest, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse,
};
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, HealthInfo, HealthStatus, Model,
    ModelType, RerankRequest, RerankResponse,
};
use serde_json::Value;

use crate::client::Client;
use crate::config::{ModelListing, Settings};
use crate::flavor::{Flavor, RerankRoute};
use crate::translate::{self, RequestOptions};

pub struct RemoteProvider {
    client: Client,
    rerank: RerankRoute,
    options: RequestOptions,
    listing: ModelListing,
    refresh_models: bool,
}

impl RemoteProvider {
    pub fn new(flavor: &'static Flavor, provider_id: &str, settings: &Settings) -> Result<Self> {
        Ok(RemoteProvider {
            client: Client::new(flavor, provider_id, settings)?,
            rerank: flavor.rerank,
            options: RequestOptions {
                extra_sampling: flavor.extra_sampling,
                default_max_tokens: settings.default_max_tokens,
            },
            listing: settings.listing.clone(),
            refresh_models: settings.refresh_models,
        })
    }

    /// The upstream's model ids.
    async fn upstream_models(&self) -> Result<Vec<String>> {
        let (url, key, id_field) = match &self.listing {
            ModelListing::OpenAi => (self.client.url("models"), "data", "id"),
            ModelListing::OllamaTags(url) => (url.clone(), "models", "name"),
        };
        let value = self.client.get_json(&url).await?;
        let items = value.get(key).and_then(Value::as_array).ok_or_else(|| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "{} answered {url} without a `{key}` list",
                    self.client.label()
                ),
            )
        })?;
        Ok(items
            .iter()
            .filter_map(|m| m.get(id_field).and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }

    async fn forward(&self, path: &str, body: Value, stream: bool) -> Result<ForwardedReply> {
        if stream {
            Ok(ForwardedReply::Stream(
                self.client.post_stream(path, &body).await?,
            ))
        } else {
            Ok(ForwardedReply::Json(
                self.client.post_json(path, &body).await?,
            ))
        }
    }
}

fn offered_tools(request: &ChatCompletionRequest) -> Vec<String> {
    request
        .tools
        .iter()
        .flatten()
        .map(|t| t.tool_name.clone())
        .collect()
}

#[async_trait]
impl InferenceProvider for RemoteProvider {
    /// Accepted without asking the upstream: a model registered while the upstream is down
    /// still registers, and start-up never waits on the network. A model the upstream does
    /// not serve fails on use, with the upstream's own message.
    async fn register_model(&self, _model: &Model) -> Result<()> {
        Ok(())
    }

    async fn chat_completion(
        &self,
        _model: &Model,
        request: ChatCompletionRequest,
    ) -> Result<ChatStream> {
        let stream = request.stream.unwrap_or(false);
        let body = translate::chat_body(&request, stream, self.options)?;
        let offered = offered_tools(&request);
        let label = self.client.label();
        if stream {
            let upstream = self.client.post_stream("chat/completions", &body).await?;
            return Ok(translate::chat_events(label, offered, upstream));
        }
        // A whole answer is read inside this call, so the resilience layer's timeout and
        // retries cover all of it.
        let answer = self.client.post_json("chat/completions", &body).await?;
        let events = translate::chat_answer(label, offered, answer)?;
        Ok(futures::stream::iter(events.into_iter().map(Ok)).boxed())
    }

    async fn completion(
        &self,
        _model: &Model,
        request: CompletionRequest,
    ) -> Result<CompletionStream> {
        let stream = request.stream.unwrap_or(false);
        let body = translate::completion_body(&request, stream, self.options)?;
        let label = self.client.label();
        if stream {
            let upstream = self.client.post_stream("completions", &body).await?;
            return Ok(translate::completion_events(label, upstream));
        }
        let answer = self.client.post_json("completions", &body).await?;
        let chunks = translate::completion_answer(label, answer)?;
        Ok(futures::stream::iter(chunks.into_iter().map(Ok)).boxed())
    }

    async fn embeddings(&self, _model: &Model, request: EmbeddingsRequest) -> Result<Embeddings> {
        let texts = embedding_texts(&request.contents)?;
        let inputs = texts.len();
        let body = translate::embeddings_body(&request.model_id, texts, request.output_dimension);
        let answer = self.client.post_json("embeddings", &body).await?;
        translate::embeddings(&self.client.label(), answer, inputs)
    }

    async fn rerank(&self, model: &Model, request: RerankRequest) -> Result<RerankResponse> {
        let url = match self.rerank {
            RerankRoute::ServerRoot(path) => self.client.root_url(path),
            RerankRoute::BaseUrl(path) => self.client.url(path),
            RerankRoute::None => {
                return Err(Error::unsupported(format!(
                    "model '{}' is served by {}, which has no rerank route",
                    model.identifier,
                    self.client.label()
                )));
            }
        };
        let body = crate::rerank::rerank_body(&request)?;
        let answer = self.client.post_json_to(&url, &body).await?;
        crate::rerank::rerank_answer(&self.client.label(), answer)
    }

    fn forwards_openai(&self) -> bool {
        true
    }

    async fn openai_chat_completion(
        &self,
        _model: &Model,
        request: OpenAiChatCompletionRequest,
    ) -> Result<ForwardedReply> {
        let stream = request.stream.unwrap_or(false);
        let body = translate::forwarded_body(&request)?;
        self.forward("chat/completions", body, stream).await
    }

    async fn openai_completion(
        &self,
        _model: &Model,
        request: OpenAiCompletionRequest,
    ) -> Result<ForwardedReply> {
        let stream = request.stream.unwrap_or(false);
        let body = translate::forwarded_body(&request)?;
        self.forward("completions", body, stream).await
    }

    async fn openai_embeddings(
        &self,
        _model: &Model,
        request: OpenAiEmbeddingsRequest,
    ) -> Result<OpenAiEmbeddingsResponse> {
        let body = translate::forwarded_body(&request)?;
        let answer = self.client.post_json("embeddings", &body).await?;
        translate::openai_embeddings(&self.client.label(), answer)
    }

    async fn list_provider_models(&self) -> Option<Result<Vec<ProviderModel>>> {
        if !self.refresh_models {
            return None;
        }
        Some(self.upstream_models().await.map(|ids| {
            ids.into_iter()
                .map(|id| ProviderModel {
                    provider_resource_id: id,
                    // Model lists do not say which models embed; those are registered by hand
                    // with their dimension.
                    model_type: ModelType::Llm,
                    metadata: Default::default(),
                })
                .collect()
        }))
    }

    async fn health(&self) -> HealthInfo {
        match self.upstream_models().await {
            Ok(models) => HealthInfo {
                status: HealthStatus::Ok,
                message: Some(format!("upstream serves {} model(s)", models.len())),
            },
            Err(err) => HealthInfo {
                status: HealthStatus::Error,
                message: Some(err.to_string()),
            },
        }
    }
}
