//! The provider: connecting, the catalog of stores, per-store tables, inserts and deletes.
//! Searching is in `search.rs`.
//!
//! Layout: `llama_stack_vector_stores` (from `migrations/postgres/pgvector`) maps each store id
//! to a numeric id; the store's chunks live in a table of their own, `llama_stack_vs_<id>`,
//! created with the store. One table per store, rather than one shared table, because the
//! embedding column's type (`vector(<dimension>)`) and its HNSW index depend on the store's
//! dimension, and dropping a store is then a `DROP TABLE`. Store ids never appear in SQL text,
//! so any string is a valid store id.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_memory::{
    vector_io::ChunkSelector, vector_io::ScoredChunk, vector_io::SearchRequest,
    vector_io::StoreSpec, vector_io::StoredChunk, vector_io::VectorIoProvider,
};
use llama_stack_storage::PostgresSettings;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, PgConnection, Row};

use crate::config::{HnswConfig, PgVectorConfig};

/// This provider's bookkeeping table of applied migrations; see `migrations/README.md`.
const MIGRATIONS_TABLE: &str = "_llama_stack_pgvector_migrations";
/// Serializes creating and dropping stores across every server sharing the database.
const CATALOG_LOCK: i64 = 0x6c6c_7376_6361_7431;
/// pgvector's `vector` type holds at most this many dimensions.
const MAX_DIMENSION: usize = 16_000;
/// pgvector's HNSW index covers `vector` columns of at most this many dimensions; larger
/// stores are searched exactly, without an index.
const MAX_INDEXED_DIMENSION: usize = 2_000;
/// Rows per INSERT statement of a batch (all in one transaction).
const INSERT_BATCH: usize = 500;

/// `remote::pgvector`: vector stores in PostgreSQL with pgvector.
pub struct PgVectorProvider {
    pub(crate) pool: PgPool,
    pub(crate) settings: PostgresSettings,
    pub(crate) hnsw: HnswConfig,
    /// pgvector 0.8+ keeps scanning the HNSW graph past `ef_search` until the query's LIMIT is
    /// met (`hnsw.iterative_scan`); older servers need `ef_search` raised per query instead.
    pub(crate) iterative_scan: bool,
    /// The server's pgvector version, for logs.
    pub(crate) pgvector_version: String,
}

/// One row of the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreRow {
    pub id: i64,
    pub dimension: usize,
}

impl StoreRow {
    pub fn table(&self) -> String {
        format!("llama_stack_vs_{}", self.id)
    }
}

fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("../../../migrations/postgres/pgvector");
    // Its own bookkeeping table, so the registry can live in the same database.
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

pub(crate) fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl PgVectorProvider {
    /// Connects, checks that pgvector is available, applies the migrations and opens the pool.
    pub async fn connect(config: &PgVectorConfig) -> Result<Self> {
        let settings = config.postgres_settings();
        // A setup pool of one: the server's pgvector version decides the pool's settings.
        let setup = PostgresSettings {
            max_connections: 1,
            ..settings.clone()
        };
        let setup = setup.connect_pool(setup.connect_options()).await?;
        ensure_extension(&settings, &setup).await?;
        let version: String =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_one(&setup)
                .await
                .map_err(|e| settings_error(&settings, "reading the pgvector version", &e))?;
        setup.close().await;
        let iterative_scan = at_least(&version, (0, 8));

        let mut options = vec![
            ("hnsw.ef_search", config.hnsw.ef_search.to_string()),
            // Plans for the actual LIMIT and query vector, so the HNSW index is always chosen
            // where it helps, never a generic plan that sorts the whole table.
            ("plan_cache_mode", "force_custom_plan".to_string()),
        ];
        if iterative_scan {
            options.push(("hnsw.iterative_scan", "strict_order".to_string()));
        }
        let pool = settings
            .connect_pool(settings.connect_options().options(options))
            .await?;
        tracing::info!(server = %settings.address(), db = %settings.db, pgvector = %version,
            "Connected to PostgreSQL for remote::pgvector");
        Ok(PgVectorProvider {
            pool,
            settings,
            hnsw: config.hnsw.clone(),
            iterative_scan,
            pgvector_version: version,
        })
    }

    /// The server's pgvector version.
    pub fn pgvector_version(&self) -> &str {
        &self.pgvector_version
    }

    /// The store's catalog row, if it exists.
    pub(crate) async fn find_store(&self, store_id: &str) -> Result<Option<StoreRow>> {
        let row =
            sqlx::query("SELECT id, dimension FROM llama_stack_vector_stores WHERE store_id = $1")
                .bind(store_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.db_error("looking up the store", store_id, &e))?;
        Ok(row.map(|row| StoreRow {
            id: row.get("id"),
            dimension: row.get::<i32, _>("dimension") as usize,
        }))
    }

    pub(crate) async fn require_store(&self, store_id: &str) -> Result<StoreRow> {
        self.find_store(store_id).await?.ok_or_else(|| {
            Error::not_found(format!(
                "vector store `{store_id}` does not exist in remote::pgvector; create it first"
            ))
        })
    }

    /// Maps a database error: a store dropped meanwhile is not found, characters PostgreSQL
    /// cannot store are the request's fault, an unreachable server is the upstream's.
    pub(crate) fn db_error(&self, action: &str, store_id: &str, err: &sqlx::Error) -> Error {
        if let sqlx::Error::Database(db) = err {
            match db.code().as_deref() {
                Some("42P01") => {
                    return Error::not_found(format!(
                        "vector store `{store_id}` was deleted while {action}"
                    ));
                }
                Some("22P05" | "22021") => {
                    return Error::invalid(format!(
                        "{action} in vector store `{store_id}`: {}; PostgreSQL cannot store NUL characters in text or JSON",
                        db.message()
                    ));
                }
                _ => {}
            }
        }
        settings_error(
            &self.settings,
            &format!("{action} (store `{store_id}`)"),
            err,
        )
    }

    async fn create_table(
        &self,
        conn: &mut PgConnection,
        store: StoreRow,
        store_id: &str,
    ) -> Result<()> {
        let table = store.table();
        let dimension = store.dimension;
        let mut statements = vec![
            // Keyword search indexes the first 200,000 characters: a tsvector is limited to
            // 1 MB, and chunks are far shorter than that in practice.
            format!(
                "CREATE TABLE {table} (
                    chunk_id TEXT PRIMARY KEY,
                    content TEXT NOT NULL,
                    tokens TSVECTOR GENERATED ALWAYS AS
                        (to_tsvector('english', left(content, 200000))) STORED,
                    document JSON NOT NULL,
                    attributes JSONB NOT NULL,
                    embedding VECTOR({dimension}) NOT NULL,
                    file_id TEXT,
                    expires_at BIGINT
                )"
            ),
            format!("CREATE INDEX {table}_tokens ON {table} USING gin (tokens)"),
            format!("CREATE INDEX {table}_file ON {table} (file_id) WHERE file_id IS NOT NULL"),
            format!(
                "CREATE INDEX {table}_expiry ON {table} (expires_at) WHERE expires_at IS NOT NULL"
            ),
        ];
        if dimension <= MAX_INDEXED_DIMENSION {
            statements.push(format!(
                "CREATE INDEX {table}_embedding ON {table} USING hnsw (embedding vector_l2_ops)
                 WITH (m = {}, ef_construction = {})",
                self.hnsw.m, self.hnsw.ef_construction
            ));
        } else {
            tracing::warn!(
                dimension,
                "Vector store has more dimensions than pgvector's HNSW index supports; it is searched exactly"
            );
        }
        for sql in statements {
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await
                .map_err(|e| self.db_error("creating the store's table", store_id, &e))?;
        }
        Ok(())
    }
}

/// Checks that the server has pgvector and that it is (or may be) enabled in the database,
/// then applies the migrations, which enable it.
async fn ensure_extension(settings: &PostgresSettings, pool: &PgPool) -> Result<()> {
    let available: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'",
    )
    .fetch_optional(pool)
    .await
    .map_err(|e| settings_error(settings, "checking for the pgvector extension", &e))?;
    if available.is_none() {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "the PostgreSQL server at {} does not have the pgvector extension (`vector`) installed; install it on the server (Debian/Ubuntu: `apt install postgresql-<version>-pgvector`; other systems: https://github.com/pgvector/pgvector#installation; for a local PostgreSQL 15 on Debian bookworm, scripts/setup-postgres.sh in this repository builds it) and start again",
                settings.address()
            ),
        ));
    }
    migrator().run(pool).await.map_err(|e| {
        use sqlx::migrate::MigrateError;
        let denied = match &e {
            MigrateError::Execute(sqlx::Error::Database(db))
            | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
                db.code().as_deref() == Some("42501")
            }
            _ => false,
        };
        if denied {
            Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "pgvector is installed on the PostgreSQL server at {} but not enabled in database `{}`, and user `{}` may not enable it or create tables: run `CREATE EXTENSION vector;` in that database as a superuser and grant the user CREATE on it",
                    settings.address(),
                    settings.db,
                    settings.user
                ),
            )
        } else {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "cannot prepare database `{}` on PostgreSQL at {} for remote::pgvector: {e}",
                    settings.db,
                    settings.address()
                ),
            )
        }
    })
}

/// Errors that are not about one store: an unreachable server names it; anything else is
/// reported as internal, with the server's message.
pub(crate) fn settings_error(
    settings: &PostgresSettings,
    action: &str,
    err: &sqlx::Error,
) -> Error {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            let error = settings.connect_error(err);
            Error::new(
                error.kind(),
                format!("remote::pgvector: {action}: {}", error.message()),
            )
            .set_temporary(true)
        }
        other => Error::internal(format!(
            "remote::pgvector: {action} failed on PostgreSQL at {}: {other}",
            settings.address()
        )),
    }
}

/// Whether a pgvector version string (`0.8.0`) is at least `major.minor`.
fn at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// `[x,y,...]`, pgvector's text form; Rust prints the shortest string that reads back as the
/// same f32.
pub(crate) fn vector_text(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 10 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

/// Checks an embedding against the store before it reaches SQL.
pub(crate) fn check_embedding(
    embedding: &[f32],
    store: StoreRow,
    store_id: &str,
    what: &str,
) -> Result<()> {
    if embedding.len() != store.dimension {
        return Err(Error::invalid(format!(
            "{what} has {} dimensions, but vector store `{store_id}` holds {}-dimension embeddings",
            embedding.len(),
            store.dimension
        )));
    }
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "{what} contains NaN or infinite values"
        )));
    }
    Ok(())
}

#[async_trait]
impl VectorIoProvider for PgVectorProvider {
    async fn create_store(&self, spec: &StoreSpec) -> Result<()> {
        let store_id = spec.store_id.as_str();
        if spec.dimension == 0 || spec.dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "vector store `{store_id}`: dimension must be from 1 to {MAX_DIMENSION} (pgvector's limit), got {}",
                spec.dimension
            )));
        }
        let fail = |e: sqlx::Error| self.db_error("creating the store", store_id, &e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CATALOG_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let existing: Option<i32> = sqlx::query_scalar(
            "SELECT dimension FROM llama_stack_vector_stores WHERE store_id = $1",
        )
        .bind(store_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        if let Some(dimension) = existing {
            return if dimension as usize == spec.dimension {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "vector store `{store_id}` already exists with dimension {dimension}, not {}; delete it first or use another id",
                    spec.dimension
                )))
            };
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO llama_stack_vector_stores (store_id, dimension) VALUES ($1, $2) RETURNING id",
        )
        .bind(store_id)
        .bind(spec.dimension as i32)
        .fetch_one(&mut *tx)
        .await
        .map_err(fail)?;
        let store = StoreRow {
            id,
            dimension: spec.dimension,
        };
        self.create_table(&mut tx, store, store_id).await?;
        tx.commit().await.map_err(fail)?;
        tracing::debug!(store_id, table = %store.table(), dimension = spec.dimension, "Created vector store");
        Ok(())
    }

    async fn delete_store(&self, store_id: &str) -> Result<()> {
        let fail = |e: sqlx::Error| self.db_error("deleting the store", store_id, &e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CATALOG_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let id: Option<i64> = sqlx::query_scalar(
            "DELETE FROM llama_stack_vector_stores WHERE store_id = $1 RETURNING id",
        )
        .bind(store_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        if let Some(id) = id {
            let table = StoreRow { id, dimension: 0 }.table();
            sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE IF EXISTS {table}")))
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    async fn insert(&self, store_id: &str, chunks: Vec<StoredChunk>) -> Result<()> {
        let store = self.require_store(store_id).await?;
        for chunk in &chunks {
            check_embedding(
                &chunk.embedding,
                store,
                store_id,
                &format!("the embedding of chunk `{}`", chunk.chunk_id),
            )?;
        }
        // A chunk id given twice in one batch: the later one wins, as two inserts would.
        let mut last = std::collections::HashMap::new();
        for (i, chunk) in chunks.iter().enumerate() {
            last.insert(chunk.chunk_id.as_str(), i);
        }
        let unique: Vec<&StoredChunk> = chunks
            .iter()
            .enumerate()
            .filter(|(i, c)| last.get(c.chunk_id.as_str()) == Some(i))
            .map(|(_, c)| c)
            .collect();

        let table = store.table();
        let sql = format!(
            "INSERT INTO {table} (chunk_id, content, document, attributes, embedding, file_id, expires_at)
             SELECT id, content, document::json, attributes::jsonb, embedding::vector, file_id, expires_at
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[])
                 AS u(id, content, document, attributes, embedding, file_id, expires_at)
             ON CONFLICT (chunk_id) DO UPDATE SET content = EXCLUDED.content,
                 document = EXCLUDED.document, attributes = EXCLUDED.attributes,
                 embedding = EXCLUDED.embedding, file_id = EXCLUDED.file_id,
                 expires_at = EXCLUDED.expires_at"
        );
        let fail = |e: sqlx::Error| self.db_error("inserting chunks", store_id, &e);
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // Expired chunks are never returned; removing them here keeps tables from growing.
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE expires_at <= $1"
        )))
        .bind(now_seconds())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        for batch in unique.chunks(INSERT_BATCH) {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(batch.iter().map(|c| c.chunk_id.clone()).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.text.clone()).collect::<Vec<_>>())
                .bind(
                    batch
                        .iter()
                        .map(|c| c.document.to_string())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .iter()
                        .map(|c| serde_json::Value::Object(c.attributes.clone()).to_string())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    batch
                        .iter()
                        .map(|c| vector_text(&c.embedding))
                        .collect::<Vec<_>>(),
                )
                .bind(batch.iter().map(|c| c.file_id.clone()).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.expires_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        }
        tx.commit().await.map_err(fail)
    }

    async fn search(&self, store_id: &str, request: &SearchRequest) -> Result<Vec<ScoredChunk>> {
        let store = self.require_store(store_id).await?;
        crate::search::search(self, store_id, store, request).await
    }

    async fn delete_chunks(&self, store_id: &str, selector: &ChunkSelector) -> Result<u64> {
        let store = self.require_store(store_id).await?;
        let table = store.table();
        let query = match selector {
            ChunkSelector::Ids(ids) => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE chunk_id = ANY($1)"
            )))
            .bind(ids.clone()),
            ChunkSelector::File(file_id) => sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE file_id = $1"
            )))
            .bind(file_id.clone()),
        };
        let done = query
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_error("deleting chunks", store_id, &e))?;
        Ok(done.rows_affected())
    }

    async fn count(&self, store_id: &str) -> Result<u64> {
        let store = self.require_store(store_id).await?;
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {} WHERE expires_at IS NULL OR expires_at > $1",
            store.table()
        )))
        .bind(now_seconds())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_error("counting chunks", store_id, &e))?;
        Ok(count as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert!(at_least("0.8.0", (0, 8)));
        assert!(at_least("0.10.1", (0, 8)));
        assert!(!at_least("0.7.4", (0, 8)));
        assert!(!at_least("garbage", (0, 8)));
    }

    #[test]
    fn vectors_print_in_pgvector_text_form() {
        assert_eq!(vector_text(&[1.0, -0.5, 1e-7]), "[1,-0.5,0.0000001]");
        assert_eq!(vector_text(&[]), "[]");
    }
}
