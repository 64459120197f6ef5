//! Vector and keyword search over one store's table.
//!
//! Filters are applied here, with [`Filter::matches`], so they mean exactly what they mean for
//! every other provider. Vector search first takes `10 * k` candidates (100 to 1000) from the
//! HNSW index and keeps the matching ones; when fewer than `k` match, it falls back to an exact
//! scan of the store in distance order, stopping at the `k`-th match. Keyword search reads the
//! full-text matches in rank order and stops at the `k`-th one that passes the filter.

use futures::TryStreamExt;
use llama_stack_core::{Error, Result};
use llama_stack_memory::{
    vector_io::Filter, vector_io::ScoredChunk, vector_io::SearchMode, vector_io::SearchRequest,
};
use serde_json::{Map, Value};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use crate::provider::{PgVectorProvider, StoreRow, check_embedding, now_seconds, vector_text};

/// Vector scores are 1 / distance with the distance floored here, so an exact match scores
/// 1e6 rather than infinity.
const MIN_DISTANCE: f64 = 1e-6;
/// pgvector's largest `hnsw.ef_search`.
const MAX_EF_SEARCH: usize = 1000;

pub(crate) async fn search(
    provider: &PgVectorProvider,
    store_id: &str,
    store: StoreRow,
    request: &SearchRequest,
) -> Result<Vec<ScoredChunk>> {
    let search = Search {
        provider,
        store_id,
        table: store.table(),
        now: now_seconds(),
        k: request.k,
        filter: request.filter.as_ref(),
    };
    match request.mode {
        SearchMode::Vector => {
            let embedding = request.embedding.as_deref().ok_or_else(|| {
                Error::invalid("a vector search needs a query embedding".to_string())
            })?;
            check_embedding(embedding, store, store_id, "the query embedding")?;
            if request.k == 0 {
                return Ok(Vec::new());
            }
            search.vector(&vector_text(embedding)).await
        }
        SearchMode::Keyword => {
            if request.k == 0 {
                return Ok(Vec::new());
            }
            search.keyword(&request.text).await
        }
    }
}

struct Search<'a> {
    provider: &'a PgVectorProvider,
    store_id: &'a str,
    table: String,
    now: i64,
    k: usize,
    filter: Option<&'a Filter>,
}

impl Search<'_> {
    fn fail(&self, err: sqlx::Error) -> Error {
        self.provider.db_error("searching", self.store_id, &err)
    }

    async fn vector(&self, query: &str) -> Result<Vec<ScoredChunk>> {
        let limit = match self.filter {
            None => self.k,
            Some(_) => self
                .k
                .saturating_mul(10)
                .clamp(100, MAX_EF_SEARCH)
                .max(self.k),
        };
        let candidates = self.index_scan(query, limit).await?;
        let matched: Vec<ScoredChunk> = candidates
            .into_iter()
            .filter(|hit| self.passes(hit))
            .take(self.k)
            .collect();
        if matched.len() >= self.k {
            return Ok(matched);
        }
        // Too few: the filter is selective, the store holds fewer than k live chunks, or the
        // approximate scan stopped early. The exact scan settles all three.
        self.exact_scan(query).await
    }

    /// The `limit` nearest live chunks by the HNSW index (approximate).
    async fn index_scan(&self, query: &str, limit: usize) -> Result<Vec<ScoredChunk>> {
        let sql = format!(
            "SELECT chunk_id, document::text AS document, attributes::text AS attributes, file_id,
                    embedding <-> $1::vector AS distance
             FROM {} WHERE expires_at IS NULL OR expires_at > $2
             ORDER BY embedding <-> $1::vector LIMIT $3",
            self.table
        );
        let statement = sqlx::query(AssertSqlSafe(sql))
            .bind(query)
            .bind(self.now)
            .bind(sql_limit(limit));
        let ef_search = self.provider.hnsw.ef_search as usize;
        let rows = if !self.provider.iterative_scan && limit > ef_search {
            // Without iterative scans the index returns at most ef_search rows.
            let mut tx = self.provider.pool.begin().await.map_err(|e| self.fail(e))?;
            sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
                .bind(limit.min(MAX_EF_SEARCH).to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
            let rows = statement
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| self.fail(e))?;
            tx.commit().await.map_err(|e| self.fail(e))?;
            rows
        } else {
            statement
                .fetch_all(&self.provider.pool)
                .await
                .map_err(|e| self.fail(e))?
        };
        rows.iter()
            .map(|row| vector_hit(row, self.store_id))
            .collect()
    }

    /// Every live chunk in exact distance order, read until `k` pass the filter.
    async fn exact_scan(&self, query: &str) -> Result<Vec<ScoredChunk>> {
        // `+ 0` keeps the planner off the HNSW index, whose order is approximate.
        let sql = format!(
            "SELECT chunk_id, document::text AS document, attributes::text AS attributes, file_id,
                    embedding <-> $1::vector AS distance
             FROM {} WHERE expires_at IS NULL OR expires_at > $2
             ORDER BY (embedding <-> $1::vector) + 0, chunk_id LIMIT $3",
            self.table
        );
        let limit = self.filter.is_none().then_some(sql_limit(self.k));
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(query)
            .bind(self.now)
            .bind(limit)
            .fetch(&self.provider.pool);
        let mut hits = Vec::new();
        while hits.len() < self.k {
            let Some(row) = rows.try_next().await.map_err(|e| self.fail(e))? else {
                break;
            };
            let hit = vector_hit(&row, self.store_id)?;
            if self.passes(&hit) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    /// Full-text search: any of the query's words (English stemming, stop words dropped)
    /// matches, ranked by `ts_rank`.
    async fn keyword(&self, text: &str) -> Result<Vec<ScoredChunk>> {
        // llama_stack_any_word_query comes with the migrations; see its comment there.
        let sql = format!(
            "SELECT chunk_id, document::text AS document, attributes::text AS attributes, file_id,
                    ts_rank(tokens, llama_stack_any_word_query('english', $1)) AS score
             FROM {}
             WHERE tokens @@ llama_stack_any_word_query('english', $1)
                 AND (expires_at IS NULL OR expires_at > $2)
             ORDER BY score DESC, chunk_id LIMIT $3",
            self.table
        );
        let limit = self.filter.is_none().then_some(sql_limit(self.k));
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(text)
            .bind(self.now)
            .bind(limit)
            .fetch(&self.provider.pool);
        let mut hits = Vec::new();
        while hits.len() < self.k {
            let Some(row) = rows.try_next().await.map_err(|e| self.fail(e))? else {
                break;
            };
            let score: f32 = row.get("score");
            let hit = decode(&row, score, self.store_id)?;
            if self.passes(&hit) {
                hits.push(hit);
            }
        }
        Ok(hits)
    }

    fn passes(&self, hit: &ScoredChunk) -> bool {
        self.filter.is_none_or(|f| f.matches(&hit.attributes))
    }
}

/// A LIMIT for `k` results; `k` beyond i64 means no limit in practice.
fn sql_limit(k: usize) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

fn vector_hit(row: &PgRow, store_id: &str) -> Result<ScoredChunk> {
    let distance: f64 = row.get("distance");
    decode(row, (1.0 / distance.max(MIN_DISTANCE)) as f32, store_id)
}

fn decode(row: &PgRow, score: f32, store_id: &str) -> Result<ScoredChunk> {
    let bad = |what: &str, e: serde_json::Error| {
        Error::internal(format!(
            "remote::pgvector: a stored {what} in vector store `{store_id}` is not valid JSON: {e}"
        ))
    };
    let document: String = row.get("document");
    let attributes: String = row.get("attributes");
    let attributes: Map<String, Value> =
        serde_json::from_str(&attributes).map_err(|e| bad("attributes object", e))?;
    Ok(ScoredChunk {
        chunk_id: row.get("chunk_id"),
        document: serde_json::from_str(&document).map_err(|e| bad("document", e))?,
        attributes,
        file_id: row.get("file_id"),
        score,
    })
}

#[cfg(test)]
mod tests {
    use llama_stack_core::parse_config;
    use llama_stack_memory::{
        vector_io::StoreSpec, vector_io::StoredChunk, vector_io::VectorIoProvider,
    };
    use serde_json::json;

    use super::*;

    /// Servers before pgvector 0.8 have no iterative index scans; the provider then raises
    /// `hnsw.ef_search` per query so that large `k` still gets `k` results.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_iterative_scans_large_k_still_gets_k_results() {
        let Some(db) = llama_stack_pg_test_server::database("pgvector_old_scan") else {
            return;
        };
        let config = parse_config(&json!({
            "host": db.host, "port": db.port, "db": db.database, "user": db.user,
            "password": db.password, "hnsw": {"ef_search": 10}
        }))
        .unwrap();
        let mut p = PgVectorProvider::connect(&config).await.unwrap();
        p.iterative_scan = false;
        let store = StoreSpec {
            store_id: "old-scan".into(),
            dimension: 4,
        };
        p.create_store(&store).await.unwrap();
        let chunks = (0..300)
            .map(|i| {
                let x = i as f32;
                StoredChunk {
                    chunk_id: format!("c{i}"),
                    text: format!("item {i}"),
                    document: json!({"i": i}),
                    attributes: json!({"even": i % 2 == 0}).as_object().cloned().unwrap(),
                    embedding: vec![x.sin(), x.cos(), (x / 7.0).sin(), (x / 13.0).cos()],
                    file_id: None,
                    expires_at: None,
                }
            })
            .collect();
        p.insert("old-scan", chunks).await.unwrap();
        let mut request = SearchRequest {
            mode: SearchMode::Vector,
            embedding: Some(vec![0.0, 1.0, 0.0, 1.0]),
            text: String::new(),
            k: 120,
            filter: None,
        };
        assert_eq!(p.search("old-scan", &request).await.unwrap().len(), 120);
        request.filter =
            Some(Filter::parse(&json!({"type": "eq", "key": "even", "value": true}), "f").unwrap());
        let hits = p.search("old-scan", &request).await.unwrap();
        assert_eq!(hits.len(), 120);
        assert!(hits.iter().all(|h| h.attributes["even"] == true));
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
}
