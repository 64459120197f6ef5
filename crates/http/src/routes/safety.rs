//! `/v1/shields`, `/v1/safety/run-shield` and the OpenAI `/v1/moderations`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use llama_stack_stack::Stack;
use llama_stack_types::{
    ListShieldsResponse, ModerationObject, ModerationRequest, RegisterShieldRequest,
    RunShieldRequest, RunShieldResponse, Shield,
};

use crate::error::{ApiJson, Classic, ClassicError, OpenAi, OpenAiError};
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

#[utoipa::path(get, path = "/v1/shields", tag = "shields",
    responses((status = 200, body = ListShieldsResponse)))]
pub async fn list_shields(State(stack): State<Arc<Stack>>) -> Json<ListShieldsResponse> {
    Json(ListShieldsResponse {
        data: stack.safety.list_shields().await,
    })
}

#[utoipa::path(get, path = "/v1/shields/{identifier}", tag = "shields",
    params(("identifier" = String, Path, description = "May contain `/`")),
    responses((status = 200, body = Shield)))]
pub async fn get_shield(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Shield>, ClassicError> {
    Ok(Json(
        stack.safety.get_shield(id.trim_start_matches('/')).await?,
    ))
}

#[utoipa::path(post, path = "/v1/shields", tag = "shields",
    request_body = RegisterShieldRequest,
    responses((status = 200, body = Shield)))]
pub async fn register_shield(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RegisterShieldRequest, Classic>,
) -> Result<Json<Shield>, ClassicError> {
    Ok(Json(stack.safety.register_shield(request).await?))
}

#[utoipa::path(delete, path = "/v1/shields/{identifier}", tag = "shields",
    params(("identifier" = String, Path, description = "May contain `/`")),
    responses((status = 200, description = "`null`")))]
pub async fn unregister_shield(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<()>, ClassicError> {
    stack
        .safety
        .unregister_shield(id.trim_start_matches('/'))
        .await?;
    Ok(Json(()))
}

#[utoipa::path(post, path = "/v1/safety/run-shield", tag = "safety",
    request_body = RunShieldRequest,
    responses((status = 200, body = RunShieldResponse)))]
pub async fn run_shield(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RunShieldRequest, Classic>,
) -> Result<Json<RunShieldResponse>, ClassicError> {
    Ok(Json(stack.safety.run_shield(request).await?))
}

#[utoipa::path(post, path = "/v1/moderations", tag = "safety",
    request_body = ModerationRequest,
    responses((status = 200, body = ModerationObject)))]
pub async fn moderations(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<ModerationRequest, OpenAi>,
) -> Result<Json<ModerationObject>, OpenAiError> {
    Ok(Json(stack.safety.run_moderation(request).await?))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Safety),
            Form::Plain,
            declared!(list_shields, register_shield),
        )
        .add(
            Some(Api::Safety),
            Form::Slashed,
            declared!(get_shield, unregister_shield),
        )
        .add(Some(Api::Safety), Form::Plain, declared!(run_shield))
        .add(Some(Api::Safety), Form::AlsoOpenAi, declared!(moderations))
}
