//! The OpenAI-compatible routes for providers that forward OpenAI requests to an upstream
//! speaking the same protocol ([`InferenceProvider::forwards_openai`]): the request goes out as
//! the client sent it, with only `model` replaced by the `provider_resource_id`, and the answer
//! comes back with `model` set to the name the client used.

use std::sync::Arc;

use futures::StreamExt;
use llama_stack_types::openai::{
    OpenAiChatCompletionRequest, OpenAiCompletionRequest, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse,
};
use llama_stack_types::{Model, ModelType};
use tracing::Instrument;

use crate::openai_compat::OpenAiOutput;
use crate::ops::{Observed, generation_span, require_llm};
use crate::provider::{ForwardedReply, InferenceProvider};
use crate::service::InferenceService;
use llama_stack_core::metrics::Generation;
use llama_stack_core::{Error, Result};

/// Sets the top-level `model` of an upstream object to the name the client asked for.
fn rename(mut value: serde_json::Value, model: &str) -> serde_json::Value {
    if let Some(object) = value.as_object_mut()
        && object.contains_key("model")
    {
        object.insert("model".into(), model.into());
    }
    value
}

fn renamed<T, S>(reply: ForwardedReply, model: String) -> OpenAiOutput<T, S> {
    match reply {
        ForwardedReply::Json(value) => OpenAiOutput::Forwarded(rename(value, &model)),
        ForwardedReply::Stream(stream) => OpenAiOutput::ForwardedStream(
            stream
                .map(move |item| item.map(|value| rename(value, &model)))
                .boxed(),
        ),
    }
}

/// `reply` with its generation timed and its tokens (the upstream's `usage`) counted, on
/// `span` too.
fn measured(
    reply: ForwardedReply,
    mut generation: Generation,
    span: tracing::Span,
) -> ForwardedReply {
    match reply {
        ForwardedReply::Json(value) => {
            if let Some(usage) = value.usage() {
                generation.tokens(usage.0, usage.1);
                crate::ops::record_usage(&span, usage);
            }
            generation.finish();
            ForwardedReply::Json(value)
        }
        ForwardedReply::Stream(stream) => {
            ForwardedReply::Stream(crate::ops::measured(stream, generation, span))
        }
    }
}

/// The model a request names and its provider, when that provider forwards OpenAI requests.
pub(crate) type Forwarding = Option<(Model, Arc<dyn InferenceProvider>)>;

impl InferenceService {
    /// Resolves `model_id` and says whether its provider forwards OpenAI requests. Callers
    /// treat an error as "not forwarded": the local path then reports it, in its usual order
    /// among the request's other problems.
    pub(crate) async fn forwarding(&self, model_id: &str) -> Result<Forwarding> {
        let (model, provider) = self.resolve_model(model_id).await?;
        Ok(provider.forwards_openai().then_some((model, provider)))
    }

    pub(crate) async fn forward_chat<T, S>(
        &self,
        (model, provider): (Model, Arc<dyn InferenceProvider>),
        mut request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<T, S>> {
        require_llm(&model, "chat completions")?;
        let asked = std::mem::replace(&mut request.model, model.provider_resource_id.clone());
        let span = generation_span("chat", &model);
        let meter = crate::budget::admit().instrument(span.clone()).await?;
        let generation = Generation::start(&model.identifier, &model.provider_id);
        let reply = provider
            .openai_chat_completion(&model, request)
            .instrument(span.clone())
            .await?;
        Ok(renamed(
            measured(crate::budget::forwarded(reply, meter), generation, span),
            asked,
        ))
    }

    pub(crate) async fn forward_completion<T, S>(
        &self,
        (model, provider): (Model, Arc<dyn InferenceProvider>),
        mut request: OpenAiCompletionRequest,
    ) -> Result<OpenAiOutput<T, S>> {
        require_llm(&model, "completions")?;
        let asked = std::mem::replace(&mut request.model, model.provider_resource_id.clone());
        let span = generation_span("text_completion", &model);
        let meter = crate::budget::admit().instrument(span.clone()).await?;
        let generation = Generation::start(&model.identifier, &model.provider_id);
        let reply = provider
            .openai_completion(&model, request)
            .instrument(span.clone())
            .await?;
        Ok(renamed(
            measured(crate::budget::forwarded(reply, meter), generation, span),
            asked,
        ))
    }

    pub(crate) async fn forward_embeddings(
        &self,
        (model, provider): (Model, Arc<dyn InferenceProvider>),
        mut request: OpenAiEmbeddingsRequest,
    ) -> Result<OpenAiEmbeddingsResponse> {
        if model.model_type != ModelType::Embedding {
            return Err(Error::invalid(format!(
                "Model '{}' is not an embedding model; embeddings need a model registered with model_type 'embedding'",
                model.identifier
            )));
        }
        let asked = std::mem::replace(&mut request.model, model.provider_resource_id.clone());
        let mut response = provider
            .openai_embeddings(&model, request)
            .instrument(generation_span("embeddings", &model))
            .await?;
        response.model = asked;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_existing_top_level_model_is_renamed() {
        let v = rename(
            serde_json::json!({"model": "up/m", "choices": [{"model": "x"}]}),
            "asked",
        );
        assert_eq!(v["model"], "asked");
        assert_eq!(v["choices"][0]["model"], "x");
        let v = rename(serde_json::json!({"error": {"message": "m"}}), "asked");
        assert!(v.get("model").is_none());
    }
}
