//! [`SqliteVecProvider`]: the `VectorIoProvider` over the database and the per-store graphs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use llama_stack_core::CheckedConfig;
use llama_stack_core::{Error, Result};
use llama_stack_memory::{
    vector_io::ChunkSelector, vector_io::Filter, vector_io::ScoredChunk, vector_io::SearchMode,
    vector_io::SearchRequest, vector_io::StoreSpec, vector_io::StoredChunk,
    vector_io::VectorIoProvider,
};

use crate::config::SqliteVecConfig;
use crate::db::{ChunkRow, Database};
use crate::hnsw::HnswParams;
use crate::index::{StoreIndex, index_path};
use crate::keyword::phrases;

/// Embedded vector stores: SQLite (chunks, FTS5 keyword index) plus an in-process HNSW graph
/// per store, saved beside the database. One provider instance per database file: the graphs
/// live in this process and only see writes made through it (others are caught up on the
/// next start).
pub struct SqliteVecProvider {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    db_path: PathBuf,
    index_dir: PathBuf,
    params: HnswParams,
    ef_search: usize,
    filter_oversampling: usize,
    compact_deleted_ratio: f64,
    stores: RwLock<HashMap<String, Arc<StoreState>>>,
}

/// One store as the provider keeps it between calls.
struct StoreState {
    store_id: String,
    key: i64,
    dimension: usize,
    /// Held by every write from its database transaction until the graph has applied it, so
    /// the graph sees changes in commit order.
    writer: tokio::sync::Mutex<()>,
    /// Loaded on first use, so start-up does not wait for every store's graph.
    index: tokio::sync::OnceCell<Arc<StoreIndex>>,
    deleted: AtomicBool,
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn join_error(what: &str, err: tokio::task::JoinError) -> Error {
    Error::internal(format!("inline::sqlite-vec: {what} did not finish: {err}"))
}

/// 1 / L2 distance, with the distance floored at 1e-6 so an exact match stays finite.
fn score(squared_distance: f32) -> f32 {
    1.0 / squared_distance.max(0.0).sqrt().max(1e-6)
}

fn scored(row: ChunkRow, score: f32) -> ScoredChunk {
    ScoredChunk {
        chunk_id: row.chunk_id,
        document: row.document,
        attributes: row.attributes,
        file_id: row.file_id,
        score,
    }
}

impl SqliteVecProvider {
    /// Opens the database named by `config` (see [`SqliteVecConfig::database_path`]) and
    /// starts the background task that saves changed graphs.
    pub async fn open(config: &SqliteVecConfig, store_dir: Option<&Path>) -> Result<Self> {
        let issues = config.issues();
        if !issues.is_empty() {
            let listed: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect();
            return Err(Error::invalid(format!(
                "invalid inline::sqlite-vec config: {}",
                listed.join("; ")
            )));
        }
        let db_path = config.database_path(store_dir)?;
        let db = Database::open(&db_path).await?;
        let index_dir = PathBuf::from(format!("{}.hnsw", db_path.display()));
        let stores: HashMap<String, Arc<StoreState>> = db
            .stores()
            .await?
            .into_iter()
            .map(|row| {
                let state = StoreState {
                    store_id: row.store_id.clone(),
                    key: row.key,
                    dimension: row.dimension,
                    writer: tokio::sync::Mutex::new(()),
                    index: tokio::sync::OnceCell::new(),
                    deleted: AtomicBool::new(false),
                };
                (row.store_id, Arc::new(state))
            })
            .collect();
        remove_orphan_files(&index_dir, stores.values().map(|s| s.key).collect());
        tracing::info!(path = %db_path.display(), stores = stores.len(), "Vector store database opened");

        let inner = Arc::new(Inner {
            db,
            db_path,
            index_dir,
            params: HnswParams {
                m: config.hnsw_m,
                ef_construction: config.ef_construction,
            },
            ef_search: config.ef_search,
            filter_oversampling: config.filter_oversampling,
            compact_deleted_ratio: config.compact_deleted_ratio,
            stores: RwLock::new(stores),
        });
        let weak = Arc::downgrade(&inner);
        let interval = Duration::from_secs(config.index_save_interval_seconds);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { break };
                inner.save_changed().await;
            }
        });
        Ok(SqliteVecProvider { inner })
    }

    /// Writes every changed graph to disk now (also done periodically and on drop).
    pub async fn flush(&self) {
        self.inner.save_changed().await;
    }

    /// The database file in use.
    pub fn database_path(&self) -> &Path {
        &self.inner.db_path
    }

    #[cfg(test)]
    pub(crate) async fn index_of(&self, store_id: &str) -> Result<Arc<StoreIndex>> {
        let state = self.inner.store(store_id)?;
        self.inner.index(&state).await
    }
}

/// Removes graph files of stores that no longer exist and leftovers of interrupted saves.
fn remove_orphan_files(index_dir: &Path, keys: HashSet<i64>) {
    let Ok(entries) = std::fs::read_dir(index_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let known = name
            .strip_prefix("store-")
            .and_then(|rest| rest.strip_suffix(".hnsw"))
            .and_then(|key| key.parse::<i64>().ok())
            .is_some_and(|key| keys.contains(&key));
        if !known {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

impl Inner {
    fn store(&self, store_id: &str) -> Result<Arc<StoreState>> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(store_id)
            .cloned()
            .ok_or_else(|| {
                Error::not_found(format!(
                    "vector store `{store_id}` does not exist in inline::sqlite-vec; register it first"
                ))
            })
    }

    async fn index(&self, state: &StoreState) -> Result<Arc<StoreIndex>> {
        state
            .index
            .get_or_try_init(|| async {
                StoreIndex::open(
                    &self.db,
                    &self.index_dir,
                    state.key,
                    state.dimension,
                    self.params,
                )
                .await
                .map(Arc::new)
            })
            .await
            .cloned()
    }

    fn loaded_indexes(&self) -> Vec<Arc<StoreIndex>> {
        self.stores
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|s| s.index.get().cloned())
            .collect()
    }

    async fn save_changed(&self) {
        for index in self.loaded_indexes().into_iter().filter(|i| i.is_dirty()) {
            let result = tokio::task::spawn_blocking(move || index.save_if_dirty()).await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "Could not save a vector index; it will be caught up from the database on the next start")
                }
                Err(e) => tracing::warn!(error = %e, "Vector index save task failed"),
            }
        }
    }

    /// Rebuilds the store's graph in the background when tombstones have piled up.
    fn maybe_compact(self: &Arc<Self>, state: Arc<StoreState>, index: Arc<StoreIndex>) {
        if !index.needs_compaction(self.compact_deleted_ratio) {
            return;
        }
        let ratio = self.compact_deleted_ratio;
        tokio::spawn(async move {
            let _writer = state.writer.lock().await;
            if state.deleted.load(Ordering::SeqCst) || !index.needs_compaction(ratio) {
                return;
            }
            if let Err(e) = tokio::task::spawn_blocking(move || index.compact()).await {
                tracing::warn!(store_id = %state.store_id, error = %e, "Vector index compaction failed");
            }
        });
    }

    /// Applies a database change to the graph: `removed` rows go, `added` rows come in.
    async fn apply(
        index: Arc<StoreIndex>,
        removed: Vec<i64>,
        added: Vec<(i64, StoredChunk)>,
    ) -> Result<()> {
        if removed.is_empty() && added.is_empty() {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            let mut graph = index.graph.write().unwrap_or_else(|p| p.into_inner());
            for rowid in removed {
                graph.remove(rowid);
            }
            for (rowid, chunk) in added {
                graph.insert(rowid, &chunk.embedding, chunk.expires_at);
            }
            drop(graph);
            index.mark_changed();
        })
        .await
        .map_err(|e| join_error("updating the vector index", e))
    }

    async fn insert(
        self: Arc<Self>,
        state: Arc<StoreState>,
        chunks: Vec<StoredChunk>,
    ) -> Result<()> {
        let _writer = state.writer.lock().await;
        if state.deleted.load(Ordering::SeqCst) {
            return Err(Error::not_found(format!(
                "vector store `{}` was deleted",
                state.store_id
            )));
        }
        let index = self.index(&state).await?;
        let outcome = self.db.insert(state.key, &chunks, now_seconds()).await?;
        let added = outcome.inserted.into_iter().zip(chunks).collect();
        Self::apply(index.clone(), outcome.removed, added).await?;
        self.maybe_compact(state.clone(), index);
        Ok(())
    }

    async fn delete_chunks(
        self: Arc<Self>,
        state: Arc<StoreState>,
        selector: ChunkSelector,
    ) -> Result<u64> {
        let _writer = state.writer.lock().await;
        if state.deleted.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let index = self.index(&state).await?;
        let removed = match &selector {
            ChunkSelector::Ids(ids) => self.db.delete_chunk_ids(state.key, ids).await?,
            ChunkSelector::File(file_id) => self.db.delete_file(state.key, file_id).await?,
        };
        let count = removed.len() as u64;
        Self::apply(index.clone(), removed, Vec::new()).await?;
        self.maybe_compact(state.clone(), index);
        Ok(count)
    }

    async fn delete_store(self: Arc<Self>, store_id: String) -> Result<()> {
        let state = self
            .stores
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&store_id);
        let Some(state) = state else {
            return self.db.delete_store(&store_id).await;
        };
        let _writer = state.writer.lock().await;
        state.deleted.store(true, Ordering::SeqCst);
        self.db.delete_store(&store_id).await?;
        match state.index.get() {
            Some(index) => index.discard(),
            None => {
                let _ = std::fs::remove_file(index_path(&self.index_dir, state.key));
            }
        }
        Ok(())
    }

    async fn vector_search(
        &self,
        state: &StoreState,
        request: &SearchRequest,
    ) -> Result<Vec<ScoredChunk>> {
        let query = request
            .embedding
            .clone()
            .ok_or_else(|| Error::invalid("a vector search needs a query embedding"))?;
        if query.len() != state.dimension {
            return Err(Error::invalid(format!(
                "the query embedding has {} values but vector store `{}` holds {}-dimension embeddings; embed the query with the store's embedding model",
                query.len(),
                state.store_id,
                state.dimension
            )));
        }
        if query.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "the query embedding contains NaN or infinite values",
            ));
        }
        let k = request.k;
        if k == 0 {
            return Ok(Vec::new());
        }
        let index = self.index(state).await?;
        let now = now_seconds();
        let filter = request.filter.as_ref();
        let want = if filter.is_some() {
            k.saturating_mul(self.filter_oversampling)
        } else {
            k
        };
        let ef = self.ef_search.max(want);
        let (graph_index, q) = (index.clone(), query.clone());
        let candidates = tokio::task::spawn_blocking(move || {
            let graph = graph_index.graph.read().unwrap_or_else(|p| p.into_inner());
            graph.search(&q, want, ef, now)
        })
        .await
        .map_err(|e| join_error("a vector search", e))?;
        // Fewer than asked for means the graph search reached every live chunk.
        let exhaustive = candidates.len() < want;

        let ids: Vec<i64> = candidates.iter().map(|c| c.1).collect();
        let rows = self.db.rows(&ids, filter.is_none()).await?;
        let survivors: Vec<(f32, i64)> = candidates
            .into_iter()
            .filter(|(_, id)| {
                rows.get(id)
                    .is_some_and(|r| filter.is_none_or(|f| f.matches(&r.attributes)))
            })
            .take(k)
            .collect();
        let ranked = if survivors.len() >= k || exhaustive {
            survivors
        } else {
            self.exact_search(state, index, query, k, now, filter)
                .await?
        };
        let mut rows = if filter.is_none() && ranked.iter().all(|(_, id)| rows.contains_key(id)) {
            rows
        } else {
            let ids: Vec<i64> = ranked.iter().map(|c| c.1).collect();
            self.db.rows(&ids, true).await?
        };
        Ok(ranked
            .into_iter()
            .filter_map(|(d, id)| rows.remove(&id).map(|row| scored(row, score(d))))
            .collect())
    }

    /// Exact nearest neighbours among every unexpired chunk passing `filter`, for filters
    /// too selective for the oversampled graph search.
    async fn exact_search(
        &self,
        state: &StoreState,
        index: Arc<StoreIndex>,
        query: Vec<f32>,
        k: usize,
        now: i64,
        filter: Option<&Filter>,
    ) -> Result<Vec<(f32, i64)>> {
        let ids = self.db.matching_ids(state.key, now, filter).await?;
        tokio::task::spawn_blocking(move || {
            let graph = index.graph.read().unwrap_or_else(|p| p.into_inner());
            let mut all: Vec<(f32, i64)> = ids
                .into_iter()
                .filter_map(|id| graph.distance_to(id, &query).map(|d| (d, id)))
                .collect();
            drop(graph);
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            all.truncate(k);
            all
        })
        .await
        .map_err(|e| join_error("an exact vector search", e))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Shutdown: save what changed so the next start need not re-index it.
        for index in self.loaded_indexes() {
            if let Err(e) = index.save_if_dirty() {
                tracing::warn!(error = %e, "Could not save a vector index at shutdown; it will be caught up from the database on the next start");
            }
        }
    }
}

fn check_embeddings(state: &StoreState, chunks: &[StoredChunk]) -> Result<()> {
    for chunk in chunks {
        if chunk.embedding.len() != state.dimension {
            return Err(Error::invalid(format!(
                "chunk `{}` has a {}-value embedding but vector store `{}` holds {}-dimension embeddings; nothing was inserted",
                chunk.chunk_id,
                chunk.embedding.len(),
                state.store_id,
                state.dimension
            )));
        }
        if chunk.embedding.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "chunk `{}` has NaN or infinite values in its embedding; nothing was inserted",
                chunk.chunk_id
            )));
        }
    }
    Ok(())
}

/// Keeps the last of several chunks with one id, as inserting them one after another would.
fn last_of_each_id(chunks: Vec<StoredChunk>) -> Vec<StoredChunk> {
    let mut seen = HashSet::new();
    let mut kept: Vec<StoredChunk> = chunks
        .into_iter()
        .rev()
        .filter(|c| seen.insert(c.chunk_id.clone()))
        .collect();
    kept.reverse();
    kept
}

#[async_trait]
impl VectorIoProvider for SqliteVecProvider {
    async fn create_store(&self, spec: &StoreSpec) -> Result<()> {
        if spec.dimension == 0 {
            return Err(Error::invalid(format!(
                "vector store `{}` needs an embedding dimension above 0",
                spec.store_id
            )));
        }
        let mismatch = |existing: usize| {
            Error::invalid(format!(
                "vector store `{}` exists with dimension {existing}, not {}; delete it first or use its dimension",
                spec.store_id, spec.dimension
            ))
        };
        if let Ok(state) = self.inner.store(&spec.store_id) {
            return match state.dimension == spec.dimension {
                true => Ok(()),
                false => Err(mismatch(state.dimension)),
            };
        }
        let row = self
            .inner
            .db
            .create_store(&spec.store_id, spec.dimension, now_seconds())
            .await?;
        if row.dimension != spec.dimension {
            return Err(mismatch(row.dimension));
        }
        let mut stores = self.inner.stores.write().unwrap_or_else(|p| p.into_inner());
        stores.entry(spec.store_id.clone()).or_insert_with(|| {
            Arc::new(StoreState {
                store_id: row.store_id,
                key: row.key,
                dimension: row.dimension,
                writer: tokio::sync::Mutex::new(()),
                index: tokio::sync::OnceCell::new(),
                deleted: AtomicBool::new(false),
            })
        });
        Ok(())
    }

    async fn delete_store(&self, store_id: &str) -> Result<()> {
        // Spawned so that a caller going away cannot stop it between the database and the
        // graph; the same holds for the other writes below.
        tokio::spawn(self.inner.clone().delete_store(store_id.to_string()))
            .await
            .map_err(|e| join_error("deleting a store", e))?
    }

    async fn insert(&self, store_id: &str, chunks: Vec<StoredChunk>) -> Result<()> {
        let state = self.inner.store(store_id)?;
        check_embeddings(&state, &chunks)?;
        if chunks.is_empty() {
            return Ok(());
        }
        let chunks = last_of_each_id(chunks);
        tokio::spawn(self.inner.clone().insert(state, chunks))
            .await
            .map_err(|e| join_error("an insert", e))?
    }

    async fn search(&self, store_id: &str, request: &SearchRequest) -> Result<Vec<ScoredChunk>> {
        let state = self.inner.store(store_id)?;
        match request.mode {
            SearchMode::Vector => self.inner.vector_search(&state, request).await,
            SearchMode::Keyword => {
                let phrases = phrases(&request.text);
                if phrases.is_empty() || request.k == 0 {
                    return Ok(Vec::new());
                }
                let hits = self
                    .inner
                    .db
                    .keyword(
                        state.key,
                        &phrases,
                        now_seconds(),
                        request.k,
                        request.filter.as_ref(),
                    )
                    .await?;
                Ok(hits.into_iter().map(|(row, s)| scored(row, s)).collect())
            }
        }
    }

    async fn delete_chunks(&self, store_id: &str, selector: &ChunkSelector) -> Result<u64> {
        let state = self.inner.store(store_id)?;
        tokio::spawn(self.inner.clone().delete_chunks(state, selector.clone()))
            .await
            .map_err(|e| join_error("a deletion", e))?
    }

    async fn count(&self, store_id: &str) -> Result<u64> {
        let state = self.inner.store(store_id)?;
        self.inner.db.count(state.key, now_seconds()).await
    }
}
