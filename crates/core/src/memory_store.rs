//! A [`RegistryStore`] in memory, for tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::RwLock;

use crate::{RegistryStore, Result};

#[derive(Default)]
pub struct MemoryStore {
    items: RwLock<BTreeMap<(String, String), serde_json::Value>>,
}

#[async_trait]
impl RegistryStore for MemoryStore {
    async fn put(&self, kind: &str, identifier: &str, value: &serde_json::Value) -> Result<()> {
        self.items
            .write()
            .await
            .insert((kind.to_string(), identifier.to_string()), value.clone());
        Ok(())
    }

    async fn delete(&self, kind: &str, identifier: &str) -> Result<bool> {
        Ok(self
            .items
            .write()
            .await
            .remove(&(kind.to_string(), identifier.to_string()))
            .is_some())
    }

    async fn get(&self, kind: &str, identifier: &str) -> Result<Option<serde_json::Value>> {
        Ok(self
            .items
            .read()
            .await
            .get(&(kind.to_string(), identifier.to_string()))
            .cloned())
    }

    async fn list(&self, kind: &str) -> Result<Vec<serde_json::Value>> {
        Ok(self
            .items
            .read()
            .await
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, v)| v.clone())
            .collect())
    }
}
