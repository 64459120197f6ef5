//! Memory: vector DBs / vector stores, chunk insertion and search, the RAG tool and tool
//! groups. One record per store serves both the classic vector DB view and the OpenAI vector
//! store view, so a store made through either API is usable through the other.

mod chunks;
mod rag;
mod tools;
pub(crate) mod vector_dbs;
mod vector_store_files;
mod vector_stores;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use llama_stack_documents::Tokenizer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::error::{Error, Result};
use crate::provider::ProviderInstance;
use crate::stack::Stack;
use crate::vector_io::VectorIoProvider;

pub use chunks::{QueryParams, fuse_rrf};
pub use rag::{RagQueryConfig, render_knowledge_search};
pub use tools::BUILTIN_RAG;
pub use vector_stores::PageQuery;

pub(crate) const STORE_KIND: &str = "vector_db";
pub(crate) const STORE_FILE_KIND: &str = "vector_store_file";
pub(crate) const TOOL_GROUP_KIND: &str = "tool_group";

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
}

/// What the stack keeps in memory for the memory APIs; the registry store is the source of
/// truth.
#[derive(Default)]
pub struct MemoryState {
    pub(crate) stores: RwLock<BTreeMap<String, StoreRecord>>,
    pub(crate) tool_groups: RwLock<BTreeMap<String, llama_stack_types::ToolGroup>>,
    tokenizer: OnceLock<Arc<Tokenizer>>,
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Stack {
    /// The tokenizer chunking counts with, loaded on first use (a warning when only the
    /// fallback is available).
    pub fn chunk_tokenizer(&self) -> Arc<Tokenizer> {
        self.memory
            .tokenizer
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
        self.providers().iter().find_map(|p| match &p.instance {
            ProviderInstance::VectorIo(v) if p.provider_id == provider_id => Some(v.clone()),
            _ => None,
        })
    }

    pub(crate) fn vector_io_provider_ids(&self) -> Vec<String> {
        self.providers()
            .iter()
            .filter(|p| matches!(p.instance, ProviderInstance::VectorIo(_)))
            .map(|p| p.provider_id.clone())
            .collect()
    }

    /// Loads stores and tool groups registered by earlier runs and opens each store's index.
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
            self.memory
                .stores
                .write()
                .await
                .insert(record.identifier.clone(), record);
        }
        for value in self.store.list(TOOL_GROUP_KIND).await? {
            match serde_json::from_value::<llama_stack_types::ToolGroup>(value) {
                Ok(group) => {
                    self.memory
                        .tool_groups
                        .write()
                        .await
                        .insert(group.identifier.clone(), group);
                }
                Err(err) => tracing::warn!(error = %err, "Skipping unreadable tool group"),
            }
        }
        Ok(())
    }

    /// A store by id, with its provider.
    pub(crate) async fn resolve_store(
        &self,
        store_id: &str,
    ) -> Result<(StoreRecord, Arc<dyn VectorIoProvider>)> {
        let record = self
            .memory
            .stores
            .read()
            .await
            .get(store_id)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Vector DB '{store_id}' not found. Register it with POST /v1/vector-dbs or create a vector store with POST /v1/vector_stores."
                ))
            })?;
        let provider = self
            .vector_io_provider(&record.provider_id)
            .ok_or_else(|| {
                Error::internal(format!(
                    "vector store '{store_id}' names provider '{}', which is not configured",
                    record.provider_id
                ))
            })?;
        Ok((record, provider))
    }

    pub(crate) async fn save_store(&self, record: &StoreRecord) -> Result<()> {
        self.store
            .put(
                STORE_KIND,
                &record.identifier,
                &serde_json::to_value(record).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await?;
        self.memory
            .stores
            .write()
            .await
            .insert(record.identifier.clone(), record.clone());
        Ok(())
    }
}
