//! `/v1/models` and the OpenAI model list.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use llama_stack_stack::Stack;
use llama_stack_types::{DataList, Model, ModelListItem, OpenAiModel, RegisterModelRequest};

use crate::error::{ApiJson, Classic, ClassicError};
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

/// Clients that end a base URL with `/` can produce ids with a leading slash.
fn model_id(raw: &str) -> &str {
    raw.trim_start_matches('/')
}

#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, description = "Classic and OpenAI fields on every item", body = DataList<ModelListItem>)))]
pub async fn list_models(State(stack): State<Arc<Stack>>) -> Json<DataList<ModelListItem>> {
    Json(DataList {
        data: stack.inference.list_models_for_clients().await,
    })
}

#[utoipa::path(get, path = "/v1/models/{model_id}", tag = "models",
    params(("model_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, body = Model)))]
pub async fn get_model(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ClassicError> {
    Ok(Json(stack.inference.get_model(model_id(&id)).await?))
}

#[utoipa::path(post, path = "/v1/models", tag = "models",
    request_body = RegisterModelRequest,
    responses((status = 200, body = Model)))]
pub async fn register_model(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RegisterModelRequest, Classic>,
) -> Result<Json<Model>, ClassicError> {
    Ok(Json(stack.inference.register_model(request).await?))
}

#[utoipa::path(delete, path = "/v1/models/{model_id}", tag = "models",
    params(("model_id" = String, Path, description = "May contain `/`")),
    responses((status = 200, description = "`null`")))]
pub async fn unregister_model(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<()>, ClassicError> {
    stack.inference.unregister_model(model_id(&id)).await?;
    Ok(Json(()))
}

#[utoipa::path(get, path = "/v1/openai/v1/models", tag = "models",
    responses((status = 200, body = DataList<OpenAiModel>)))]
pub async fn openai_list_models(State(stack): State<Arc<Stack>>) -> Json<serde_json::Value> {
    let data: Vec<OpenAiModel> = stack
        .inference
        .list_models()
        .await
        .into_iter()
        .map(|m| OpenAiModel {
            id: m.identifier,
            object: "model".into(),
            created: 0,
            owned_by: "llama_stack".into(),
        })
        .collect();
    Json(serde_json::json!({"object": "list", "data": data}))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Inference),
            Form::Plain,
            declared!(list_models, register_model),
        )
        .add(
            Some(Api::Inference),
            Form::Slashed,
            declared!(get_model, unregister_model),
        )
        .add(
            Some(Api::Inference),
            Form::Plain,
            declared!(openai_list_models),
        )
}
