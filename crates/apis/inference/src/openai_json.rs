//! OpenAI-route requests given as their JSON bodies and answered as the JSON the route would
//! answer: how a batch runs its lines without knowing the request types.

use llama_stack_core::{Error, Result};
use llama_stack_types::openai::{
    OpenAiChatCompletionRequest, OpenAiCompletionRequest, OpenAiEmbeddingsRequest,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::openai_compat::OpenAiOutput;
use crate::service::InferenceService;

fn parse<T: DeserializeOwned>(endpoint: &str, body: Value) -> Result<T> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let mut location = vec![Value::from("body")];
        location.extend(
            path.split('.')
                .filter(|p| !p.is_empty() && *p != "?")
                .map(Value::from),
        );
        Error::invalid(format!(
            "Invalid request body for {endpoint} at '{path}': {}",
            e.inner()
        ))
        .with_location(location)
    })
}

fn to_json<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value)
        .map_err(|e| Error::internal(format!("cannot encode an answer: {e}")))
}

fn answer<T: Serialize, S>(output: OpenAiOutput<T, S>) -> Result<Value> {
    match output {
        OpenAiOutput::Complete(answer) => to_json(&answer),
        OpenAiOutput::Forwarded(answer) => Ok(answer),
        OpenAiOutput::Stream(_) | OpenAiOutput::ForwardedStream(_) => Err(Error::invalid(
            "Streaming is not supported here: leave `stream` unset",
        )),
    }
}

impl InferenceService {
    /// `POST {endpoint}` with `body`, for `/v1/chat/completions`, `/v1/completions` and
    /// `/v1/embeddings`, never streamed.
    pub async fn openai_json(&self, endpoint: &str, body: Value) -> Result<Value> {
        match endpoint {
            "/v1/chat/completions" => {
                let request: OpenAiChatCompletionRequest = parse(endpoint, body)?;
                answer(self.openai_chat_completion(request).await?)
            }
            "/v1/completions" => {
                let request: OpenAiCompletionRequest = parse(endpoint, body)?;
                answer(self.openai_completion(request).await?)
            }
            "/v1/embeddings" => {
                let request: OpenAiEmbeddingsRequest = parse(endpoint, body)?;
                to_json(&self.openai_embeddings(request).await?)
            }
            other => Err(Error::invalid(format!(
                "{other} is not an OpenAI inference route; one of /v1/chat/completions, /v1/completions, /v1/embeddings"
            ))),
        }
    }
}
