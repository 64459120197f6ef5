//! The files provider: bytes in [`S3Blobs`], one record per file in a [`RegistryStore`] (kind
//! [`RECORD_KIND`]). Nothing is cached in the process: on a metadata store that replicas share
//! (PostgreSQL), each of them sees every file as soon as its upload returns.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{Error, RegistryStore, Result};
use llama_stack_memory::files::{
    FileListQuery, FileObject, FilePage, FilesProvider, NewFile, file_not_found as not_found,
};
use llama_stack_provider_files_postgres::shared::{
    StoredFile, default_expiry_secs, is_expired, is_file_id, now, page,
};
use llama_stack_stack::ProviderContext;
use llama_stack_storage::SqliteRegistryStore;

use crate::blobs::S3Blobs;
use crate::config::{RecordStore, S3FilesConfig};

/// The registry kind file records are stored under; apart from `inline::localfs`'s `file`, so
/// switching providers never lists files whose bytes are elsewhere.
pub const RECORD_KIND: &str = "s3_file";

/// `remote::s3`.
pub struct S3Files {
    blobs: S3Blobs,
    store: Arc<dyn RegistryStore>,
    default_expiry_secs: Option<i64>,
}

fn decode(value: serde_json::Value) -> Option<StoredFile> {
    match serde_json::from_value::<StoredFile>(value) {
        Ok(record) if is_file_id(&record.file.id) => Some(record),
        Ok(record) => {
            tracing::warn!(id = %record.file.id, "Skipped a file record with a foreign id");
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "Skipped an unreadable file record");
            None
        }
    }
}

impl S3Files {
    /// Opens the bucket and the record store.
    pub async fn open(config: S3FilesConfig, context: ProviderContext) -> Result<S3Files> {
        let store: Arc<dyn RegistryStore> = match config.record_store() {
            RecordStore::Sqlite(path) => {
                tracing::warn!(provider_id = %context.provider_id, db_path = %path,
                    "S3 file records in a SQLite file of their own: other servers on the bucket \
                     will not see them; remove metadata_store to use the distribution's store");
                Arc::new(SqliteRegistryStore::open(&expand_home(&path)).await?)
            }
            RecordStore::Distribution => context.registry.clone().ok_or_else(|| {
                Error::invalid(
                    "no store for file records: the distribution has no metadata_store; add \
                     one, or give metadata_store (type: sqlite, db_path) in the remote::s3 config",
                )
            })?,
        };
        let blobs = S3Blobs::open(&config).await?;
        tracing::debug!(bucket = %blobs.bucket_url(), "Files in S3");
        Ok(S3Files {
            blobs,
            store,
            default_expiry_secs: default_expiry_secs(config.ttl_secs),
        })
    }

    async fn record(&self, file_id: &str) -> Result<Option<StoredFile>> {
        Ok(self.store.get(RECORD_KIND, file_id).await?.and_then(decode))
    }

    /// Record first, then bytes: a failure in between leaves a stray object, never a record
    /// whose bytes are gone. Replicas may race to remove the same file; both succeed.
    async fn remove(&self, file_id: &str) -> Result<()> {
        self.store.delete(RECORD_KIND, file_id).await?;
        if let Err(err) = self.blobs.remove(file_id).await {
            tracing::warn!(file_id, error = %err, "File record removed but its object remains");
        }
        Ok(())
    }

    async fn purge(&self, ids: Vec<String>) {
        for id in ids {
            match self.remove(&id).await {
                Ok(()) => tracing::debug!(file_id = %id, "Removed an expired file"),
                Err(err) => {
                    tracing::warn!(file_id = %id, error = %err, "Could not remove an expired file")
                }
            }
        }
    }

    /// The live record of `file_id`; expired ones are purged and not found.
    async fn live(&self, file_id: &str) -> Result<StoredFile> {
        if !is_file_id(file_id) {
            return Err(not_found(file_id));
        }
        let record = self
            .record(file_id)
            .await?
            .ok_or_else(|| not_found(file_id))?;
        if is_expired(&record.file, now().0) {
            self.purge(vec![file_id.to_string()]).await;
            return Err(not_found(file_id));
        }
        Ok(record)
    }
}

/// A leading `~` (alone or before `/`) is `$HOME`, as in upstream configs.
fn expand_home(path: &str) -> std::path::PathBuf {
    if let Some(rest) = path.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        return std::path::PathBuf::from(home).join(rest.trim_start_matches('/'));
    }
    std::path::PathBuf::from(path)
}

#[async_trait]
impl FilesProvider for S3Files {
    /// Bytes first, then the record, so no replica ever finds a record without its object.
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let record = StoredFile::new(&file, self.default_expiry_secs)?;
        let id = record.file.id.clone();
        self.blobs.write(&id, file.content).await?;
        let value = serde_json::to_value(&record)
            .map_err(|e| Error::internal(format!("files: encoding a record failed: {e}")))?;
        if let Err(err) = self.store.put(RECORD_KIND, &id, &value).await {
            if let Err(cleanup) = self.blobs.remove(&id).await {
                tracing::warn!(file_id = %id, error = %cleanup, "Object of a failed upload remains");
            }
            return Err(err);
        }
        Ok(record.file)
    }

    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        let now_secs = now().0;
        let (live, expired): (Vec<StoredFile>, Vec<StoredFile>) = self
            .store
            .list(RECORD_KIND)
            .await?
            .into_iter()
            .filter_map(decode)
            .partition(|r| !is_expired(&r.file, now_secs));
        self.purge(expired.into_iter().map(|r| r.file.id).collect())
            .await;
        page(live, query)
    }

    async fn get(&self, file_id: &str) -> Result<FileObject> {
        Ok(self.live(file_id).await?.file)
    }

    async fn content(&self, file_id: &str) -> Result<Vec<u8>> {
        self.live(file_id).await?;
        match self.blobs.read(file_id).await? {
            Some(bytes) => Ok(bytes),
            // Deleted (by this or another replica) while being read.
            None if self.record(file_id).await?.is_none() => Err(not_found(file_id)),
            None => {
                tracing::error!(file_id, bucket = %self.blobs.bucket_url(),
                    "A file record's object is missing from the bucket");
                Err(Error::internal(format!(
                    "the bytes of file '{file_id}' are missing from {}",
                    self.blobs.bucket_url()
                )))
            }
        }
    }

    async fn delete(&self, file_id: &str) -> Result<()> {
        self.live(file_id).await?;
        self.remove(file_id).await
    }
}
