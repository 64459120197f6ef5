//! The files provider: bytes in [`Blobs`], one record per file in a [`RegistryStore`] (kind
//! `file`), and an in-memory index of the records so reads never scan the store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use llama_stack_core::{Error, RegistryStore, Result};
use llama_stack_memory::{
    files::FileListQuery, files::FileObject, files::FilePage, files::FilesProvider, files::NewFile,
    files::file_not_found as not_found,
};
use llama_stack_stack::ProviderContext;
use llama_stack_storage::SqliteRegistryStore;
use serde::{Deserialize, Serialize};

use crate::blobs::{Blobs, is_file_id};
use crate::config::{LocalfsConfig, MetadataStore, expand_home};

/// The registry kind file records are stored under.
pub const RECORD_KIND: &str = "file";

/// Default page size of a listing, as upstream.
const DEFAULT_LIST_LIMIT: usize = 10_000;

/// What is stored per file: the OpenAI object plus a nanosecond creation time, so listings
/// keep upload order among files created in the same second.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    file: FileObject,
    created_at_ns: i64,
}

/// `inline::localfs`.
pub struct LocalfsFiles {
    blobs: Blobs,
    store: Arc<dyn RegistryStore>,
    default_expiry_secs: Option<i64>,
    index: Mutex<BTreeMap<String, Record>>,
}

fn now() -> (i64, i64) {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let nanos = i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX);
    (since_epoch.as_secs() as i64, nanos)
}

fn is_expired(file: &FileObject, now_secs: i64) -> bool {
    file.expires_at.is_some_and(|at| at <= now_secs)
}

impl LocalfsFiles {
    /// Opens the storage folder and the record store, and loads the records.
    pub async fn open(config: LocalfsConfig, context: ProviderContext) -> Result<LocalfsFiles> {
        let dir = config
            .storage_dir(context.store_dir.as_deref())
            .ok_or_else(|| {
                Error::invalid(
                    "storage_dir is not set and the distribution has no store directory; set \
                 storage_dir in the inline::localfs config",
                )
            })?;
        let blobs = Blobs::open(dir)?;
        let store: Arc<dyn RegistryStore> = match &config.metadata_store {
            Some(MetadataStore::Sqlite(sqlite)) => {
                Arc::new(SqliteRegistryStore::open(&expand_home(&sqlite.db_path)).await?)
            }
            other => {
                if let Some(MetadataStore::Postgres(_)) = other {
                    tracing::info!(
                        provider_id = %context.provider_id,
                        "Files metadata_store of type postgres: records kept in the distribution's store"
                    );
                }
                context.registry.clone().ok_or_else(|| {
                    Error::invalid(
                        "no store for file records: set metadata_store (type: sqlite, db_path) \
                         in the inline::localfs config",
                    )
                })?
            }
        };
        let provider = LocalfsFiles {
            blobs,
            store,
            default_expiry_secs: config.default_expiry_secs(),
            index: Mutex::new(BTreeMap::new()),
        };
        provider.load().await?;
        Ok(provider)
    }

    async fn load(&self) -> Result<()> {
        let mut index = BTreeMap::new();
        let mut without_bytes = 0usize;
        for value in self.store.list(RECORD_KIND).await? {
            let record: Record = match serde_json::from_value(value) {
                Ok(record) => record,
                Err(err) => {
                    tracing::warn!(error = %err, "Skipped an unreadable file record");
                    continue;
                }
            };
            if !is_file_id(&record.file.id) {
                tracing::warn!(id = %record.file.id, "Skipped a file record with a foreign id");
                continue;
            }
            if !self.blobs.dir().join(&record.file.id).exists() {
                without_bytes += 1;
            }
            index.insert(record.file.id.clone(), record);
        }
        if without_bytes > 0 {
            // Kept, not deleted: the folder may be mounted late or configured differently.
            tracing::warn!(count = without_bytes, storage_dir = %self.blobs.dir().display(),
                "File records whose bytes are missing from storage_dir");
        }
        tracing::debug!(files = index.len(), "Loaded file records");
        *self.index.lock().expect("files index lock") = index;
        Ok(())
    }

    fn lookup(&self, file_id: &str) -> Option<Record> {
        self.index
            .lock()
            .expect("files index lock")
            .get(file_id)
            .cloned()
    }

    /// Removes record and bytes of files whose time has passed.
    async fn purge(&self, ids: Vec<String>) {
        for id in ids {
            if let Err(err) = self.remove(&id).await {
                tracing::warn!(file_id = %id, error = %err, "Could not remove an expired file");
            } else {
                tracing::debug!(file_id = %id, "Removed an expired file");
            }
        }
    }

    /// Record first, then bytes: a failure in between leaves stray bytes, never a record
    /// whose bytes are gone.
    async fn remove(&self, file_id: &str) -> Result<()> {
        self.store.delete(RECORD_KIND, file_id).await?;
        self.index.lock().expect("files index lock").remove(file_id);
        if let Err(err) = self.blobs.remove(file_id).await {
            tracing::warn!(file_id, error = %err, "File record removed but its bytes remain");
        }
        Ok(())
    }

    /// The live record of `file_id`; expired ones are purged and not found.
    async fn live(&self, file_id: &str) -> Result<Record> {
        if !is_file_id(file_id) {
            return Err(not_found(file_id));
        }
        let record = self.lookup(file_id).ok_or_else(|| not_found(file_id))?;
        if is_expired(&record.file, now().0) {
            self.purge(vec![file_id.to_string()]).await;
            return Err(not_found(file_id));
        }
        Ok(record)
    }
}

#[async_trait]
impl FilesProvider for LocalfsFiles {
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let expires_after = file.expires_after_seconds.or(self.default_expiry_secs);
        if let Some(secs) = expires_after
            && secs < 0
        {
            return Err(Error::invalid(format!(
                "expires_after seconds must not be negative; got {secs}"
            )));
        }
        let id = format!("file-{}", uuid::Uuid::new_v4().simple());
        let (created_at, created_at_ns) = now();
        let record = Record {
            file: FileObject {
                object: "file".into(),
                id: id.clone(),
                bytes: file.content.len() as u64,
                created_at,
                expires_at: expires_after.map(|secs| created_at.saturating_add(secs)),
                filename: file.filename,
                purpose: file.purpose,
                owner: file.owner,
            },
            created_at_ns,
        };
        self.blobs.write(&id, file.content).await?;
        let value = serde_json::to_value(&record)
            .map_err(|e| Error::internal(format!("files: encoding a record failed: {e}")))?;
        if let Err(err) = self.store.put(RECORD_KIND, &id, &value).await {
            if let Err(cleanup) = self.blobs.remove(&id).await {
                tracing::warn!(file_id = %id, error = %cleanup, "Bytes of a failed upload remain");
            }
            return Err(err);
        }
        self.index
            .lock()
            .expect("files index lock")
            .insert(id, record.clone());
        Ok(record.file)
    }

    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        let now_secs = now().0;
        let (mut live, expired): (Vec<Record>, Vec<Record>) = self
            .index
            .lock()
            .expect("files index lock")
            .values()
            .filter(|r| query.purpose.as_ref().is_none_or(|p| &r.file.purpose == p))
            .cloned()
            .partition(|r| !is_expired(&r.file, now_secs));
        self.purge(expired.into_iter().map(|r| r.file.id).collect())
            .await;
        live.sort_by(|a, b| (a.created_at_ns, &a.file.id).cmp(&(b.created_at_ns, &b.file.id)));
        if query.order_desc {
            live.reverse();
        }
        let start = match &query.after {
            None => 0,
            Some(after) => {
                let position = live
                    .iter()
                    .position(|r| &r.file.id == after)
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "after: no file '{after}' in this listing; pass the last_id of the \
                         previous page"
                        ))
                        .with_location(vec!["query".into(), "after".into()])
                    })?;
                position + 1
            }
        };
        let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let rest = live.len().saturating_sub(start);
        let data = live
            .into_iter()
            .skip(start)
            .take(limit)
            .map(|r| r.file)
            .collect();
        Ok(FilePage {
            data,
            has_more: rest > limit,
        })
    }

    async fn get(&self, file_id: &str) -> Result<FileObject> {
        Ok(self.live(file_id).await?.file)
    }

    async fn content(&self, file_id: &str) -> Result<Vec<u8>> {
        self.live(file_id).await?;
        match self.blobs.read(file_id).await? {
            Some(bytes) => Ok(bytes),
            // Deleted while being read.
            None if self.lookup(file_id).is_none() => Err(not_found(file_id)),
            None => {
                tracing::error!(file_id, storage_dir = %self.blobs.dir().display(),
                    "A file record's bytes are missing");
                Err(Error::internal(format!(
                    "the bytes of file '{file_id}' are missing from {}",
                    self.blobs.dir().display()
                )))
            }
        }
    }

    async fn delete(&self, file_id: &str) -> Result<()> {
        self.live(file_id).await?;
        self.remove(file_id).await
    }
}
