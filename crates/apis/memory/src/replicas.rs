//! Vector stores another replica sharing the metadata store created, changed or removed: read
//! again from the store when its change feed announces them.

use llama_stack_core::Result;

use crate::service::{MemoryService, STORE_KIND, StoreRecord};

impl MemoryService {
    /// Brings store `identifier` in line with the store: served when stored (its index opened
    /// first), dropped when it is gone.
    pub async fn reload_store(&self, identifier: &str) -> Result<()> {
        let stored: Option<StoreRecord> = self
            .store
            .get(STORE_KIND, identifier)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let current = self.stores.read().await.get(identifier).cloned();
        match stored {
            Some(record) if current.as_ref() == Some(&record) => {}
            Some(record) => {
                if current.is_none() {
                    let Some(provider) = self.vector_io_provider(&record.provider_id) else {
                        tracing::warn!(store = %identifier, provider = %record.provider_id,
                            "A replica created a vector store whose provider is not configured here");
                        return Ok(());
                    };
                    provider
                        .create_store(&crate::vector_io::StoreSpec {
                            store_id: record.provider_resource_id.clone(),
                            dimension: record.embedding_dimension as usize,
                        })
                        .await?;
                    tracing::info!(store = %identifier, "Vector store created by another replica");
                }
                self.stores
                    .write()
                    .await
                    .insert(identifier.to_string(), record);
            }
            None => {
                if self.stores.write().await.remove(identifier).is_some() {
                    tracing::info!(store = %identifier, "Vector store removed by another replica");
                }
            }
        }
        Ok(())
    }

    /// Every vector store read again, after the change feed may have missed some.
    pub async fn reload_stores(&self) -> Result<()> {
        let mut ids: Vec<String> = self
            .store
            .list(STORE_KIND)
            .await?
            .iter()
            .filter_map(|v| v["identifier"].as_str().map(str::to_string))
            .collect();
        ids.extend(self.stores.read().await.keys().cloned());
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Err(err) = self.reload_store(&id).await {
                tracing::warn!(store = %id, error = %err, "Cannot reload a vector store from the registry");
            }
        }
        Ok(())
    }
}
