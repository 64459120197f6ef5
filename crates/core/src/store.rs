//! The persistent registry behind the stack: registered models now, shields, vector DBs and
//! agents later. Implemented by `llama-stack-storage`; a trait so PostgreSQL can slot in.

use async_trait::async_trait;

use crate::error::Result;

/// An object written or removed, possibly by another process sharing the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryChange {
    /// `(kind, identifier)` was put or deleted: read it again.
    Object { kind: String, identifier: String },
    /// Changes may have been missed (the feed reconnected): read everything again.
    Resync,
}

/// A lock held until dropped (see [`RegistryStore::lock`]).
pub type StoreLock = Box<dyn std::any::Any + Send + Sync>;

/// Locks of stores that serve one process: a mutex per name.
fn local_locks() -> &'static std::sync::Mutex<
    std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>,
> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

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
    /// The changes other processes make to this store, for a process that keeps objects in
    /// memory to read them again. `None` when only this process writes it (the default).
    async fn watch(&self) -> Option<tokio::sync::broadcast::Receiver<RegistryChange>> {
        None
    }

    /// Takes the lock named `key`, waiting for it, and holds it until the guard drops: across
    /// every process sharing the store on PostgreSQL (an advisory lock), within this process
    /// otherwise.
    async fn lock(&self, key: &str) -> Result<StoreLock> {
        let mutex = {
            let mut locks = local_locks().lock().unwrap_or_else(|e| e.into_inner());
            // Forget the locks nobody holds or waits for, so the map stays small.
            if locks.len() > 1024 {
                locks.retain(|_, m| std::sync::Arc::strong_count(m) > 1);
            }
            locks.entry(key.to_string()).or_default().clone()
        };
        Ok(Box::new(mutex.lock_owned().await))
    }

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
