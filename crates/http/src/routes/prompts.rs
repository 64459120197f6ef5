//! Prompts (`/v1/prompts`): versioned prompt templates.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use llama_stack_prompts::Prompt;
use llama_stack_stack::Stack;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::table::{Form, RouteTable, declared};

type Body = ApiJson<Map<String, Value>, OpenAi>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// The version to get (default: the default version).
    #[param(minimum = 1)]
    version: Option<u32>,
}

#[utoipa::path(post, path = "/v1/prompts", tag = "prompts", request_body = Object,
    responses((status = 200, description = "The created prompt (version 1, the default)")))]
pub async fn create_prompt(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Json<Prompt>, OpenAiError> {
    Ok(Json(stack.prompts.create_prompt(body).await?))
}

#[utoipa::path(get, path = "/v1/prompts", tag = "prompts",
    responses((status = 200, description = "The default version of each prompt")))]
pub async fn list_prompts(State(stack): State<Arc<Stack>>) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.prompts.list_prompts().await?))
}

#[utoipa::path(get, path = "/v1/prompts/{prompt_id}", tag = "prompts",
    params(("prompt_id" = String, Path), VersionQuery),
    responses((status = 200, description = "The prompt at that version")))]
pub async fn get_prompt(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> Result<Json<Prompt>, OpenAiError> {
    Ok(Json(stack.prompts.get_prompt(&id, q.version).await?))
}

#[utoipa::path(put, path = "/v1/prompts/{prompt_id}", tag = "prompts",
    params(("prompt_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "The new version")))]
pub async fn update_prompt(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Prompt>, OpenAiError> {
    Ok(Json(stack.prompts.update_prompt(&id, body).await?))
}

#[utoipa::path(delete, path = "/v1/prompts/{prompt_id}", tag = "prompts",
    params(("prompt_id" = String, Path)),
    responses((status = 204, description = "Deleted, with every version")))]
pub async fn delete_prompt(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<StatusCode, OpenAiError> {
    stack.prompts.delete_prompt(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/prompts/{prompt_id}/versions", tag = "prompts",
    params(("prompt_id" = String, Path)),
    responses((status = 200, description = "Every version of the prompt")))]
pub async fn list_prompt_versions(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.prompts.list_prompt_versions(&id).await?))
}

#[utoipa::path(put, path = "/v1/prompts/{prompt_id}/set-default-version", tag = "prompts",
    params(("prompt_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "The version now the default")))]
pub async fn set_default_version(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Prompt>, OpenAiError> {
    Ok(Json(stack.prompts.set_default_version(&id, body).await?))
}

/// The routes of this API; see [`crate::table`]. Prompts need only the metadata store, so
/// every distribution serves them.
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(None, Form::Plain, declared!(create_prompt, list_prompts))
        .add(
            None,
            Form::Plain,
            declared!(get_prompt, update_prompt, delete_prompt),
        )
        .add(None, Form::Plain, declared!(list_prompt_versions))
        .add(None, Form::Plain, declared!(set_default_version))
}
