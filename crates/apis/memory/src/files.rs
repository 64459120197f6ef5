//! The files API trait (`/v1/files`): uploaded bytes plus an OpenAI file object.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use llama_stack_core::{Error, Result};
use llama_stack_types::User;

/// The OpenAI file object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// Always `file`.
    pub object: String,
    /// `file-` followed by 32 hex digits.
    pub id: String,
    /// Size of the content in bytes.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which the file is gone; `None` keeps it until deleted.
    pub expires_at: Option<i64>,
    /// As uploaded; metadata only, never used as a path.
    pub filename: String,
    /// `assistants`, `batch`, `fine-tune`, `vision`, `user_data` or `evals`.
    pub purpose: String,
    /// Who uploaded it; `None` when uploaded without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

/// The answer for a file that does not exist, or that the caller may not read: one message
/// for both, so providers and the access check cannot tell them apart.
pub fn file_not_found(file_id: &str) -> Error {
    Error::not_found(format!(
        "File '{file_id}' not found. Use client.files.list() to list available files."
    ))
}

/// A file to store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub filename: String,
    pub purpose: String,
    /// Seconds after creation when the file expires, if any.
    pub expires_after_seconds: Option<i64>,
    pub content: Vec<u8>,
    /// Recorded on the file object.
    pub owner: Option<User>,
}

/// `GET /v1/files` query.
#[derive(Debug, Clone, Default)]
pub struct FileListQuery {
    /// Return files after this id (in `order`).
    pub after: Option<String>,
    /// 1..=10000; default 10000.
    pub limit: Option<usize>,
    /// `asc` or `desc` by `created_at` (default `desc`).
    pub order_desc: bool,
    pub purpose: Option<String>,
}

/// One page of files.
#[derive(Debug, Clone)]
pub struct FilePage {
    pub data: Vec<FileObject>,
    /// More files follow the last one in `data`.
    pub has_more: bool,
}

/// `GET /v1/files` response: an OpenAI list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<FileObject>,
    pub has_more: bool,
    /// The first id in `data`, or empty when `data` is.
    pub first_id: String,
    /// The last id in `data` (the `after` of the next page), or empty.
    pub last_id: String,
}

impl From<FilePage> for FileList {
    fn from(page: FilePage) -> Self {
        let id = |file: Option<&FileObject>| file.map(|f| f.id.clone()).unwrap_or_default();
        FileList {
            object: "list".into(),
            first_id: id(page.data.first()),
            last_id: id(page.data.last()),
            has_more: page.has_more,
            data: page.data,
        }
    }
}

/// `DELETE /v1/files/{file_id}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDeleted {
    pub id: String,
    /// Always `file`.
    pub object: String,
    pub deleted: bool,
}

/// A file's content with what a download needs to label it.
#[derive(Debug, Clone)]
pub struct FileDownload {
    pub content: Vec<u8>,
    pub filename: String,
    /// Guessed from the file name's extension; `application/octet-stream` when unknown.
    pub content_type: &'static str,
}

/// Where uploaded files live. Implementations keep bytes and record together: a file is
/// either fully stored (both) or absent (neither), and expired files are never returned.
#[async_trait]
pub trait FilesProvider: Send + Sync {
    /// Stores the bytes and records the file; both or neither.
    async fn create(&self, file: NewFile) -> Result<FileObject>;
    async fn list(&self, query: &FileListQuery) -> Result<FilePage>;
    /// An unknown or expired id is an [`crate::Error::not_found`].
    async fn get(&self, file_id: &str) -> Result<FileObject>;
    async fn content(&self, file_id: &str) -> Result<Vec<u8>>;
    /// Removes bytes and record; an unknown id is an [`crate::Error::not_found`].
    async fn delete(&self, file_id: &str) -> Result<()>;
}
