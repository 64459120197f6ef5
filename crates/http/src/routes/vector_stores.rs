//! OpenAI vector stores: `/v1/vector_stores...`, also under `/v1/openai/v1/...`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use llama_stack_memory::PageQuery;
use llama_stack_stack::Stack;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{ApiJson, OpenAi, OpenAiError};
use crate::table::{Form, OPENAI_PREFIX, RouteTable, declared};
use llama_stack_core::Api;

type Body = ApiJson<Map<String, Value>, OpenAi>;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
    /// Only files with this ingestion status (file listing only).
    filter: Option<String>,
}

impl ListQuery {
    fn page(&self) -> PageQuery {
        PageQuery {
            limit: self.limit,
            order: self.order.clone(),
            after: self.after.clone(),
            before: self.before.clone(),
            last_of_window: false,
        }
    }
}

#[utoipa::path(post, path = "/v1/vector_stores", tag = "vector_stores",
    request_body = Object, responses((status = 200, description = "vector_store object")))]
pub async fn create(
    State(stack): State<Arc<Stack>>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.create_vector_store(body).await?))
}

#[utoipa::path(get, path = "/v1/vector_stores", tag = "vector_stores",
    params(ListQuery), responses((status = 200, description = "list of vector_store objects")))]
pub async fn list(
    State(stack): State<Arc<Stack>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.list_vector_stores(&q.page()).await?))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), responses((status = 200, description = "vector_store object")))]
pub async fn get(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.get_vector_store(&id).await?))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "vector_store object")))]
pub async fn update(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.update_vector_store(&id, body).await?))
}

#[utoipa::path(delete, path = "/v1/vector_stores/{vector_store_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), responses((status = 200, description = "deletion status")))]
pub async fn delete(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.delete_vector_store(&id).await?))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/search", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "vector_store.search_results.page")))]
pub async fn search(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    let mut page = stack.memory.search_vector_store(&id, body).await?;
    // 0.2-era clients (under the /v1/openai/v1 prefix) read `search_query` as the string they
    // sent; OpenAI and current upstream answer a list.
    if uri.path().starts_with(OPENAI_PREFIX)
        && let Some(Value::Array(queries)) = page.get("search_query")
    {
        let joined: Vec<&str> = queries.iter().filter_map(Value::as_str).collect();
        page["search_query"] = Value::String(joined.join(" "));
    }
    Ok(Json(page))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/files", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "vector_store.file object")))]
pub async fn attach_file(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.memory.attach_vector_store_file(&id, body).await?,
    ))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files", tag = "vector_stores",
    params(("vector_store_id" = String, Path), ListQuery),
    responses((status = 200, description = "list of vector_store.file objects")))]
pub async fn list_files(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, OpenAiError> {
    // Under the 0.2-era prefix, `last_id` is what 0.2 answered (see `PageQuery`).
    let page = PageQuery {
        last_of_window: uri.path().starts_with(OPENAI_PREFIX),
        ..q.page()
    };
    Ok(Json(
        stack
            .memory
            .list_vector_store_files(&id, &page, q.filter.as_deref())
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    responses((status = 200, description = "vector_store.file object")))]
pub async fn get_file(
    State(stack): State<Arc<Stack>>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.memory.get_vector_store_file(&id, &file_id).await?,
    ))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "vector_store.file object")))]
pub async fn update_file(
    State(stack): State<Arc<Stack>>,
    Path((id, file_id)): Path<(String, String)>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .memory
            .update_vector_store_file(&id, &file_id, body)
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector_stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    responses((status = 200, description = "deletion status")))]
pub async fn delete_file(
    State(stack): State<Arc<Stack>>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack.memory.delete_vector_store_file(&id, &file_id).await?,
    ))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}/content",
    tag = "vector_stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    responses((status = 200, description = "The file's text: `data` (OpenAI) and `content` (upstream 0.2)")))]
pub async fn file_content(
    State(stack): State<Arc<Stack>>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .memory
            .vector_store_file_content(&id, &file_id)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/file_batches", tag = "vector_stores",
    params(("vector_store_id" = String, Path)), request_body = Object,
    responses((status = 200, description = "vector_store.files_batch object, in_progress")))]
pub async fn create_file_batch(
    State(stack): State<Arc<Stack>>,
    Path(id): Path<String>,
    ApiJson(body, ..): Body,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.create_file_batch(&id, body).await?))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}",
    tag = "vector_stores", params(("vector_store_id" = String, Path), ("batch_id" = String, Path)),
    responses((status = 200, description = "vector_store.files_batch object")))]
pub async fn get_file_batch(
    State(stack): State<Arc<Stack>>,
    Path((id, batch_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.get_file_batch(&id, &batch_id).await?))
}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel",
    tag = "vector_stores", params(("vector_store_id" = String, Path), ("batch_id" = String, Path)),
    responses((status = 200, description = "vector_store.files_batch object")))]
pub async fn cancel_file_batch(
    State(stack): State<Arc<Stack>>,
    Path((id, batch_id)): Path<(String, String)>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(stack.memory.cancel_file_batch(&id, &batch_id).await?))
}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files",
    tag = "vector_stores",
    params(("vector_store_id" = String, Path), ("batch_id" = String, Path), ListQuery),
    responses((status = 200, description = "list of the batch's vector_store.file objects")))]
pub async fn list_file_batch_files(
    State(stack): State<Arc<Stack>>,
    Path((id, batch_id)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(
        stack
            .memory
            .list_file_batch_files(&id, &batch_id, &q.page(), q.filter.as_deref())
            .await?,
    ))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    let api = Some(Api::VectorIo);
    table
        .add(
            Some(Api::VectorIo),
            Form::AlsoOpenAi,
            declared!(create, list),
        )
        .add(
            Some(Api::VectorIo),
            Form::AlsoOpenAi,
            declared!(get, update, delete),
        )
        .add(Some(Api::VectorIo), Form::AlsoOpenAi, declared!(search))
        .add(
            Some(Api::VectorIo),
            Form::AlsoOpenAi,
            declared!(attach_file, list_files),
        )
        .add(
            Some(Api::VectorIo),
            Form::AlsoOpenAi,
            declared!(get_file, update_file, delete_file),
        )
        .add(
            Some(Api::VectorIo),
            Form::AlsoOpenAi,
            declared!(file_content),
        )
        .add(api, Form::AlsoOpenAi, declared!(create_file_batch))
        .add(api, Form::AlsoOpenAi, declared!(get_file_batch))
        .add(api, Form::AlsoOpenAi, declared!(cancel_file_batch))
        .add(api, Form::AlsoOpenAi, declared!(list_file_batch_files))
}
