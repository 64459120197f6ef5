//! `POST /v1alpha/inference/rerank`. Errors take the OpenAI shape with 404 for an unknown
//! model, as upstream's current server answers every route.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use llama_stack_stack::Stack;
use llama_stack_types::{RerankRequest, RerankResponse};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

#[utoipa::path(post, path = "/v1alpha/inference/rerank", tag = "inference",
    request_body = RerankRequest,
    responses((status = 200, description = "The items' indices by relevance score, highest first",
        body = RerankResponse)))]
pub async fn rerank(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<RerankRequest, OpenAi>,
) -> Result<Json<RerankResponse>, OpenAiError> {
    Ok(Json(stack.inference.rerank(request).await?))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table.add(Some(Api::Inference), Form::Plain, declared!(rerank))
}
