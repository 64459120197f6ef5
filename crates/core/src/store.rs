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
}
