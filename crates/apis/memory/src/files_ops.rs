//! `/v1/files`: checks requests the way OpenAI does and calls the configured files provider.
//! Both transports call these; errors carry the location of the offending field. Files are
//! owned by their uploader: the caller sees only the files the access policy lets them read,
//! and one they may not read answers exactly as a missing one.

use std::sync::Arc;

use crate::files::{
    FileDeleted, FileDownload, FileList, FileListQuery, FileObject, FilePage, FilesProvider,
    NewFile, file_not_found,
};
use crate::service::{FILE, MemoryService};
use llama_stack_core::access::{self, Action, Caller};
use llama_stack_core::{Error, Result};

/// The `purpose` values OpenAI accepts.
pub const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// `expires_after.seconds` bounds: one hour to thirty days, as OpenAI.
pub const MIN_EXPIRES_AFTER_SECONDS: i64 = 3600;
pub const MAX_EXPIRES_AFTER_SECONDS: i64 = 2_592_000;

/// Most files one list page returns, and the default page size (upstream's).
pub const MAX_LIST_LIMIT: i64 = 10_000;

/// The name upstream gives an upload that came without one.
const DEFAULT_FILENAME: &str = "uploaded_file";

/// An upload as a transport received it, before any checks.
#[derive(Debug, Clone, Default)]
pub struct FileUpload {
    /// The `file` part's bytes; `None` when the request had no `file` part.
    pub content: Option<Vec<u8>>,
    /// The `file` part's file name.
    pub filename: Option<String>,
    pub purpose: Option<String>,
    /// `expires_after[anchor]`: only `created_at` is defined.
    pub expires_after_anchor: Option<String>,
    /// `expires_after[seconds]`.
    pub expires_after_seconds: Option<i64>,
}

/// `GET /v1/files` query parameters as received.
#[derive(Debug, Clone, Default)]
pub struct ListFilesParams {
    pub after: Option<String>,
    pub limit: Option<i64>,
    /// `asc` or `desc` (the default).
    pub order: Option<String>,
    pub purpose: Option<String>,
}

fn body_error(path: &[&str], message: impl Into<String>) -> Error {
    let mut location = vec![serde_json::Value::from("body")];
    location.extend(path.iter().map(|p| serde_json::Value::from(*p)));
    Error::invalid(message).with_location(location)
}

fn query_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["query".into(), field.into()])
}

fn check_purpose(purpose: &str) -> Option<String> {
    (!PURPOSES.contains(&purpose)).then(|| {
        format!(
            "purpose must be one of {}; got '{purpose}'",
            PURPOSES.join(", ")
        )
    })
}

/// The content type a download is labelled with, from the file name's extension.
pub fn content_type_for(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "text" | "log" => "text/plain; charset=utf-8",
        "md" | "markdown" => "text/markdown; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/jsonl",
        "xml" => "application/xml",
        "yaml" | "yml" => "application/yaml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

impl MemoryService {
    /// The configured files provider (the first, when run.yaml lists several).
    pub fn files_provider(&self) -> Result<Arc<dyn FilesProvider>> {
        self.files_providers
            .first()
            .map(|(_, f)| f.clone())
            .ok_or_else(|| {
                Error::unsupported(
                    "No files provider is configured; add inline::localfs under providers.files in run.yaml",
                )
            })
    }

    /// `POST /v1/files`.
    pub async fn create_file(&self, upload: FileUpload) -> Result<FileObject> {
        let content = upload.content.ok_or_else(|| {
            body_error(
                &["file"],
                "file is required: send the document as the multipart form field `file`",
            )
        })?;
        let purpose = upload.purpose.ok_or_else(|| {
            body_error(
                &["purpose"],
                format!("purpose is required; one of {}", PURPOSES.join(", ")),
            )
        })?;
        if let Some(message) = check_purpose(&purpose) {
            return Err(body_error(&["purpose"], message));
        }
        let expires_after_seconds = match (
            upload.expires_after_anchor,
            upload.expires_after_seconds,
        ) {
            (None, None) => None,
            (Some(anchor), Some(seconds)) => {
                if anchor != "created_at" {
                    return Err(body_error(
                        &["expires_after", "anchor"],
                        format!("expires_after[anchor] must be 'created_at'; got '{anchor}'"),
                    ));
                }
                if !(MIN_EXPIRES_AFTER_SECONDS..=MAX_EXPIRES_AFTER_SECONDS).contains(&seconds) {
                    return Err(body_error(
                        &["expires_after", "seconds"],
                        format!(
                            "expires_after[seconds] must be between {MIN_EXPIRES_AFTER_SECONDS} (1 hour) \
                                 and {MAX_EXPIRES_AFTER_SECONDS} (30 days); got {seconds}"
                        ),
                    ));
                }
                Some(seconds)
            }
            (anchor, _) => {
                let missing = if anchor.is_none() {
                    "anchor"
                } else {
                    "seconds"
                };
                return Err(body_error(
                    &["expires_after", missing],
                    "expires_after needs both expires_after[anchor] (created_at) and \
                         expires_after[seconds]",
                ));
            }
        };
        let filename = upload
            .filename
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_FILENAME.to_string());
        let provider = self.files_provider()?;
        // The id is the provider's to choose; a policy can still forbid creating any file.
        access::check_create(FILE, "*")?;
        provider
            .create(NewFile {
                filename,
                purpose,
                expires_after_seconds,
                content,
                owner: access::owner_for_new(),
            })
            .await
    }

    /// `GET /v1/files`: newest first unless `order` is `asc`.
    pub async fn list_files(&self, params: ListFilesParams) -> Result<FileList> {
        let limit = match params.limit {
            None => None,
            Some(limit) if (1..=MAX_LIST_LIMIT).contains(&limit) => Some(limit as usize),
            Some(limit) => {
                return Err(query_error(
                    "limit",
                    format!("limit must be between 1 and {MAX_LIST_LIMIT}; got {limit}"),
                ));
            }
        };
        let order_desc = match params.order.as_deref() {
            None | Some("desc") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(query_error(
                    "order",
                    format!("order must be 'asc' or 'desc'; got '{other}'"),
                ));
            }
        };
        if let Some(purpose) = &params.purpose
            && let Some(message) = check_purpose(purpose)
        {
            return Err(query_error("purpose", message));
        }
        let query = FileListQuery {
            after: params.after.filter(|a| !a.is_empty()),
            limit,
            order_desc,
            purpose: params.purpose,
        };
        let provider = self.files_provider()?;
        if !filters_reads() {
            return Ok(provider.list(&query).await?.into());
        }
        Ok(readable_page(provider.as_ref(), query).await?.into())
    }

    /// `GET /v1/files/{file_id}`.
    pub async fn get_file(&self, file_id: &str) -> Result<FileObject> {
        self.checked_file(Action::Read, file_id).await
    }

    /// The file, if the caller may do `action` to it.
    async fn checked_file(&self, action: Action, file_id: &str) -> Result<FileObject> {
        let file = self.files_provider()?.get(file_id).await?;
        access::check(action, FILE, &file.id, file.owner.as_ref(), || {
            file_not_found(file_id)
        })?;
        Ok(file)
    }

    /// The bytes of a file the caller may read.
    pub async fn file_content(&self, file_id: &str) -> Result<Vec<u8>> {
        self.checked_file(Action::Read, file_id).await?;
        self.files_provider()?.content(file_id).await
    }

    /// `GET /v1/files/{file_id}/content`: the bytes with a content type from the file name.
    pub async fn file_download(&self, file_id: &str) -> Result<FileDownload> {
        let provider = self.files_provider()?;
        let file = self.checked_file(Action::Read, file_id).await?;
        let content = provider.content(file_id).await?;
        Ok(FileDownload {
            content,
            content_type: content_type_for(&file.filename),
            filename: file.filename,
        })
    }

    /// `DELETE /v1/files/{file_id}`.
    pub async fn delete_file(&self, file_id: &str) -> Result<FileDeleted> {
        self.checked_file(Action::Delete, file_id).await?;
        self.files_provider()?.delete(file_id).await?;
        Ok(FileDeleted {
            id: file_id.to_string(),
            object: "file".into(),
            deleted: true,
        })
    }
}

/// Whether some files may be hidden from the current caller, so a listing must be filtered.
fn filters_reads() -> bool {
    match access::current() {
        Some(Caller::System) => false,
        Some(Caller::User(_)) => true,
        None => access::enforcing(),
    }
}

/// One page of the files the caller may read. The provider pages over every file, so its
/// pages are walked until the caller's page is full and one more readable file is seen (or
/// none is left): `limit` and `has_more` then count readable files only.
async fn readable_page(provider: &dyn FilesProvider, query: FileListQuery) -> Result<FilePage> {
    let limit = query.limit.unwrap_or(MAX_LIST_LIMIT as usize);
    let mut data = Vec::new();
    let mut cursor = query.after.clone();
    loop {
        let page = provider
            .list(&FileListQuery {
                after: cursor,
                ..query.clone()
            })
            .await?;
        cursor = page.data.last().map(|f| f.id.clone());
        for file in page.data {
            if !access::can_read(FILE, &file.id, file.owner.as_ref()) {
                continue;
            }
            if data.len() == limit {
                return Ok(FilePage {
                    data,
                    has_more: true,
                });
            }
            data.push(file);
        }
        if !page.has_more || cursor.is_none() {
            return Ok(FilePage {
                data,
                has_more: false,
            });
        }
    }
}

#[cfg(test)]
#[path = "files_ops_tests.rs"]
mod tests;
