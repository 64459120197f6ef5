//! `llama_stack.v1.InferenceService`: the classic inference calls.

use std::sync::Arc;

use llama_stack_inference::ops::{collect_chat, collect_completion};
use llama_stack_stack::Stack;
use tonic::{Request, Response, Status};

use crate::convert::inference as convert;
use crate::pb;
use crate::pb::inference_service_server::InferenceService;
use crate::status::status;
use crate::stream::{ReplyStream, deadline, reply};

pub(crate) struct Inference(pub Arc<Stack>);

#[tonic::async_trait]
impl InferenceService for Inference {
    async fn chat_completion(
        &self,
        request: Request<pb::ChatCompletionRequest>,
    ) -> Result<Response<pb::ChatCompletionResponse>, Status> {
        let request = convert::chat_request_from_pb(request.into_inner()).map_err(status)?;
        self.0.info.check_limits(&request).map_err(status)?;
        let chunks = self
            .0
            .inference
            .chat_completion(request)
            .await
            .map_err(status)?;
        let response = collect_chat(chunks).await.map_err(status)?;
        Ok(Response::new(convert::chat_response_to_pb(response)))
    }

    type StreamChatCompletionStream = ReplyStream<pb::ChatCompletionStreamChunk>;

    async fn stream_chat_completion(
        &self,
        request: Request<pb::ChatCompletionRequest>,
    ) -> Result<Response<Self::StreamChatCompletionStream>, Status> {
        let deadline = deadline(request.metadata());
        let mut request = convert::chat_request_from_pb(request.into_inner()).map_err(status)?;
        self.0.info.check_limits(&request).map_err(status)?;
        request.stream = Some(true);
        let chunks = self
            .0
            .inference
            .chat_completion(request)
            .await
            .map_err(status)?;
        Ok(Response::new(reply(
            chunks,
            convert::chat_chunk_to_pb,
            deadline,
        )))
    }

    async fn completion(
        &self,
        request: Request<pb::CompletionRequest>,
    ) -> Result<Response<pb::CompletionResponse>, Status> {
        let request = convert::completion_request_from_pb(request.into_inner()).map_err(status)?;
        self.0.info.check_limits(&request).map_err(status)?;
        let chunks = self.0.inference.completion(request).await.map_err(status)?;
        let response = collect_completion(chunks).await.map_err(status)?;
        Ok(Response::new(convert::completion_response_to_pb(response)))
    }

    type StreamCompletionStream = ReplyStream<pb::CompletionStreamChunk>;

    async fn stream_completion(
        &self,
        request: Request<pb::CompletionRequest>,
    ) -> Result<Response<Self::StreamCompletionStream>, Status> {
        let deadline = deadline(request.metadata());
        let mut request =
            convert::completion_request_from_pb(request.into_inner()).map_err(status)?;
        self.0.info.check_limits(&request).map_err(status)?;
        request.stream = Some(true);
        let chunks = self.0.inference.completion(request).await.map_err(status)?;
        Ok(Response::new(reply(
            chunks,
            convert::completion_chunk_to_pb,
            deadline,
        )))
    }

    async fn embeddings(
        &self,
        request: Request<pb::EmbeddingsRequest>,
    ) -> Result<Response<pb::EmbeddingsResponse>, Status> {
        let request = convert::embeddings_request_from_pb(request.into_inner()).map_err(status)?;
        self.0.info.check_limits(&request).map_err(status)?;
        let response = self.0.inference.embeddings(request).await.map_err(status)?;
        Ok(Response::new(pb::EmbeddingsResponse {
            embeddings: response
                .embeddings
                .into_iter()
                .map(|values| pb::Embedding { values })
                .collect(),
        }))
    }
}
