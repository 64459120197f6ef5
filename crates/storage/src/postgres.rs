//! PostgreSQL: connection settings with errors that name the server and say what to fix, and
//! the registry store on PostgreSQL.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Error, ErrorKind, RegistryStore, Result};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection, Row};

/// The registry's bookkeeping table of applied migrations; see `migrations/README.md`.
const REGISTRY_MIGRATIONS_TABLE: &str = "_llama_stack_registry_migrations";

/// How long connecting may take before start-up fails with a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a PostgreSQL database is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresSettings {
    pub host: String,
    pub port: u16,
    /// The database name.
    pub db: String,
    pub user: String,
    /// `None` logs in without a password (trust or peer authentication).
    pub password: Option<String>,
    /// The most connections a pool opens.
    pub max_connections: u32,
}

impl fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl PostgresSettings {
    /// `host:port`, as messages name the server.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// sqlx connect options for exactly these settings: the `PG*` environment variables and
    /// `~/.pgpass` are not consulted, so what run.yaml says is what is used.
    pub fn connect_options(&self) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .database(&self.db)
            .username(&self.user)
            .application_name("llama-stack");
        match &self.password {
            Some(password) => options.password(password),
            None => options,
        }
    }

    /// Opens one connection, for setup work before a pool exists.
    pub async fn connect_once(&self, options: PgConnectOptions) -> Result<PgConnection> {
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(err)) => Err(self.connect_error(&err)),
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// Opens a pool of up to `max_connections`, connecting once now so that a wrong address or
    /// login fails here rather than on the first request.
    pub async fn connect_pool(&self, options: PgConnectOptions) -> Result<PgPool> {
        // One plain attempt first: the pool retries refused connections until its timeout and
        // then reports only that it timed out, not why.
        let probe = self.connect_once(options.clone()).await?;
        let _ = probe.close().await;
        PgPoolOptions::new()
            .max_connections(self.max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|err| self.connect_error(&err))
    }

    /// Turns a failure to connect into an error that names the server and what to check.
    pub fn connect_error(&self, err: &sqlx::Error) -> Error {
        let address = self.address();
        let (kind, message) = match err {
            sqlx::Error::Io(io) => (
                ErrorKind::Upstream,
                format!(
                    "cannot connect to PostgreSQL at {address}: {io}; check that the server runs and accepts TCP connections there (listen_addresses, firewall), and the host and port in the config"
                ),
            ),
            sqlx::Error::PoolTimedOut => return self.timeout_error(),
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01" | "28000") => (
                    ErrorKind::InvalidRequest,
                    format!(
                        "PostgreSQL at {address} refused user `{}`: {}; check the user and password in the config (and pg_hba.conf on the server)",
                        self.user,
                        db.message()
                    ),
                ),
                Some("3D000") => (
                    ErrorKind::InvalidRequest,
                    format!(
                        "database `{}` does not exist on PostgreSQL at {address}; create it (e.g. `createdb -h {} -p {} -U {} {}`) or fix `db` in the config",
                        self.db, self.host, self.port, self.user, self.db
                    ),
                ),
                _ => (
                    ErrorKind::Upstream,
                    format!(
                        "PostgreSQL at {address} refused the connection: {}",
                        db.message()
                    ),
                ),
            },
            other => (
                ErrorKind::Upstream,
                format!("cannot connect to PostgreSQL at {address}: {other}"),
            ),
        };
        Error::new(kind, message).set_temporary(kind == ErrorKind::Upstream)
    }

    fn timeout_error(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "connecting to PostgreSQL at {} took longer than {}s; check the host and port in the config and that nothing blocks the connection",
                self.address(),
                CONNECT_TIMEOUT.as_secs()
            ),
        )
        .set_temporary(true)
    }
}

impl PostgresSettings {
    /// Settings from a provider's `host`, `port`, `db`, `user`, `password` and `pool_size`
    /// fields, once [`PostgresSettings::config_issues`] found nothing wrong with them. An empty
    /// password means none.
    pub fn from_fields(
        host: &str,
        port: i64,
        db: &str,
        user: &str,
        password: Option<&str>,
        pool_size: i64,
    ) -> Self {
        PostgresSettings {
            host: host.to_string(),
            port: u16::try_from(port).unwrap_or(5432),
            db: db.to_string(),
            user: user.to_string(),
            password: password.filter(|p| !p.is_empty()).map(str::to_string),
            max_connections: u32::try_from(pool_size).unwrap_or(10),
        }
    }

    /// What is wrong with those fields, each at its path inside the `config:` block;
    /// `holding` says what the database keeps ("the files"), for the message about `db`.
    pub fn config_issues(
        host: &str,
        port: i64,
        db: &str,
        user: &str,
        pool_size: i64,
        holding: &str,
    ) -> Vec<llama_stack_core::ConfigIssue> {
        let checks = [
            (
                !host.trim().is_empty(),
                "host",
                "must name the PostgreSQL server (e.g. localhost)".to_string(),
            ),
            (
                (1..=65535).contains(&port),
                "port",
                format!("must be a TCP port from 1 to 65535, got {port}"),
            ),
            (
                !db.trim().is_empty(),
                "db",
                format!("must name the database holding {holding}"),
            ),
            (
                !user.trim().is_empty(),
                "user",
                "must name the PostgreSQL user to log in as".to_string(),
            ),
            (
                (1..=1000).contains(&pool_size),
                "pool_size",
                format!("must be from 1 to 1000 connections, got {pool_size}"),
            ),
        ];
        checks
            .into_iter()
            .filter(|(ok, _, _)| !ok)
            .map(|(_, path, message)| llama_stack_core::ConfigIssue::new(path, message))
            .collect()
    }
}

fn db_error(action: &str, err: impl fmt::Display) -> Error {
    Error::internal(format!(
        "registry store (PostgreSQL): {action} failed: {err}"
    ))
}

fn registry_migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("../../migrations/postgres/registry");
    // Its own bookkeeping table, so the registry and remote::pgvector can share a database.
    migrator.dangerous_set_table_name(REGISTRY_MIGRATIONS_TABLE);
    migrator
}

/// The registry in a PostgreSQL database (`metadata_store: {type: postgres}`), with the same
/// semantics as [`crate::SqliteRegistryStore`]: JSON bodies kept verbatim, listed by kind in
/// byte order of their identifiers.
#[derive(Clone)]
pub struct PostgresRegistryStore {
    pool: PgPool,
    feed: crate::pg_shared::Feed,
}

impl PostgresRegistryStore {
    /// Connects and applies pending migrations (table `llama_stack_registry`).
    pub async fn connect(settings: &PostgresSettings) -> Result<Self> {
        // Each process names its connections, so that the change feed can tell its own writes
        // (already applied here) from other replicas'.
        let origin = format!("llama-stack/{}", uuid::Uuid::new_v4().simple());
        let options = settings.connect_options().application_name(&origin);
        let pool = settings.connect_pool(options).await?;
        registry_migrator().run(&pool).await.map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "cannot create the registry tables in database `{}` on PostgreSQL at {}: {e}; the user `{}` needs the right to create tables there",
                    settings.db,
                    settings.address(),
                    settings.user
                ),
            )
        })?;
        Ok(PostgresRegistryStore {
            pool,
            feed: crate::pg_shared::Feed::new(origin),
        })
    }
}

#[async_trait]
impl RegistryStore for PostgresRegistryStore {
    async fn watch(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<llama_stack_core::RegistryChange>> {
        Some(self.feed.subscribe(&self.pool))
    }

    async fn lock(&self, key: &str) -> Result<llama_stack_core::StoreLock> {
        crate::pg_shared::lock(&self.pool, key).await
    }

    async fn increment_by(&self, key: &str, window: &str, by: u64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO llama_stack_counters (key, window_id, count) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN llama_stack_counters.window_id = EXCLUDED.window_id
                            THEN llama_stack_counters.count + EXCLUDED.count ELSE EXCLUDED.count END,
               window_id = EXCLUDED.window_id
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
            "INSERT INTO llama_stack_registry (kind, identifier, body) VALUES ($1, $2, $3::json)
             ON CONFLICT (kind, identifier) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
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
        let done =
            sqlx::query("DELETE FROM llama_stack_registry WHERE kind = $1 AND identifier = $2")
                .bind(kind)
                .bind(identifier)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("deleting", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn get(&self, kind: &str, identifier: &str) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT body::text AS body FROM llama_stack_registry WHERE kind = $1 AND identifier = $2",
        )
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
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        let rows = sqlx::query(
            "SELECT body::text AS body FROM llama_stack_registry WHERE kind = $1
             ORDER BY identifier COLLATE \"C\"",
        )
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
    use serde_json::json;

    fn settings_for(db: &llama_stack_pg_test_server::PgTestDatabase) -> PostgresSettings {
        PostgresSettings {
            host: db.host.clone(),
            port: db.port,
            db: db.database.clone(),
            user: db.user.clone(),
            password: Some(db.password.clone()),
            max_connections: 4,
        }
    }

    #[tokio::test]
    async fn objects_survive_reconnecting_and_list_in_byte_order() {
        let Some(db) = llama_stack_pg_test_server::database("registry") else {
            return;
        };
        let settings = settings_for(&db);
        {
            let store = PostgresRegistryStore::connect(&settings).await.unwrap();
            store.put("model", "b", &json!({"x": 2})).await.unwrap();
            store
                .put("model", "a", &json!({"z": 1, "a": [1, 2]}))
                .await
                .unwrap();
            store.put("model", "B", &json!({"x": 4})).await.unwrap();
            store
                .put("model", "a", &json!({"z": 3, "a": null}))
                .await
                .unwrap();
            store.put("shield", "s", &json!({})).await.unwrap();
            assert!(store.delete("model", "b").await.unwrap());
            assert!(!store.delete("model", "zzz").await.unwrap());
        }
        // A second connect finds the tables migrated and the objects kept.
        let store = PostgresRegistryStore::connect(&settings).await.unwrap();
        let models = store.list("model").await.unwrap();
        assert_eq!(models, vec![json!({"x": 4}), json!({"z": 3, "a": null})]);
        // Bodies come back with their keys in the order they were written.
        assert_eq!(models[1].to_string(), r#"{"z":3,"a":null}"#);
        assert_eq!(store.list("shield").await.unwrap(), vec![json!({})]);
        assert!(store.list("vector_db").await.unwrap().is_empty());
        assert_eq!(
            store.get("model", "B").await.unwrap(),
            Some(json!({"x": 4}))
        );
        assert_eq!(store.get("model", "b").await.unwrap(), None);
        assert_eq!(store.get("shield", "B").await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_increments_are_all_counted_and_windows_restart() {
        let Some(db) = llama_stack_pg_test_server::database("registry_counters") else {
            return;
        };
        let settings = settings_for(&db);
        // Two pools, as two replicas would hold.
        let a = PostgresRegistryStore::connect(&settings).await.unwrap();
        let b = PostgresRegistryStore::connect(&settings).await.unwrap();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { store.increment("k", "w1").await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen.sort();
        assert_eq!(seen, (1..=40).collect::<Vec<u64>>());
        assert_eq!(a.increment("k", "w2").await.unwrap(), 1);
        assert_eq!(b.increment("other", "w2").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn unreachable_server_names_host_and_port() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let settings = PostgresSettings {
            host: "127.0.0.1".into(),
            port,
            db: "registry".into(),
            user: "llama".into(),
            password: Some("secret-pw".into()),
            max_connections: 1,
        };
        let err = PostgresRegistryStore::connect(&settings)
            .await
            .err()
            .unwrap();
        assert!(
            err.message().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert!(!err.message().contains("secret-pw"), "{err}");
        assert!(!format!("{settings:?}").contains("secret-pw"));
    }

    #[tokio::test]
    async fn wrong_password_and_missing_database_say_what_to_fix() {
        let Some(db) = llama_stack_pg_test_server::database("registry_login") else {
            return;
        };
        let mut settings = settings_for(&db);
        settings.password = Some("not-the-password".into());
        let err = PostgresRegistryStore::connect(&settings)
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        assert!(err.message().contains("refused user `llama`"), "{err}");

        let mut settings = settings_for(&db);
        settings.db = "no_such_database".into();
        let err = PostgresRegistryStore::connect(&settings)
            .await
            .err()
            .unwrap();
        assert!(
            err.message()
                .contains("database `no_such_database` does not exist"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn replicas_hear_each_others_writes_and_share_locks() {
        let Some(db) = llama_stack_pg_test_server::database("registry_shared") else {
            return;
        };
        let settings = settings_for(&db);
        let a = PostgresRegistryStore::connect(&settings).await.unwrap();
        let b = PostgresRegistryStore::connect(&settings).await.unwrap();
        let mut feed = b.watch().await.unwrap();
        // The feed announces a resync when it connects; writes follow.
        let next =
            |feed: &mut tokio::sync::broadcast::Receiver<llama_stack_core::RegistryChange>| {
                let mut feed = feed.resubscribe();
                async move {
                    loop {
                        match tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv())
                            .await
                            .expect("a change within 5 s")
                            .unwrap()
                        {
                            llama_stack_core::RegistryChange::Resync => continue,
                            change => return change,
                        }
                    }
                }
            };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), feed.recv()).await;
        let heard = tokio::spawn(next(&mut feed));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        a.put("model", "m1", &json!({"identifier": "m1"}))
            .await
            .unwrap();
        assert_eq!(
            heard.await.unwrap(),
            llama_stack_core::RegistryChange::Object {
                kind: "model".into(),
                identifier: "m1".into()
            }
        );
        // A lock taken on one replica makes the other wait until it is dropped.
        let held = a.lock("session:s1").await.unwrap();
        let waiting = tokio::spawn(async move { b.lock("session:s1").await.map(|_| ()) });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the second replica must wait");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the lock is released when dropped")
            .unwrap()
            .unwrap();
    }
}
