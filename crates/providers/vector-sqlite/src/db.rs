//! The SQLite side, the source of truth: schema and every statement the provider runs.
//!
//! Chunks are never updated in place. Replacing a chunk deletes its row and inserts a new
//! one, and AUTOINCREMENT never reuses a row id, so the set of row ids alone tells the HNSW
//! index what changed while it was not watching (see `index::StoreIndex::open`).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use llama_stack_core::{Error, Result};
use llama_stack_memory::vector_io::{Filter, StoredChunk};
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use crate::keyword::{Plan, TermStats, any_of};

const SCHEMA_VERSION: i64 = 1;

/// Tables are prefixed `vec_` so the file may be shared with an upstream kvstore database.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS vec_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS vec_stores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id TEXT NOT NULL UNIQUE,
    dimension INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS vec_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_key INTEGER NOT NULL REFERENCES vec_stores(id) ON DELETE CASCADE,
    chunk_id TEXT NOT NULL,
    text TEXT NOT NULL,
    document TEXT NOT NULL,
    attributes TEXT NOT NULL,
    embedding BLOB NOT NULL,
    file_id TEXT,
    expires_at INTEGER,
    UNIQUE (store_key, chunk_id)
);
CREATE INDEX IF NOT EXISTS vec_chunks_by_file ON vec_chunks (store_key, file_id)
    WHERE file_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS vec_chunks_by_expiry ON vec_chunks (store_key, expires_at)
    WHERE expires_at IS NOT NULL;
CREATE VIRTUAL TABLE IF NOT EXISTS vec_chunks_fts USING fts5(
    text, content = 'vec_chunks', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS vec_chunks_fts_insert AFTER INSERT ON vec_chunks BEGIN
    INSERT INTO vec_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS vec_chunks_fts_delete AFTER DELETE ON vec_chunks BEGIN
    INSERT INTO vec_chunks_fts (vec_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
"#;

/// Rows per multi-row statement: 8 parameters each stays far below SQLite's 32766 limit.
const ROWS_PER_STATEMENT: usize = 400;
/// Row ids per `IN (...)` list.
const IDS_PER_STATEMENT: usize = 2000;

/// A stored store.
#[derive(Debug, Clone)]
pub(crate) struct StoreRow {
    pub key: i64,
    pub store_id: String,
    pub dimension: usize,
}

/// A chunk as search returns it.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRow {
    pub id: i64,
    pub chunk_id: String,
    pub document: Value,
    pub attributes: Map<String, Value>,
    pub file_id: Option<String>,
}

/// What an insert changed, for the index.
#[derive(Debug, Default)]
pub(crate) struct InsertOutcome {
    /// Rows that are gone: replaced chunks and purged expired ones.
    pub removed: Vec<i64>,
    /// New row id per inserted chunk, in the order given.
    pub inserted: Vec<i64>,
}

pub(crate) fn db_error(action: &str, err: impl std::fmt::Display) -> Error {
    Error::internal(format!("inline::sqlite-vec: {action} failed: {err}"))
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| db_error(&format!("decoding a stored {what}"), e))
}

pub(crate) fn embedding_to_blob(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn blob_to_embedding(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn chunk_row(row: &SqliteRow) -> Result<ChunkRow> {
    Ok(ChunkRow {
        id: row.get("id"),
        chunk_id: row.get("chunk_id"),
        document: decode_json(row.get::<&str, _>("document"), "document")?,
        attributes: decode_json(row.get::<&str, _>("attributes"), "attribute set")?,
        file_id: row.get("file_id"),
    })
}

/// The database, shared by every store of the provider.
#[derive(Clone)]
pub(crate) struct Database {
    pool: SqlitePool,
    terms: Arc<TermStats>,
}

impl Database {
    /// Opens (creating if needed) the database at `path` and its schema.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::invalid(format!(
                    "inline::sqlite-vec cannot create the folder {} for its database: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(|e| db_error("parsing the database path", e))?
            .create_if_missing(true)
            // WAL + FULL: an insert that returned survives a crash or power loss.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "inline::sqlite-vec cannot open its database {}: {e}",
                    path.display()
                ))
            })?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| db_error("creating the schema", e))?;
        let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM vec_schema")
            .fetch_one(&pool)
            .await
            .map_err(|e| db_error("reading the schema version", e))?;
        match version {
            None => {
                sqlx::query("INSERT INTO vec_schema (version) VALUES (?1)")
                    .bind(SCHEMA_VERSION)
                    .execute(&pool)
                    .await
                    .map_err(|e| db_error("recording the schema version", e))?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(Error::invalid(format!(
                    "{} was written by a newer llama-stack (vector schema {v}, this build knows {SCHEMA_VERSION}); upgrade, or point db_path elsewhere",
                    path.display()
                )));
            }
            Some(_) => {}
        }
        Ok(Database {
            pool,
            terms: Arc::default(),
        })
    }

    pub async fn stores(&self) -> Result<Vec<StoreRow>> {
        let rows = sqlx::query("SELECT id, store_id, dimension FROM vec_stores")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("listing stores", e))?;
        Ok(rows
            .iter()
            .map(|r| StoreRow {
                key: r.get("id"),
                store_id: r.get("store_id"),
                dimension: r.get::<i64, _>("dimension") as usize,
            })
            .collect())
    }

    /// Creates the store unless it exists; returns the stored row either way.
    pub async fn create_store(
        &self,
        store_id: &str,
        dimension: usize,
        now: i64,
    ) -> Result<StoreRow> {
        sqlx::query(
            "INSERT INTO vec_stores (store_id, dimension, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (store_id) DO NOTHING",
        )
        .bind(store_id)
        .bind(dimension as i64)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("creating a store", e))?;
        let row = sqlx::query("SELECT id, dimension FROM vec_stores WHERE store_id = ?1")
            .bind(store_id)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error("reading a store", e))?;
        Ok(StoreRow {
            key: row.get("id"),
            store_id: store_id.to_string(),
            dimension: row.get::<i64, _>("dimension") as usize,
        })
    }

    /// Deletes a store by id, with its chunks; a missing store is not an error.
    pub async fn delete_store(&self, store_id: &str) -> Result<()> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("starting a transaction", e))?;
        sqlx::query(
            "DELETE FROM vec_chunks WHERE store_key IN (SELECT id FROM vec_stores WHERE store_id = ?1)",
        )
        .bind(store_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("deleting a store's chunks", e))?;
        sqlx::query("DELETE FROM vec_stores WHERE store_id = ?1")
            .bind(store_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error("deleting a store", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("committing a store deletion", e))
    }

    /// Writes `chunks` (distinct chunk ids) in one transaction, replacing chunks with the same
    /// ids and purging the store's expired chunks on the way.
    pub async fn insert(
        &self,
        key: i64,
        chunks: &[StoredChunk],
        now: i64,
    ) -> Result<InsertOutcome> {
        let mut outcome = InsertOutcome::default();
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("starting a transaction", e))?;
        outcome.removed = sqlx::query_scalar(
            "DELETE FROM vec_chunks WHERE store_key = ?1 AND expires_at IS NOT NULL AND expires_at <= ?2 RETURNING id",
        )
        .bind(key)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("purging expired chunks", e))?;

        for slice in chunks.chunks(ROWS_PER_STATEMENT) {
            let mut delete =
                QueryBuilder::<Sqlite>::new("DELETE FROM vec_chunks WHERE store_key = ");
            delete.push_bind(key).push(" AND chunk_id IN (");
            let mut ids = delete.separated(", ");
            for c in slice {
                ids.push_bind(c.chunk_id.as_str());
            }
            delete.push(") RETURNING id");
            let replaced: Vec<i64> = delete
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error("replacing chunks", e))?;
            outcome.removed.extend(replaced);

            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO vec_chunks (store_key, chunk_id, text, document, attributes, embedding, file_id, expires_at) ",
            );
            insert.push_values(slice, |mut row, c| {
                row.push_bind(key)
                    .push_bind(c.chunk_id.as_str())
                    .push_bind(c.text.as_str())
                    .push_bind(c.document.to_string())
                    .push_bind(Value::Object(c.attributes.clone()).to_string())
                    .push_bind(embedding_to_blob(&c.embedding))
                    .push_bind(c.file_id.as_deref())
                    .push_bind(c.expires_at);
            });
            // RETURNING order is unspecified, so ids are matched back by chunk id.
            insert.push(" RETURNING id, chunk_id");
            let rows = insert
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error("inserting chunks", e))?;
            let by_chunk: HashMap<String, i64> = rows
                .iter()
                .map(|r| (r.get::<String, _>("chunk_id"), r.get::<i64, _>("id")))
                .collect();
            for c in slice {
                let id = by_chunk.get(&c.chunk_id).ok_or_else(|| {
                    db_error("inserting chunks", format!("no row id for {}", c.chunk_id))
                })?;
                outcome.inserted.push(*id);
            }
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing an insert", e))?;
        Ok(outcome)
    }

    /// Deletes chunks by chunk id, returning the deleted row ids.
    pub async fn delete_chunk_ids(&self, key: i64, chunk_ids: &[String]) -> Result<Vec<i64>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("starting a transaction", e))?;
        let mut removed = Vec::new();
        for slice in chunk_ids.chunks(IDS_PER_STATEMENT) {
            let mut delete =
                QueryBuilder::<Sqlite>::new("DELETE FROM vec_chunks WHERE store_key = ");
            delete.push_bind(key).push(" AND chunk_id IN (");
            let mut ids = delete.separated(", ");
            for id in slice {
                ids.push_bind(id.as_str());
            }
            delete.push(") RETURNING id");
            let rows: Vec<i64> = delete
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error("deleting chunks", e))?;
            removed.extend(rows);
        }
        tx.commit()
            .await
            .map_err(|e| db_error("committing a deletion", e))?;
        Ok(removed)
    }

    /// Deletes every chunk of one vector store file, returning the deleted row ids.
    pub async fn delete_file(&self, key: i64, file_id: &str) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "DELETE FROM vec_chunks WHERE store_key = ?1 AND file_id = ?2 RETURNING id",
        )
        .bind(key)
        .bind(file_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("deleting a file's chunks", e))
    }

    pub async fn count(&self, key: i64, now: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vec_chunks WHERE store_key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(key)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("counting chunks", e))?;
        Ok(n as u64)
    }

    /// Every row id of the store, expired or not.
    pub async fn row_ids(&self, key: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT id FROM vec_chunks WHERE store_key = ?1")
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| db_error("listing row ids", e))
    }

    /// Embedding and expiry of the given rows (those that still exist).
    pub async fn embeddings(&self, ids: &[i64]) -> Result<Vec<(i64, Vec<f32>, Option<i64>)>> {
        let mut out = Vec::with_capacity(ids.len());
        for slice in ids.chunks(IDS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Sqlite>::new(
                "SELECT id, embedding, expires_at FROM vec_chunks WHERE id IN (",
            );
            let mut list = select.separated(", ");
            for id in slice {
                list.push_bind(*id);
            }
            select.push(")");
            let rows = select
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("reading embeddings", e))?;
            out.extend(rows.iter().map(|r| {
                (
                    r.get::<i64, _>("id"),
                    blob_to_embedding(r.get::<&[u8], _>("embedding")),
                    r.get::<Option<i64>, _>("expires_at"),
                )
            }));
        }
        Ok(out)
    }

    /// The given rows by row id; `with_document: false` leaves documents `null`, for
    /// filtering candidates before paying for their documents.
    pub async fn rows(&self, ids: &[i64], with_document: bool) -> Result<HashMap<i64, ChunkRow>> {
        let mut out = HashMap::with_capacity(ids.len());
        let document = if with_document {
            "document"
        } else {
            "'null' AS document"
        };
        for slice in ids.chunks(IDS_PER_STATEMENT) {
            let mut select = QueryBuilder::<Sqlite>::new(format!(
                "SELECT id, chunk_id, {document}, attributes, file_id FROM vec_chunks WHERE id IN ("
            ));
            let mut list = select.separated(", ");
            for id in slice {
                list.push_bind(*id);
            }
            select.push(")");
            let rows = select
                .build()
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("reading chunks", e))?;
            for row in &rows {
                let chunk = chunk_row(row)?;
                out.insert(chunk.id, chunk);
            }
        }
        Ok(out)
    }

    /// Row ids of the store's unexpired chunks whose attributes pass `filter`.
    pub async fn matching_ids(
        &self,
        key: i64,
        now: i64,
        filter: Option<&Filter>,
    ) -> Result<Vec<i64>> {
        let mut rows = sqlx::query(
            "SELECT id, attributes FROM vec_chunks WHERE store_key = ?1 AND (expires_at IS NULL OR expires_at > ?2)",
        )
        .bind(key)
        .bind(now)
        .fetch(&self.pool);
        let mut ids = Vec::new();
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| db_error("scanning chunks", e))?
        {
            let passes = match filter {
                None => true,
                Some(f) => f.matches(&decode_json(
                    row.get::<&str, _>("attributes"),
                    "attribute set",
                )?),
            };
            if passes {
                ids.push(row.get("id"));
            }
        }
        Ok(ids)
    }

    /// Full-text search for any of `phrases`: up to `k` unexpired chunks passing `filter`,
    /// by BM25 (returned positive, higher is better). See [`crate::keyword`] for when only
    /// the rarer phrases are ranked.
    pub async fn keyword(
        &self,
        key: i64,
        phrases: &[String],
        now: i64,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<(ChunkRow, f32)>> {
        let hits = match self.pruned_keyword(key, phrases, now, k, filter).await? {
            Some(hits) => hits,
            None => self.ranked(key, &any_of(phrases), now, k, filter).await?,
        };
        Ok(hits
            .into_iter()
            .map(|(chunk, score)| (chunk, (score as f32).max(f32::MIN_POSITIVE)))
            .collect())
    }

    /// The top k ranked on the rarer phrases, when the bounds of the phrases left out show
    /// that no chunk matching only those could reach it; `None` when the whole query has to
    /// be ranked.
    async fn pruned_keyword(
        &self,
        key: i64,
        phrases: &[String],
        now: i64,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Option<Vec<(ChunkRow, f64)>>> {
        if phrases.len() < 2 {
            return Ok(None);
        }
        let plan = self.plan(phrases).await?;
        let Some(first) = plan.first() else {
            return Ok(None);
        };
        let query = |kept: &[usize]| any_of(kept.iter().map(|&i| &phrases[i]));
        let hits = self
            .ranked(key, &query(&first.kept), now, k, filter)
            .await?;
        let kth = match hits.len() == k {
            true => hits[k - 1].1,
            false => 0.0,
        };
        if Plan::settles(&first, kth) {
            return Ok(Some(hits));
        }
        match plan.second(kth) {
            Some(second) => Ok(Some(
                self.ranked(key, &query(&second.kept), now, k, filter)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// Row count and each phrase's document frequency, as FTS5 computes its IDF: over every
    /// store's rows, expired or not. Counting a common word walks its whole posting list, so
    /// counts are cached until the rows change.
    pub(crate) async fn plan(&self, phrases: &[String]) -> Result<Plan> {
        let (version, mut cached) = self.terms.lookup(phrases);
        let unique = |wanted: &dyn Fn(usize) -> bool| {
            let mut list: Vec<&String> = (0..phrases.len())
                .filter(|&i| wanted(i))
                .map(|i| &phrases[i])
                .collect();
            list.sort();
            list.dedup();
            list
        };
        let (mut now, mut counts) = self
            .count_phrases(&unique(&|i| cached[i].is_none()))
            .await?;
        if Some(now) != version && cached.iter().any(Option::is_some) {
            // The rows changed since those counts were cached: count every phrase again.
            (now, counts) = self.count_phrases(&unique(&|_| true)).await?;
            cached = vec![None; phrases.len()];
        }
        let counted: HashMap<&str, i64> = counts.iter().map(|(p, n)| (p.as_str(), *n)).collect();
        let dfs = phrases
            .iter()
            .zip(cached)
            .map(|(p, df)| df.or_else(|| counted.get(p.as_str()).copied()).unwrap_or(0))
            .collect();
        self.terms.store(now, counts);
        Ok(Plan::new(now.1, dfs))
    }

    /// `((newest row id, row count), frequency of each phrase)`, read in one statement so
    /// they agree with each other.
    async fn count_phrases(&self, phrases: &[&String]) -> Result<((i64, i64), Vec<(String, i64)>)> {
        let mut select = QueryBuilder::<Sqlite>::new(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM vec_chunks), (SELECT COUNT(*) FROM vec_chunks)",
        );
        for phrase in phrases {
            select
                .push(", (SELECT COUNT(*) FROM vec_chunks_fts WHERE vec_chunks_fts MATCH ")
                .push_bind(phrase.as_str())
                .push(")");
        }
        let row = select
            .build()
            .fetch_one(&self.pool)
            .await
            .map_err(|e| db_error("counting keyword matches", e))?;
        let version = (row.get::<i64, _>(0), row.get::<i64, _>(1));
        let counts = phrases
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), row.get::<i64, _>(i + 2)))
            .collect();
        Ok((version, counts))
    }

    /// Up to `k` unexpired chunks of the store passing `filter` that match the FTS5 `query`,
    /// best first, with their BM25 scores made positive.
    pub(crate) async fn ranked(
        &self,
        key: i64,
        query: &str,
        now: i64,
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<(ChunkRow, f64)>> {
        // Without a filter SQLite stops at k; with one, rows stream until k pass.
        let limit = if filter.is_some() { -1 } else { k as i64 };
        // The FTS index must drive: one pass over the MATCH hits, each looked up in
        // vec_chunks by primary key. Left to itself SQLite may loop over the store's rows and
        // re-run the full-text query for each one (quadratic in the store size); CROSS JOIN
        // pins the FTS table as the outer loop. Ties in rank go by row id.
        let mut rows = sqlx::query(
            "SELECT c.id, c.chunk_id, c.document, c.attributes, c.file_id, bm25(vec_chunks_fts) AS rank
             FROM vec_chunks_fts CROSS JOIN vec_chunks c ON c.id = vec_chunks_fts.rowid
             WHERE vec_chunks_fts MATCH ?1 AND c.store_key = ?2
               AND (c.expires_at IS NULL OR c.expires_at > ?3)
             ORDER BY rank, c.id LIMIT ?4",
        )
        .bind(query)
        .bind(key)
        .bind(now)
        .bind(limit)
        .fetch(&self.pool);
        let mut hits = Vec::new();
        while hits.len() < k
            && let Some(row) = rows
                .try_next()
                .await
                .map_err(|e| db_error("keyword search", e))?
        {
            let chunk = chunk_row(&row)?;
            if filter.is_none_or(|f| f.matches(&chunk.attributes)) {
                // FTS5's bm25 is negative, more negative for better matches.
                hits.push((chunk, -row.get::<f64, _>("rank")));
            }
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts cached by one connection pool follow writes made through another, as they
    /// would writes of another process.
    #[tokio::test]
    async fn cached_counts_follow_writes_made_elsewhere() {
        use llama_stack_vector_conformance::data::chunk;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vec.db");
        let a = Database::open(&path).await.unwrap();
        let b = Database::open(&path).await.unwrap();
        let key = a.create_store("s", 2, 0).await.unwrap().key;
        let insert = async |db: &Database, id: &str, text: &str| {
            db.insert(key, &[chunk(id, text, vec![1.0, 0.0])], 0)
                .await
                .unwrap();
        };
        let words: Vec<String> = ["\"okapi\"", "\"the\"", "\"okapi\""]
            .map(String::from)
            .into();
        insert(&a, "c1", "the okapi").await;
        assert_eq!(a.plan(&words).await.unwrap().dfs(), [1, 1, 1]);
        insert(&b, "c2", "the cat").await;
        insert(&b, "c3", "an okapi").await;
        assert_eq!(a.plan(&words).await.unwrap().dfs(), [2, 2, 2]);
        b.delete_chunk_ids(key, &["c1".to_string()]).await.unwrap();
        assert_eq!(a.plan(&words).await.unwrap().dfs(), [1, 1, 1]);
        let more: Vec<String> = ["\"cats\"", "\"the\"", "\"zebra\""]
            .map(String::from)
            .into();
        assert_eq!(a.plan(&more).await.unwrap().dfs(), [1, 1, 0]);
    }

    #[test]
    fn embeddings_round_trip_through_blobs() {
        let v = vec![1.5, -0.25, f32::MIN_POSITIVE];
        assert_eq!(blob_to_embedding(&embedding_to_blob(&v)), v);
    }
}
