//! Batches (`/v1/batches`): OpenAI's Batch API, served by the batches provider.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use llama_stack_batches::{BatchList, BatchObject};
use llama_stack_core::Api;
use llama_stack_stack::Stack;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::table::{Form, RouteTable, declared};

type Body = ApiJson<Map<String, Value>, OpenAi>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Start after this batch id.
    after: Option<String>,
    /// Batches per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

#[utoipa::path(post, path = "/v1/batches", tag = "batches", request_body = Object,
    responses((status = 200, description = "The new batch, `validating`; with an `idempotency_key` used before, the batch it created")))]
pub async fn create_batch(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Json<BatchObject>, OpenAiError> {
    Ok(Json(stack.batches()?.create_batch(body).await?))
}

#[utoipa::path(get, path = "/v1/batches", tag = "batches", params(ListParams),
    responses((status = 200, description = "The batches the caller may read, newest first")))]
pub async fn list_batches(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<ListParams>,
) -> Result<Json<BatchList>, OpenAiError> {
    Ok(Json(
        stack
            .batches()?
            .list_batches(q.after.as_deref(), q.limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/batches/{batch_id}", tag = "batches",
    params(("batch_id" = String, Path)),
    responses((status = 200, description = "The batch, with its request counts and files")))]
pub async fn get_batch(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, OpenAiError> {
    Ok(Json(stack.batches()?.get_batch(&id).await?))
}

#[utoipa::path(post, path = "/v1/batches/{batch_id}/cancel", tag = "batches",
    params(("batch_id" = String, Path)),
    responses((status = 200, description = "The batch, `cancelling` until the requests under way end")))]
pub async fn cancel_batch(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<BatchObject>, OpenAiError> {
    Ok(Json(stack.batches()?.cancel_batch(&id).await?))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    let api = Some(Api::Batches);
    table
        .add(api, Form::Plain, declared!(create_batch, list_batches))
        .add(api, Form::Plain, declared!(get_batch))
        .add(api, Form::Plain, declared!(cancel_batch))
}
