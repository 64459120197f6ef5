//! The files API: `/v1/files...`, also under `/v1/openai/v1/...`, with OpenAI error bodies.

use std::sync::Arc;

use axum::Json;

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use llama_stack_core::Error;
use llama_stack_memory::files::{FileDeleted, FileList, FileObject};
use llama_stack_memory::files_ops::{FileUpload, ListFilesParams};
use llama_stack_stack::Stack;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use llama_stack_core::Api;

use crate::error::{ErrorFlavor, OpenAi, OpenAiError};
use crate::table::{Form, RouteTable, declared};

/// Largest upload `POST /v1/files` accepts; other routes keep the server-wide limit.
/// The default of `server.limits.max_upload_bytes`; the route table applies the configured one.
pub const MAX_UPLOAD_BYTES: usize = 512 * 1024 * 1024;

/// The routes of the files API; see [`crate::table`]. Uploads get their own body limit.
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    let files = Some(Api::Files);
    table
        .add(
            files,
            Form::AlsoOpenAi,
            declared!(upload, list).with_body_limit(MAX_UPLOAD_BYTES),
        )
        .add(files, Form::AlsoOpenAi, declared!(retrieve, remove))
        .add(files, Form::AlsoOpenAi, declared!(content))
}

/// The OpenAI file object.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiFile {
    /// Always `file`.
    object: String,
    /// `file-` and 32 hex digits.
    id: String,
    bytes: u64,
    created_at: i64,
    expires_at: Option<i64>,
    filename: String,
    purpose: String,
}

impl From<FileObject> for OpenAiFile {
    fn from(f: FileObject) -> Self {
        OpenAiFile {
            object: f.object,
            id: f.id,
            bytes: f.bytes,
            created_at: f.created_at,
            expires_at: f.expires_at,
            filename: f.filename,
            purpose: f.purpose,
        }
    }
}

/// An OpenAI list of files.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiFileList {
    /// Always `list`.
    object: String,
    data: Vec<OpenAiFile>,
    has_more: bool,
    first_id: String,
    last_id: String,
}

impl From<FileList> for OpenAiFileList {
    fn from(list: FileList) -> Self {
        OpenAiFileList {
            object: list.object,
            data: list.data.into_iter().map(Into::into).collect(),
            has_more: list.has_more,
            first_id: list.first_id,
            last_id: list.last_id,
        }
    }
}

/// `DELETE /v1/files/{file_id}` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiFileDeleted {
    id: String,
    /// Always `file`.
    object: String,
    deleted: bool,
}

impl From<FileDeleted> for OpenAiFileDeleted {
    fn from(d: FileDeleted) -> Self {
        OpenAiFileDeleted {
            id: d.id,
            object: d.object,
            deleted: d.deleted,
        }
    }
}

/// The multipart form of an upload, as the openai SDK sends it (documentation only).
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct UploadFileForm {
    /// The document.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `assistants`, `batch`, `fine-tune`, `vision`, `user_data` or `evals`.
    purpose: String,
    /// Only `created_at`.
    #[serde(rename = "expires_after[anchor]")]
    expires_after_anchor: Option<String>,
    /// 3600 (1 hour) to 2592000 (30 days).
    #[serde(rename = "expires_after[seconds]")]
    expires_after_seconds: Option<i64>,
}

/// `GET /v1/files` query parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListFilesQuery {
    /// The `last_id` of the previous page.
    after: Option<String>,
    /// 1 to 10000 (the default).
    limit: Option<String>,
    /// `asc` or `desc` (the default) by creation time.
    order: Option<String>,
    /// Only files with this purpose.
    purpose: Option<String>,
}

fn invalid_at(location: &[&str], message: String) -> OpenAiError {
    Error::invalid(message)
        .with_location(location.iter().map(|s| (*s).into()).collect())
        .into()
}

/// A multipart problem keeps its status (413 for an upload over the limit).
fn multipart_problem(status: StatusCode, detail: String) -> Response {
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "The upload is larger than the server accepts (server.limits.max_upload_bytes)".to_string()
    } else {
        format!("The upload must be multipart/form-data with the fields file and purpose: {detail}")
    };
    let mut response = OpenAi::response(&Error::invalid(message));
    *response.status_mut() = status;
    response
}

async fn field_text(field: Field<'_>, location: &[&str]) -> Result<String, Response> {
    field.text().await.map_err(|e| {
        let name = location.join(".");
        multipart_problem(
            e.status(),
            format!("cannot read the field {name}: {}", e.body_text()),
        )
    })
}

/// Reads the form; unknown fields are ignored, as upstream's FastAPI form does.
async fn read_upload(mut form: Multipart) -> Result<FileUpload, Response> {
    let mut upload = FileUpload::default();
    let mut seconds_text = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(multipart_problem(e.status(), e.body_text())),
        };
        match field.name().unwrap_or_default() {
            "file" => {
                upload.filename = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(|e| {
                    multipart_problem(
                        e.status(),
                        format!("cannot read the file: {}", e.body_text()),
                    )
                })?;
                upload.content = Some(bytes.to_vec());
            }
            "purpose" => upload.purpose = Some(field_text(field, &["purpose"]).await?),
            "expires_after[anchor]" => {
                upload.expires_after_anchor = Some(field_text(field, &["expires_after"]).await?)
            }
            "expires_after[seconds]" => {
                seconds_text = Some(field_text(field, &["expires_after"]).await?)
            }
            _ => {}
        }
    }
    if let Some(text) = seconds_text {
        let seconds = text.trim().parse::<i64>().map_err(|_| {
            invalid_at(
                &["body", "expires_after", "seconds"],
                format!("expires_after[seconds] must be an integer; got '{text}'"),
            )
            .into_response()
        })?;
        upload.expires_after_seconds = Some(seconds);
    }
    Ok(upload)
}

#[utoipa::path(post, path = "/v1/files", tag = "files",
    request_body(content = UploadFileForm, content_type = "multipart/form-data"),
    responses((status = 200, body = OpenAiFile)))]
pub async fn upload(
    State(stack): State<Arc<Stack>>,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let form = match form {
        Ok(form) => form,
        Err(rejection) => return multipart_problem(rejection.status(), rejection.body_text()),
    };
    let upload = match read_upload(form).await {
        Ok(upload) => upload,
        Err(response) => return response,
    };
    match stack.memory.create_file(upload).await {
        Ok(file) => Json(OpenAiFile::from(file)).into_response(),
        Err(err) => OpenAiError::from(err).into_response(),
    }
}

#[utoipa::path(get, path = "/v1/files", tag = "files",
    params(ListFilesQuery), responses((status = 200, body = OpenAiFileList)))]
pub async fn list(
    State(stack): State<Arc<Stack>>,
    query: Result<Query<ListFilesQuery>, QueryRejection>,
) -> Result<Json<OpenAiFileList>, OpenAiError> {
    let Query(query) =
        query.map_err(|e| Error::invalid(format!("Invalid query string: {}", e.body_text())))?;
    let limit = match query.limit {
        None => None,
        Some(text) => Some(text.trim().parse::<i64>().map_err(|_| {
            invalid_at(
                &["query", "limit"],
                format!("limit must be an integer; got '{text}'"),
            )
        })?),
    };
    let list = stack
        .memory
        .list_files(ListFilesParams {
            after: query.after,
            limit,
            order: query.order,
            purpose: query.purpose,
        })
        .await?;
    Ok(Json(list.into()))
}

#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files",
    params(("file_id" = String, Path)), responses((status = 200, body = OpenAiFile)))]
pub async fn retrieve(
    State(stack): State<Arc<Stack>>,
    Path(file_id): Path<String>,
) -> Result<Json<OpenAiFile>, OpenAiError> {
    Ok(Json(stack.memory.get_file(&file_id).await?.into()))
}

#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "files",
    params(("file_id" = String, Path)), responses((status = 200, body = OpenAiFileDeleted)))]
pub async fn remove(
    State(stack): State<Arc<Stack>>,
    Path(file_id): Path<String>,
) -> Result<Json<OpenAiFileDeleted>, OpenAiError> {
    Ok(Json(stack.memory.delete_file(&file_id).await?.into()))
}

#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "files",
    params(("file_id" = String, Path)),
    responses((status = 200,
        description = "The raw bytes, with the Content-Type the file name implies (`text/markdown`, `application/pdf`, ...; `application/octet-stream` when unknown)",
        content_type = "*/*")))]
pub async fn content(
    State(stack): State<Arc<Stack>>,
    Path(file_id): Path<String>,
) -> Result<Response, OpenAiError> {
    let download = stack.memory.file_download(&file_id).await?;
    let mut response = download.content.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(download.content_type),
    );
    if let Ok(value) = HeaderValue::from_str(&content_disposition(&download.filename)) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    // An uploaded page must not be sniffed into something a browser would run.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `attachment; filename="..."` with an ASCII fallback, plus the exact name as RFC 5987
/// `filename*` when it is not plain ASCII.
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '_',
        })
        .collect();
    if fallback == filename {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let encoded: String = filename
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
#[path = "files_tests.rs"]
pub(crate) mod tests;
