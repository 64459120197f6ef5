//! One store's HNSW graph in memory, its file on disk, and keeping the two in step with the
//! database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use llama_stack_core::{Error, Result};

use crate::db::Database;
use crate::hnsw::{Hnsw, HnswParams};
use crate::index_file;

/// Rows read from the database per round while catching the graph up.
const CATCH_UP_BATCH: usize = 2000;

/// How the graph was brought up to date when the store was first used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OpenReport {
    /// Whether a saved graph was found and used.
    pub from_file: bool,
    /// Rows the saved graph lacked, indexed now.
    pub added: usize,
    /// Nodes of the saved graph whose rows are gone, made tombstones now.
    pub removed: usize,
}

/// One store's graph, shared by its searches (read lock) and its writers (write lock; the
/// provider also serialises writers per store so the graph applies changes in commit order).
pub(crate) struct StoreIndex {
    pub graph: RwLock<Hnsw>,
    path: PathBuf,
    store_key: i64,
    /// Bumped on every change; compared with `saved` to know whether a save is due.
    changes: AtomicU64,
    saved: AtomicU64,
    /// Serialises saves, and guards `discarded`.
    save_lock: Mutex<()>,
    /// Set when the store is deleted, so no later save brings its file back.
    discarded: AtomicBool,
    /// Read by the provider's tests.
    #[cfg_attr(not(test), allow(dead_code))]
    pub report: OpenReport,
}

/// The file holding store `key`'s graph.
pub(crate) fn index_path(index_dir: &Path, key: i64) -> PathBuf {
    index_dir.join(format!("store-{key}.hnsw"))
}

impl StoreIndex {
    /// Loads the saved graph (or starts an empty one) and reconciles it with the database:
    /// rows the file lacks are indexed, nodes whose rows are gone become tombstones. A crash
    /// between a database commit and the next save therefore loses nothing.
    pub async fn open(
        db: &Database,
        index_dir: &Path,
        key: i64,
        dimension: usize,
        params: HnswParams,
    ) -> Result<StoreIndex> {
        let started = Instant::now();
        let path = index_path(index_dir, key);
        let file = path.clone();
        let loaded = tokio::task::spawn_blocking(move || index_file::load(&file, key, dimension))
            .await
            .map_err(|e| Error::internal(format!("loading a vector index: {e}")))?;
        let (mut graph, from_file) = match loaded {
            Ok(Some(graph)) => (graph, true),
            Ok(None) => (Hnsw::new(dimension, params), false),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "Vector index unusable, rebuilding it from the database");
                (Hnsw::new(dimension, params), false)
            }
        };
        let mut report = OpenReport {
            from_file,
            ..OpenReport::default()
        };

        let rows: HashSet<i64> = db.row_ids(key).await?.into_iter().collect();
        let stale: Vec<i64> = graph.live_rowids().filter(|r| !rows.contains(r)).collect();
        for rowid in &stale {
            graph.remove(*rowid);
        }
        report.removed = stale.len();
        let mut missing: Vec<i64> = rows.into_iter().filter(|r| !graph.contains(*r)).collect();
        missing.sort_unstable();
        report.added = missing.len();

        for batch in missing.chunks(CATCH_UP_BATCH) {
            let embeddings = db.embeddings(batch).await?;
            graph = tokio::task::spawn_blocking(move || {
                for (rowid, embedding, expires_at) in embeddings {
                    if embedding.len() == graph.dimension {
                        graph.insert(rowid, &embedding, expires_at);
                    }
                }
                graph
            })
            .await
            .map_err(|e| Error::internal(format!("indexing chunks: {e}")))?;
        }
        if report.added > 0 || report.removed > 0 || !report.from_file {
            tracing::info!(
                store_key = key,
                nodes = graph.live_count(),
                from_file = report.from_file,
                added = report.added,
                removed = report.removed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Vector index caught up with the database"
            );
        }
        let index = StoreIndex {
            graph: RwLock::new(graph),
            path,
            store_key: key,
            changes: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            save_lock: Mutex::new(()),
            discarded: AtomicBool::new(false),
            report,
        };
        if report.added > 0 || report.removed > 0 {
            index.mark_changed();
        }
        Ok(index)
    }

    pub fn mark_changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    pub fn is_dirty(&self) -> bool {
        self.changes.load(Ordering::SeqCst) != self.saved.load(Ordering::SeqCst)
    }

    /// Writes the graph if it changed since the last save. Blocking: call it off the async
    /// runtime. Searches continue meanwhile (it holds a read lock).
    pub fn save_if_dirty(&self) -> std::io::Result<bool> {
        let _guard = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.discarded.load(Ordering::SeqCst) || !self.is_dirty() {
            return Ok(false);
        }
        let graph = self.graph.read().unwrap_or_else(|p| p.into_inner());
        // Read under the graph lock: every change counted so far is in what gets written.
        let version = self.changes.load(Ordering::SeqCst);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        index_file::save(&graph, self.store_key, &self.path)?;
        self.saved.store(version, Ordering::SeqCst);
        Ok(true)
    }

    /// Forgets the graph's file for good (the store was deleted).
    pub fn discard(&self) {
        let _guard = self.save_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.discarded.store(true, Ordering::SeqCst);
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "Could not remove a deleted store's vector index")
            }
        }
    }

    /// Whether tombstones make up enough of the graph to rebuild it.
    pub fn needs_compaction(&self, ratio: f64) -> bool {
        let graph = self.graph.read().unwrap_or_else(|p| p.into_inner());
        let dead = graph.tombstone_count();
        dead >= 64 && dead as f64 >= ratio * graph.node_count() as f64
    }

    /// Rebuilds the graph without tombstones. The caller holds the store's writer lock, so
    /// nothing changes meanwhile; searches keep using the old graph until the swap.
    pub fn compact(&self) {
        let started = Instant::now();
        let fresh = {
            let graph = self.graph.read().unwrap_or_else(|p| p.into_inner());
            graph.compacted()
        };
        let (before, after) = {
            let mut graph = self.graph.write().unwrap_or_else(|p| p.into_inner());
            let before = graph.node_count();
            *graph = fresh;
            (before, graph.node_count())
        };
        self.mark_changed();
        tracing::info!(
            store_key = self.store_key,
            before,
            after,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Vector index compacted"
        );
    }
}
