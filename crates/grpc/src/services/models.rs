//! `llama_stack.v1.ModelsService`: the model registry.

use std::sync::Arc;

use llama_stack_stack::Stack;
use llama_stack_types as types;
use tonic::{Request, Response, Status};

use crate::convert::enum_value;
use crate::convert::json::{map_to_struct, opt_struct};
use crate::pb;
use crate::pb::models_service_server::ModelsService;
use crate::status::status;

pub(crate) struct Models(pub Arc<Stack>);

pub(crate) fn model_to_pb(model: types::Model) -> pb::Model {
    pb::Model {
        identifier: model.identifier,
        provider_resource_id: model.provider_resource_id,
        provider_id: model.provider_id,
        model_type: match model.model_type {
            types::ModelType::Llm => pb::ModelType::Llm,
            types::ModelType::Embedding => pb::ModelType::Embedding,
            types::ModelType::Rerank => pb::ModelType::Rerank,
        } as i32,
        metadata: Some(map_to_struct(&model.metadata)),
    }
}

/// Clients that end a base URL with `/` can produce ids with a leading slash; the HTTP routes
/// forgive it, and so does gRPC.
fn model_id(raw: &str) -> &str {
    raw.trim_start_matches('/')
}

#[tonic::async_trait]
impl ModelsService for Models {
    async fn list_models(
        &self,
        _request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ListModelsResponse>, Status> {
        let data = self
            .0
            .inference
            .list_models_for_clients()
            .await
            .into_iter()
            .map(|item| model_to_pb(item.model))
            .collect();
        Ok(Response::new(pb::ListModelsResponse { data }))
    }

    async fn get_model(
        &self,
        request: Request<pb::GetModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let id = request.into_inner().model_id;
        let model = self
            .0
            .inference
            .get_model(model_id(&id))
            .await
            .map_err(status)?;
        Ok(Response::new(model_to_pb(model)))
    }

    async fn register_model(
        &self,
        request: Request<pb::RegisterModelRequest>,
    ) -> Result<Response<pb::Model>, Status> {
        let request = request.into_inner();
        let model_type = match enum_value(request.model_type, "model_type").map_err(status)? {
            pb::ModelType::Unspecified => None,
            pb::ModelType::Llm => Some(types::ModelType::Llm),
            pb::ModelType::Embedding => Some(types::ModelType::Embedding),
            pb::ModelType::Rerank => Some(types::ModelType::Rerank),
        };
        let model = self
            .0
            .inference
            .register_model(types::RegisterModelRequest {
                model_id: request.model_id,
                provider_model_id: request.provider_model_id,
                provider_id: request.provider_id,
                metadata: opt_struct(request.metadata),
                model_type,
            })
            .await
            .map_err(status)?;
        Ok(Response::new(model_to_pb(model)))
    }

    async fn unregister_model(
        &self,
        request: Request<pb::UnregisterModelRequest>,
    ) -> Result<Response<pb::UnregisterModelResponse>, Status> {
        let id = request.into_inner().model_id;
        self.0
            .inference
            .unregister_model(model_id(&id))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnregisterModelResponse {}))
    }
}
