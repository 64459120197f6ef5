//! The memory service: vector DBs and vector stores over the vector IO providers, and files
//! over the files provider. One record per store serves both the classic vector DB view and the
//! OpenAI vector store view, so a store made through either API is usable through the other.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use llama_stack_core::access::{self, Action, User};
use llama_stack_core::{Error, RegistryStore, Result};
use llama_stack_documents::Tokenizer;
use llama_stack_inference::InferenceApi;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::files::FilesProvider;
use crate::vector_io::VectorIoProvider;

pub(crate) const STORE_KIND: &str = "vector_db";
pub(crate) const STORE_FILE_KIND: &str = "vector_store_file";

/// Resource types as access policies name them. One record backs both a vector DB and a
/// vector store, with one owner; each API checks it under its own type.
pub(crate) const VECTOR_DB: &str = "vector_db";
pub(crate) const VECTOR_STORE: &str = "vector_store";
pub(crate) const FILE: &str = "file";

/// A vector store as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRecord {
    pub identifier: String,
    pub provider_id: String,
    pub provider_resource_id: String,
    pub embedding_model: String,
    pub embedding_dimension: u32,
    /// The classic `vector_db_name`, or the OpenAI `name`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub expires_after: Option<Value>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub last_active_at: Option<i64>,
    /// Who created it, through either API; `None` when made without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

fn store_not_found(store_id: &str) -> Error {
    Error::not_found(format!(
        "Vector DB '{store_id}' not found. Register it with POST /v1/vector-dbs or create a vector store with POST /v1/vector_stores."
    ))
}

/// The vector IO and files providers by id, the stores registered over them, and the
/// inference API that embeds what they keep.
pub struct MemoryService {
    pub(crate) vector_providers: Vec<(String, Arc<dyn VectorIoProvider>)>,
    pub(crate) files_providers: Vec<(String, Arc<dyn FilesProvider>)>,
    pub(crate) store: Arc<dyn RegistryStore>,
    /// Registered stores by id; the registry store is the source of truth.
    pub(crate) stores: RwLock<BTreeMap<String, StoreRecord>>,
    /// Embeds chunks and queries, and resolves embedding models.
    pub(crate) inference: Arc<dyn InferenceApi>,
    tokenizer: OnceLock<Arc<Tokenizer>>,
}

pub(crate) use llama_stack_core::now_secs;

impl MemoryService {
    pub fn new(
        vector_providers: Vec<(String, Arc<dyn VectorIoProvider>)>,
        files_providers: Vec<(String, Arc<dyn FilesProvider>)>,
        store: Arc<dyn RegistryStore>,
        inference: Arc<dyn InferenceApi>,
    ) -> Self {
        MemoryService {
            vector_providers,
            files_providers,
            store,
            stores: RwLock::new(BTreeMap::new()),
            inference,
            tokenizer: OnceLock::new(),
        }
    }

    /// The tokenizer chunking counts with, loaded on first use (a warning when only the
    /// fallback is available).
    pub fn chunk_tokenizer(&self) -> Arc<Tokenizer> {
        self.tokenizer
            .get_or_init(|| {
                let (tokenizer, warning) = Tokenizer::load_default();
                if let Some(warning) = warning {
                    tracing::warn!("{warning}");
                }
                Arc::new(tokenizer)
            })
            .clone()
    }

    pub(crate) fn vector_io_provider(
        &self,
        provider_id: &str,
    ) -> Option<Arc<dyn VectorIoProvider>> {
        self.vector_providers
            .iter()
            .find(|(id, _)| id == provider_id)
            .map(|(_, p)| p.clone())
    }

    pub(crate) fn vector_io_provider_ids(&self) -> Vec<String> {
        self.vector_providers
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Loads the stores registered by earlier runs and opens each store's index.
    pub async fn restore_memory(&self) -> Result<()> {
        for value in self.store.list(STORE_KIND).await? {
            let record: StoreRecord = match serde_json::from_value(value) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(error = %err, "Skipping unreadable vector store in the registry");
                    continue;
                }
            };
            let Some(provider) = self.vector_io_provider(&record.provider_id) else {
                tracing::warn!(store = %record.identifier, provider = %record.provider_id,
                    "Skipping stored vector store whose provider is not configured");
                continue;
            };
            provider
                .create_store(&crate::vector_io::StoreSpec {
                    store_id: record.provider_resource_id.clone(),
                    dimension: record.embedding_dimension as usize,
                })
                .await?;
            self.stores
                .write()
                .await
                .insert(record.identifier.clone(), record);
        }
        Ok(())
    }

    /// A store by id, with its provider, unchecked: for work already past [`Self::resolve_as`].
    pub(crate) async fn resolve_store(
        &self,
        store_id: &str,
    ) -> Result<(StoreRecord, Arc<dyn VectorIoProvider>)> {
        let record = self.store_record(store_id).await?;
        let provider = self.provider_of(&record)?;
        Ok((record, provider))
    }

    /// A store the caller may do `action` to as `resource_type`; one they may not read is not
    /// found, with the very error of a missing store.
    pub(crate) async fn resolve_as(
        &self,
        action: Action,
        resource_type: &str,
        store_id: &str,
    ) -> Result<(StoreRecord, Arc<dyn VectorIoProvider>)> {
        let record = self.store_record(store_id).await?;
        access::check(
            action,
            resource_type,
            &record.identifier,
            record.owner.as_ref(),
            || store_not_found(store_id),
        )?;
        let provider = self.provider_of(&record)?;
        Ok((record, provider))
    }

    async fn store_record(&self, store_id: &str) -> Result<StoreRecord> {
        self.stores
            .read()
            .await
            .get(store_id)
            .cloned()
            .ok_or_else(|| store_not_found(store_id))
    }

    fn provider_of(&self, record: &StoreRecord) -> Result<Arc<dyn VectorIoProvider>> {
        self.vector_io_provider(&record.provider_id).ok_or_else(|| {
            Error::internal(format!(
                "vector store '{}' names provider '{}', which is not configured",
                record.identifier, record.provider_id
            ))
        })
    }

    /// The stores the caller may read as `resource_type`.
    pub(crate) async fn readable_stores(&self, resource_type: &str) -> Vec<StoreRecord> {
        self.stores
            .read()
            .await
            .values()
            .filter(|r| access::can_read(resource_type, &r.identifier, r.owner.as_ref()))
            .cloned()
            .collect()
    }

    pub(crate) async fn save_store(&self, record: &StoreRecord) -> Result<()> {
        self.store
            .put(
                STORE_KIND,
                &record.identifier,
                &serde_json::to_value(record).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await?;
        self.stores
            .write()
            .await
            .insert(record.identifier.clone(), record.clone());
        Ok(())
    }
}
