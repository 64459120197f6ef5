//! The OpenAI Responses API (`/v1/responses`, also under `/v1/openai/v1/...`) and Conversations
//! (`/v1/conversations`). A streamed response is SSE of its events.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use llama_stack_responses::{CreatedResponse, ListQuery};
use llama_stack_stack::Stack;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::sse::sse_response;
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

type Body = ApiJson<Map<String, Value>, OpenAi>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1 to 100 (default 20; 50 when listing responses).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `asc` or `desc` (default `desc`).
    order: Option<String>,
    /// Start after this id.
    after: Option<String>,
    /// Stop before this id.
    before: Option<String>,
    /// Only responses of this model (listing responses only).
    model: Option<String>,
}

impl PageParams {
    fn query(self) -> ListQuery {
        ListQuery {
            limit: self.limit,
            order: self.order,
            after: self.after,
            before: self.before,
            model: self.model,
        }
    }
}

#[utoipa::path(post, path = "/v1/responses", tag = "responses", request_body = Object,
    responses((status = 200, description = "The response object, or with `stream: true` SSE of response events",
        content((Object = "application/json"), (Object = "text/event-stream")))))]
pub async fn create_response(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Response, OpenAiError> {
    Ok(match stack.responses()?.create_response(body).await? {
        CreatedResponse::Object(object) => Json(object).into_response(),
        CreatedResponse::Stream(events) => sse_response(events),
    })
}

#[utoipa::path(get, path = "/v1/responses", tag = "responses", params(PageParams),
    responses((status = 200, description = "A list of stored responses")))]
pub async fn list_responses(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<PageParams>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.list_responses(q.query()).await?))
}

#[utoipa::path(get, path = "/v1/responses/{response_id}", tag = "responses",
    params(("response_id" = String, Path)), responses((status = 200, description = "The response object")))]
pub async fn get_response(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.get_response(&id).await?))
}

#[utoipa::path(delete, path = "/v1/responses/{response_id}", tag = "responses",
    params(("response_id" = String, Path)), responses((status = 200, description = "Deletion status")))]
pub async fn delete_response(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.delete_response(&id).await?))
}

#[utoipa::path(get, path = "/v1/responses/{response_id}/input_items", tag = "responses",
    params(("response_id" = String, Path), PageParams),
    responses((status = 200, description = "A list of the response's input items")))]
pub async fn list_input_items(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.responses()?.list_input_items(&id, q.query()).await?,
    ))
}

#[utoipa::path(post, path = "/v1/responses/{response_id}/cancel", tag = "responses",
    params(("response_id" = String, Path)), responses((status = 200, description = "The cancelled response")))]
pub async fn cancel_response(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.cancel_response(&id).await?))
}

#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = Object,
    responses((status = 200, description = "The conversation object")))]
pub async fn create_conversation(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.create_conversation(body).await?))
}

#[utoipa::path(get, path = "/v1/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path)), responses((status = 200, description = "The conversation object")))]
pub async fn get_conversation(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.get_conversation(&id).await?))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "The conversation object")))]
pub async fn update_conversation(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.responses()?.update_conversation(&id, body).await?,
    ))
}

#[utoipa::path(delete, path = "/v1/conversations/{conversation_id}", tag = "conversations",
    params(("conversation_id" = String, Path)), responses((status = 200, description = "Deletion status")))]
pub async fn delete_conversation(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.responses()?.delete_conversation(&id).await?))
}

#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/items", tag = "conversations",
    params(("conversation_id" = String, Path), PageParams),
    responses((status = 200, description = "A list of conversation items")))]
pub async fn list_items(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    Query(q): Query<PageParams>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .responses()?
            .list_conversation_items(&id, q.query())
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/conversations/{conversation_id}/items", tag = "conversations",
    params(("conversation_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "A list of the added items")))]
pub async fn add_items(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.responses()?.add_conversation_items(&id, body).await?,
    ))
}

#[utoipa::path(get, path = "/v1/conversations/{conversation_id}/items/{item_id}", tag = "conversations",
    params(("conversation_id" = String, Path), ("item_id" = String, Path)),
    responses((status = 200, description = "The item")))]
pub async fn get_item(
    State(stack): State<Arc<Stack>>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .responses()?
            .get_conversation_item(&id, &item_id)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/conversations/{conversation_id}/items/{item_id}", tag = "conversations",
    params(("conversation_id" = String, Path), ("item_id" = String, Path)),
    responses((status = 200, description = "The conversation object")))]
pub async fn delete_item(
    State(stack): State<Arc<Stack>>,
    Path((id, item_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .responses()?
            .delete_conversation_item(&id, &item_id)
            .await?,
    ))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    let api = Some(Api::Responses);
    table
        .add(
            api,
            Form::AlsoOpenAi,
            declared!(create_response, list_responses),
        )
        .add(
            api,
            Form::AlsoOpenAi,
            declared!(get_response, delete_response),
        )
        .add(api, Form::AlsoOpenAi, declared!(list_input_items))
        .add(api, Form::AlsoOpenAi, declared!(cancel_response))
        .add(api, Form::Plain, declared!(create_conversation))
        .add(
            api,
            Form::Plain,
            declared!(get_conversation, update_conversation, delete_conversation),
        )
        .add(api, Form::Plain, declared!(list_items, add_items))
        .add(api, Form::Plain, declared!(get_item, delete_item))
}
