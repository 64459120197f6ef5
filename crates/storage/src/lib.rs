//! SQL storage for the stack's registry, through sqlx, with the versioned migrations under the
//! workspace's `migrations/` folder (`sqlite/`, `postgres/registry/`; see its README).
//!
//! Implements `llama_stack_core::RegistryStore` on SQLite ([`SqliteRegistryStore`]) and on
//! PostgreSQL ([`PostgresRegistryStore`]), and owns connecting to PostgreSQL
//! ([`PostgresSettings`]) with errors that say what to fix, which PostgreSQL-backed providers
//! reuse. Depends on core and types only; providers that persist data may depend on this crate,
//! never the other way round.

mod pg_shared;
pub mod postgres;

use std::path::Path;
use std::str::FromStr;

use async_trait::async_trait;
use llama_stack_core::{Error, RegistryStore, Result};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use postgres::{PostgresRegistryStore, PostgresSettings};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// The registry in one SQLite file.
#[derive(Clone)]
pub struct SqliteRegistryStore {
    pool: SqlitePool,
}

fn db_error(action: &str, err: impl std::fmt::Display) -> Error {
    Error::internal(format!("registry store: {action} failed: {err}"))
}

impl SqliteRegistryStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::invalid(format!(
                    "cannot create the store directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| db_error("parsing the database path", e))?
            .create_if_missing(true)
            // WAL + FULL sync: a registration that was answered survives a crash.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "cannot open the registry database {}: {e}",
                    path.display()
                ))
            })?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| db_error("applying migrations", e))?;
        Ok(SqliteRegistryStore { pool })
    }
}

#[async_trait]
impl RegistryStore for SqliteRegistryStore {
    async fn increment_by(&self, key: &str, window: &str, by: u64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO counters (key, window, count) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN counters.window = excluded.window
                            THEN counters.count + excluded.count ELSE excluded.count END,
               window = excluded.window
             RETURNING count",
        )
        .bind(key)
        .bind(window)
        .bind(by.min(i64::MAX as u64) as i64)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("counting a request", e))?;
        Ok(count.max(0) as u64)
    }

    async fn put(&self, kind: &str, identifier: &str, value: &serde_json::Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO registry (kind, identifier, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind, identifier) DO UPDATE SET body = excluded.body,
             updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        )
        .bind(kind)
        .bind(identifier)
        .bind(value.to_string())
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("writing", e))?;
        Ok(())
    }

    async fn delete(&self, kind: &str, identifier: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM registry WHERE kind = ?1 AND identifier = ?2")
            .bind(kind)
            .bind(identifier)
            .execute(&self.pool)
            .await
            .map_err(|e| db_error("deleting", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get(&self, kind: &str, identifier: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query("SELECT body FROM registry WHERE kind = ?1 AND identifier = ?2")
            .bind(kind)
            .bind(identifier)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error("reading", e))?;
        row.map(|row| {
            let body: String = row.get("body");
            serde_json::from_str(&body).map_err(|e| db_error("decoding a stored object", e))
        })
        .transpose()
    }

    async fn list(&self, kind: &str) -> Result<Vec<serde_json::Value>> {
        let rows = sqlx::query("SELECT body FROM registry WHERE kind = ?1 ORDER BY identifier")
            .bind(kind)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("reading", e))?;
        rows.iter()
            .map(|row| {
                let body: String = row.get("body");
                serde_json::from_str(&body).map_err(|e| db_error("decoding a stored object", e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/registry.db");
        {
            let store = SqliteRegistryStore::open(&path).await.unwrap();
            store
                .put("model", "a", &serde_json::json!({"x": 1}))
                .await
                .unwrap();
            store
                .put("model", "b", &serde_json::json!({"x": 2}))
                .await
                .unwrap();
            store
                .put("model", "a", &serde_json::json!({"x": 3}))
                .await
                .unwrap();
            store
                .put("shield", "s", &serde_json::json!({}))
                .await
                .unwrap();
            assert!(store.delete("model", "b").await.unwrap());
            assert!(!store.delete("model", "zzz").await.unwrap());
        }
        let store = SqliteRegistryStore::open(&path).await.unwrap();
        let models = store.list("model").await.unwrap();
        assert_eq!(models, vec![serde_json::json!({"x": 3})]);
        assert_eq!(store.list("shield").await.unwrap().len(), 1);
        assert_eq!(
            store.get("model", "a").await.unwrap(),
            Some(serde_json::json!({"x": 3}))
        );
        assert_eq!(store.get("model", "b").await.unwrap(), None);
        assert_eq!(store.get("shield", "a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn increments_count_per_key_and_restart_with_a_new_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteRegistryStore::open(&dir.path().join("r.db"))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.increment("k", "w1").await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort();
        assert_eq!(seen, (1..=20).collect::<Vec<u64>>());
        assert_eq!(store.increment("k", "w2").await.unwrap(), 1);
        assert_eq!(store.increment("k", "w2").await.unwrap(), 2);
        // Token budgets add many at once; 0 reads the count.
        assert_eq!(store.increment_by("k", "w2", 40).await.unwrap(), 42);
        assert_eq!(store.increment_by("k", "w2", 0).await.unwrap(), 42);
        assert_eq!(store.increment_by("k", "w3", 7).await.unwrap(), 7);
        assert_eq!(store.increment("j", "w2").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn unwritable_path_is_a_clear_error() {
        let err = SqliteRegistryStore::open(Path::new("/proc/forbidden/registry.db"))
            .await
            .err()
            .unwrap();
        assert!(err.message().contains("/proc/forbidden"), "{err}");
    }
}
