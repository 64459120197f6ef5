//! `/v1/files`: checks requests and calls the configured files provider.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::files::{FileListQuery, FileObject, FilePage, FilesProvider, NewFile};
use crate::provider::ProviderInstance;
use crate::stack::Stack;

/// The `purpose` values OpenAI accepts.
pub const PURPOSES: &[&str] = &[
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

fn field_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

impl Stack {
    fn files_provider(&self) -> Result<Arc<dyn FilesProvider>> {
        self.providers()
            .iter()
            .find_map(|p| match &p.instance {
                ProviderInstance::Files(f) => Some(f.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                Error::unsupported(
                    "No files provider is configured; add inline::localfs under providers.files in run.yaml",
                )
            })
    }

    /// `POST /v1/files`.
    pub async fn create_file(&self, file: NewFile) -> Result<FileObject> {
        if !PURPOSES.contains(&file.purpose.as_str()) {
            return Err(field_error(
                "purpose",
                format!(
                    "purpose must be one of {}, got '{}'",
                    PURPOSES.join(", "),
                    file.purpose
                ),
            ));
        }
        if file.filename.trim().is_empty() {
            return Err(field_error("file", "the uploaded file needs a file name"));
        }
        if let Some(seconds) = file.expires_after_seconds
            && !(3600..=2_592_000).contains(&seconds)
        {
            return Err(field_error(
                "expires_after",
                format!("expires_after.seconds must be between 3600 and 2592000, got {seconds}"),
            ));
        }
        self.files_provider()?.create(file).await
    }

    /// `GET /v1/files`.
    pub async fn list_files(&self, query: &FileListQuery) -> Result<FilePage> {
        if let Some(limit) = query.limit
            && !(1..=10_000).contains(&limit)
        {
            return Err(
                Error::invalid(format!("limit must be between 1 and 10000, got {limit}"))
                    .with_location(vec!["query".into(), "limit".into()]),
            );
        }
        self.files_provider()?.list(query).await
    }

    pub async fn get_file(&self, file_id: &str) -> Result<FileObject> {
        self.files_provider()?.get(file_id).await
    }

    pub async fn file_content(&self, file_id: &str) -> Result<Vec<u8>> {
        self.files_provider()?.content(file_id).await
    }

    pub async fn delete_file(&self, file_id: &str) -> Result<()> {
        self.files_provider()?.delete(file_id).await
    }
}
