//! The persistent registry behind the stack: registered models now, shields, vector DBs and
//! agents later. Implemented by `llama-stack-storage`; a trait so PostgreSQL can slot in.

use async_trait::async_trait;

use crate::error::Result;

/// A JSON document store keyed by (kind, identifier).
#[async_trait]
pub trait RegistryStore: Send + Sync {
    /// Inserts or replaces one object.
    async fn put(&self, kind: &str, identifier: &str, value: &serde_json::Value) -> Result<()>;
    /// Removes one object; true when it existed.
    async fn delete(&self, kind: &str, identifier: &str) -> Result<bool>;
    /// One object, if it exists.
    async fn get(&self, kind: &str, identifier: &str) -> Result<Option<serde_json::Value>>;
    /// Every object of a kind, ordered by identifier.
    async fn list(&self, kind: &str) -> Result<Vec<serde_json::Value>>;
    /// Adds one to the counter `key` and answers its new value; a counter last counted in
    /// another `window` starts again from one.
    async fn increment(&self, key: &str, window: &str) -> Result<u64> {
        self.increment_by(key, window, 1).await
    }
    /// Adds `by` to the counter `key` (0 reads it) and answers its new value; a counter last
    /// counted in another `window` starts again from `by`. The SQL stores do it in one
    /// statement, so processes sharing a database share the count; this default suits a store
    /// in memory.
    async fn increment_by(&self, key: &str, window: &str, by: u64) -> Result<u64> {
        let current = self.get(COUNTER_KIND, key).await?;
        let count = match current {
            Some(v) if v["window"] == window => v["count"].as_u64().unwrap_or(0) + by,
            _ => by,
        };
        self.put(
            COUNTER_KIND,
            key,
            &serde_json::json!({"window": window, "count": count}),
        )
        .await?;
        Ok(count)
    }
}

/// Where the default [`RegistryStore::increment`] keeps its counters.
const COUNTER_KIND: &str = "counter";
