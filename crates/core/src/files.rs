//! The files API trait (`/v1/files`): uploaded bytes plus an OpenAI file object.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// The OpenAI file object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// Always `file`.
    pub object: String,
    /// `file-` followed by 32 hex digits.
    pub id: String,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub filename: String,
    /// `assistants`, `batch`, `fine-tune`, `vision`, `user_data` or `evals`.
    pub purpose: String,
}

/// A file to store.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub filename: String,
    pub purpose: String,
    /// Seconds after creation when the file expires, if any.
    pub expires_after_seconds: Option<i64>,
    pub content: Vec<u8>,
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
    pub has_more: bool,
}

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
