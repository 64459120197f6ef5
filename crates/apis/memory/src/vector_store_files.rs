//! Files in OpenAI vector stores (`/v1/vector_stores/{id}/files`): attaching an uploaded file
//! extracts its text, cuts it into token windows, embeds and stores them; the attachment
//! record keeps the ingestion status.
//!
//! Access follows the store: attaching, re-attaching and removing a file update it, reading
//! its files reads it. Attaching also needs read access to the file itself, so a store cannot
//! be used to reach another user's upload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::chunks::PendingChunk;
use crate::service::MemoryService;
use crate::service::{STORE_FILE_KIND, StoreRecord, VECTOR_STORE, now_secs};
use crate::vector_io::ChunkSelector;
use crate::vector_stores::{PageQuery, chunking_sizes, page};
use llama_stack_core::access::Action;
use llama_stack_core::{Error, Result};

/// A file attached to a vector store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreFileRecord {
    pub id: String,
    pub vector_store_id: String,
    #[serde(default)]
    pub attributes: Map<String, Value>,
    #[serde(default)]
    pub chunking_strategy: Value,
    pub created_at: i64,
    #[serde(default)]
    pub last_error: Option<Value>,
    /// `in_progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
    #[serde(default)]
    pub usage_bytes: u64,
}

impl StoreFileRecord {
    pub(crate) fn to_object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "vector_store.file",
            "attributes": self.attributes,
            "chunking_strategy": self.chunking_strategy,
            "created_at": self.created_at,
            "last_error": self.last_error,
            "status": self.status,
            "usage_bytes": self.usage_bytes,
            "vector_store_id": self.vector_store_id,
        })
    }
}

pub(crate) fn file_key(store_id: &str, file_id: &str) -> String {
    format!("{store_id}/{file_id}")
}

pub(crate) fn attributes_from(body: &Map<String, Value>) -> Result<Map<String, Value>> {
    match body.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            if m.len() > 16 {
                return Err(Error::invalid(format!(
                    "attributes may hold at most 16 keys, got {}",
                    m.len()
                ))
                .with_location(vec!["body".into(), "attributes".into()]));
            }
            Ok(m.clone())
        }
        Some(other) => Err(
            Error::invalid(format!("attributes must be an object, got {other}"))
                .with_location(vec!["body".into(), "attributes".into()]),
        ),
    }
}

impl MemoryService {
    pub(crate) async fn store_file_records(&self, store_id: &str) -> Result<Vec<StoreFileRecord>> {
        Ok(self
            .store
            .list(STORE_FILE_KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<StoreFileRecord>(v).ok())
            .filter(|r| r.vector_store_id == store_id)
            .collect())
    }

    async fn save_file_record(&self, record: &StoreFileRecord) -> Result<()> {
        self.store
            .put(
                STORE_FILE_KIND,
                &file_key(&record.vector_store_id, &record.id),
                &serde_json::to_value(record).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await
    }

    /// Records a file that could not be found as failed in `store`.
    pub(crate) async fn record_missing_file(
        &self,
        store: &StoreRecord,
        file_id: &str,
        chunking_strategy: Option<Value>,
        err: &Error,
    ) -> Result<()> {
        let record = StoreFileRecord {
            id: file_id.to_string(),
            vector_store_id: store.identifier.clone(),
            attributes: Map::new(),
            chunking_strategy: chunking_strategy.unwrap_or_else(|| json!({"type": "auto"})),
            created_at: now_secs(),
            last_error: Some(json!({"code": "invalid_file", "message": err.message()})),
            status: "failed".into(),
            usage_bytes: 0,
        };
        self.save_file_record(&record).await
    }

    /// Ingests one file into a store. A file that cannot be read or embedded is recorded as
    /// `failed` with the reason; the attachment itself succeeds. A file the caller may not
    /// read is not found, as a missing one.
    pub(crate) async fn attach_file(
        &self,
        store: &StoreRecord,
        file_id: &str,
        attributes: Map<String, Value>,
        chunking_strategy: Option<Value>,
        (size, overlap): (usize, usize),
    ) -> Result<StoreFileRecord> {
        let file = self.get_file(file_id).await?;
        let files = self.files_provider()?;
        // Without one the file is chunked as `auto` is (800/400 tokens), and reads back so.
        let strategy = chunking_strategy.unwrap_or_else(|| json!({"type": "auto"}));
        let mut record = StoreFileRecord {
            id: file_id.to_string(),
            vector_store_id: store.identifier.clone(),
            attributes: attributes.clone(),
            chunking_strategy: strategy,
            created_at: now_secs(),
            last_error: None,
            status: "in_progress".into(),
            usage_bytes: 0,
        };
        self.save_file_record(&record).await?;
        let started = std::time::Instant::now();
        let outcome = async {
            let bytes = files.content(file_id).await?;
            let name = file.filename.clone();
            let text = tokio::task::spawn_blocking(move || {
                llama_stack_documents::extract_text(&bytes, None, Some(&name))
            })
            .await
            .map_err(|e| Error::internal(format!("text extraction task failed: {e}")))?
            .map_err(|e| Error::invalid(format!("file '{file_id}' ({}): {e}", file.filename)))?;
            let mut metadata = attributes.clone();
            metadata.insert("filename".into(), json!(file.filename));
            let chunks = self
                .chunk_document(file_id, text, &metadata, size, overlap)
                .await?;
            let usage: u64 = chunks
                .iter()
                .map(|c| c.content.as_text(" ").len() as u64)
                .sum();
            let chunks: Vec<PendingChunk> = chunks
                .into_iter()
                .map(|chunk| PendingChunk {
                    chunk,
                    file_id: Some(file_id.to_string()),
                    extra_attributes: Map::new(),
                })
                .collect();
            let n = chunks.len();
            // A file attached again replaces its earlier chunks.
            let (_, provider) = self.resolve_store(&store.identifier).await?;
            provider
                .delete_chunks(
                    &store.provider_resource_id,
                    &ChunkSelector::File(file_id.to_string()),
                )
                .await?;
            self.insert_pending(store, chunks, None).await?;
            Ok::<(usize, u64), Error>((n, usage))
        }
        .await;
        match outcome {
            Ok((chunks, usage)) => {
                record.status = "completed".into();
                record.usage_bytes = usage;
                tracing::info!(store = %store.identifier, file = %file_id, chunks,
                    seconds = started.elapsed().as_secs_f32(), "Ingested file");
            }
            Err(err) => {
                tracing::warn!(store = %store.identifier, file = %file_id, error = %err.message(),
                    "File not ingested");
                record.status = "failed".into();
                let code = if err.kind() == llama_stack_core::ErrorKind::InvalidRequest {
                    "invalid_file"
                } else {
                    "server_error"
                };
                record.last_error = Some(json!({"code": code, "message": err.message()}));
            }
        }
        self.save_file_record(&record).await?;
        Ok(record)
    }

    /// `POST /v1/vector_stores/{id}/files`.
    pub async fn attach_vector_store_file(
        &self,
        store_id: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        let (store, _) = self
            .resolve_as(Action::Update, VECTOR_STORE, store_id)
            .await?;
        let file_id = body.get("file_id").and_then(Value::as_str).ok_or_else(|| {
            Error::invalid("file_id is required")
                .with_location(vec!["body".into(), "file_id".into()])
        })?;
        let attributes = attributes_from(&body)?;
        let strategy = body
            .get("chunking_strategy")
            .cloned()
            .filter(|v| !v.is_null());
        let sizes = chunking_sizes(strategy.as_ref())?;
        Ok(self
            .attach_file(&store, file_id, attributes, strategy, sizes)
            .await?
            .to_object())
    }

    /// `GET /v1/vector_stores/{id}/files`, optionally only one `status`.
    pub async fn list_vector_store_files(
        &self,
        store_id: &str,
        query: &PageQuery,
        status: Option<&str>,
    ) -> Result<Value> {
        // An unknown store is the request's mistake here: upstream answers 400, and its tests
        // pin it.
        self.resolve_as(Action::Read, VECTOR_STORE, store_id)
            .await
            .map_err(|e| {
                if e.kind() == llama_stack_core::ErrorKind::NotFound {
                    e.with_kind(llama_stack_core::ErrorKind::InvalidRequest)
                        .with_location(vec!["path".into(), "vector_store_id".into()])
                } else {
                    e
                }
            })?;
        let items = self
            .store_file_records(store_id)
            .await?
            .into_iter()
            .filter(|r| status.is_none_or(|s| r.status == s))
            .map(|r| r.to_object())
            .collect();
        page(items, query)
    }

    /// A file of a store the caller may do `action` to.
    async fn store_file(
        &self,
        action: Action,
        store_id: &str,
        file_id: &str,
    ) -> Result<StoreFileRecord> {
        self.resolve_as(action, VECTOR_STORE, store_id).await?;
        self.store_file_records(store_id)
            .await?
            .into_iter()
            .find(|r| r.id == file_id)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "File '{file_id}' is not attached to vector store '{store_id}'"
                ))
            })
    }

    pub async fn get_vector_store_file(&self, store_id: &str, file_id: &str) -> Result<Value> {
        Ok(self
            .store_file(Action::Read, store_id, file_id)
            .await?
            .to_object())
    }

    /// `GET /v1/vector_stores/{id}/files/{file_id}/content`: the file's text as it was read for
    /// the store. The answer has both shapes: OpenAI's page (`data`) and upstream's
    /// `file_id`/`filename`/`attributes`/`content`.
    pub async fn vector_store_file_content(&self, store_id: &str, file_id: &str) -> Result<Value> {
        let record = self.store_file(Action::Read, store_id, file_id).await?;
        // Reading the store is enough: its chunks already hold this text.
        let files = self.files_provider()?;
        let file = files.get(file_id).await?;
        let bytes = files.content(file_id).await?;
        let name = file.filename.clone();
        let text = tokio::task::spawn_blocking(move || {
            llama_stack_documents::extract_text(&bytes, None, Some(&name))
        })
        .await
        .map_err(|e| Error::internal(format!("reading file {file_id} failed: {e}")))?
        .map_err(|e| Error::invalid(format!("file {file_id} cannot be read as text: {e}")))?;
        let content = vec![json!({"type": "text", "text": text})];
        Ok(json!({
            "object": "vector_store.file_content.page",
            "data": content,
            "has_more": false,
            "next_page": null,
            "file_id": file_id,
            "filename": file.filename,
            "attributes": record.attributes,
            "content": content,
        }))
    }

    /// `POST /v1/vector_stores/{id}/files/{file_id}`: new attributes, applied by ingesting the
    /// file again so filters see them.
    pub async fn update_vector_store_file(
        &self,
        store_id: &str,
        file_id: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        let existing = self.store_file(Action::Update, store_id, file_id).await?;
        if !body.contains_key("attributes") {
            return Err(Error::invalid("attributes is required")
                .with_location(vec!["body".into(), "attributes".into()]));
        }
        let attributes = attributes_from(&body)?;
        let (store, _) = self.resolve_store(store_id).await?;
        let strategy = Some(existing.chunking_strategy.clone()).filter(|v| !v.is_null());
        let sizes = chunking_sizes(strategy.as_ref())?;
        Ok(self
            .attach_file(&store, file_id, attributes, strategy, sizes)
            .await?
            .to_object())
    }

    /// `DELETE /v1/vector_stores/{id}/files/{file_id}`: the attachment and its chunks.
    pub async fn delete_vector_store_file(&self, store_id: &str, file_id: &str) -> Result<Value> {
        self.store_file(Action::Update, store_id, file_id).await?;
        let (store, provider) = self.resolve_store(store_id).await?;
        provider
            .delete_chunks(
                &store.provider_resource_id,
                &ChunkSelector::File(file_id.to_string()),
            )
            .await?;
        self.store
            .delete(STORE_FILE_KIND, &file_key(store_id, file_id))
            .await?;
        Ok(json!({"id": file_id, "object": "vector_store.file.deleted", "deleted": true}))
    }
}
