//! `inline::sqlite-vec` configuration: the `config:` block of the provider in run.yaml.

use std::path::{Path, PathBuf};

use llama_stack_core::CheckedConfig;
use llama_stack_core::{ConfigIssue, Error, Result};
use serde::Deserialize;

/// Embedded vector stores: chunks in one SQLite file, an HNSW index per store beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteVecConfig {
    /// The SQLite database holding every store's chunks. Its HNSW index files are kept in the
    /// folder `<db_path>.hnsw/` next to it. When absent (or empty), `kvstore.db_path` is used
    /// as the database file itself, and failing that `<store_dir>/sqlite_vec.db`.
    #[serde(default)]
    pub db_path: Option<String>,
    /// Accepted so that upstream `inline::faiss` and `inline::sqlite-vec` run.yaml files load
    /// unchanged: `{type: sqlite, db_path, namespace}`. Only `type: sqlite` is supported; its
    /// `db_path` names the database file when `db_path` above is absent. `namespace` is
    /// ignored (this provider's tables are prefixed `vec_`).
    #[serde(default)]
    pub kvstore: Option<KvStoreConfig>,
    /// Accepted so that upstream v0.3+ files (`persistence: {namespace, backend}`) load; the
    /// named backend is not looked up, the database goes where `db_path` says.
    #[serde(default)]
    pub persistence: Option<PersistenceConfig>,
    /// Links per node in the HNSW graph (layer 0 keeps twice as many). More links raise
    /// recall and memory use; 16 suits 384–1024-dimension embeddings.
    #[serde(default = "default_hnsw_m")]
    pub hnsw_m: usize,
    /// Candidates considered when linking a new chunk. Higher builds a better graph more
    /// slowly.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: usize,
    /// Candidates considered per vector search (at least `k` are). Higher raises recall and
    /// query time.
    #[serde(default = "default_ef_search")]
    pub ef_search: usize,
    /// With a filter, a vector search first takes `k × filter_oversampling` nearest chunks
    /// and filters them; when fewer than `k` pass, it falls back to an exact search over
    /// every matching chunk.
    #[serde(default = "default_filter_oversampling")]
    pub filter_oversampling: usize,
    /// A store's graph is rebuilt in the background once deleted or replaced chunks make up
    /// this fraction of its nodes (and at least 64 of them).
    #[serde(default = "default_compact_deleted_ratio")]
    pub compact_deleted_ratio: f64,
    /// Changed indexes are written to disk at most this often (and when the provider shuts
    /// down). The database is durable on every insert regardless; a crash only costs
    /// re-indexing the chunks written since the last save.
    #[serde(default = "default_index_save_interval_seconds")]
    pub index_save_interval_seconds: u64,
}

/// An upstream `kvstore:` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvStoreConfig {
    /// Only `sqlite` is supported.
    #[serde(rename = "type", default = "default_kvstore_type")]
    pub kind: String,
    /// The SQLite file.
    #[serde(default)]
    pub db_path: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// An upstream v0.3+ `persistence:` reference to a named storage backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersistenceConfig {
    /// Ignored.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Ignored.
    #[serde(default)]
    pub backend: Option<String>,
}

fn default_hnsw_m() -> usize {
    16
}
fn default_ef_construction() -> usize {
    128
}
fn default_ef_search() -> usize {
    64
}
fn default_filter_oversampling() -> usize {
    8
}
fn default_compact_deleted_ratio() -> f64 {
    0.25
}
fn default_index_save_interval_seconds() -> u64 {
    30
}
fn default_kvstore_type() -> String {
    "sqlite".into()
}

impl Default for SqliteVecConfig {
    fn default() -> Self {
        SqliteVecConfig {
            db_path: None,
            kvstore: None,
            persistence: None,
            hnsw_m: default_hnsw_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
            filter_oversampling: default_filter_oversampling(),
            compact_deleted_ratio: default_compact_deleted_ratio(),
            index_save_interval_seconds: default_index_save_interval_seconds(),
        }
    }
}

pub const SAMPLE_CONFIG: &str = r#"db_path: ${env.SQLITE_STORE_DIR:=~/.llama/distributions/local}/sqlite_vec.db
hnsw_m: 16
ef_construction: 128
ef_search: 64
"#;

fn non_empty(path: &Option<String>) -> Option<&str> {
    path.as_deref().filter(|p| !p.trim().is_empty())
}

impl SqliteVecConfig {
    /// The database file: `db_path`, else `kvstore.db_path`, else `<store_dir>/sqlite_vec.db`.
    pub fn database_path(&self, store_dir: Option<&Path>) -> Result<PathBuf> {
        let kv_path = self.kvstore.as_ref().and_then(|kv| non_empty(&kv.db_path));
        match (non_empty(&self.db_path).or(kv_path), store_dir) {
            (Some(path), _) => Ok(PathBuf::from(path)),
            (None, Some(dir)) => Ok(dir.join("sqlite_vec.db")),
            (None, None) => Err(Error::invalid(
                "inline::sqlite-vec has no place for its database: set `db_path` in its config",
            )),
        }
    }
}

impl CheckedConfig for SqliteVecConfig {
    /// Every out-of-range value, with its path in the block.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut range = |path: &str, value: usize, low: usize, high: usize| {
            if !(low..=high).contains(&value) {
                issues.push(ConfigIssue::new(
                    path,
                    format!("{value} is out of range; use {low} to {high}"),
                ));
            }
        };
        range("hnsw_m", self.hnsw_m, 4, 128);
        range("ef_construction", self.ef_construction, 8, 4096);
        range("ef_search", self.ef_search, 1, 4096);
        range("filter_oversampling", self.filter_oversampling, 1, 100);
        if !(self.compact_deleted_ratio > 0.0 && self.compact_deleted_ratio <= 1.0) {
            issues.push(ConfigIssue::new(
                "compact_deleted_ratio",
                format!(
                    "{} is out of range; use a fraction above 0 and at most 1",
                    self.compact_deleted_ratio
                ),
            ));
        }
        if self.index_save_interval_seconds == 0 {
            issues.push(ConfigIssue::new(
                "index_save_interval_seconds",
                "must be at least 1",
            ));
        }
        if let Some(kv) = &self.kvstore
            && kv.kind != "sqlite"
        {
            issues.push(ConfigIssue::new(
                "kvstore.type",
                format!(
                    "kvstore type `{}` is not supported here; use `sqlite` or set `db_path`",
                    kv.kind
                ),
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;

    #[test]
    fn defaults_sample_and_ranges() {
        let config: SqliteVecConfig = parse_config(&serde_json::Value::Null).unwrap();
        assert_eq!(config.hnsw_m, 16);
        assert!(config.issues().is_empty());

        let sample: serde_json::Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        let parsed: SqliteVecConfig = parse_config(&sample).unwrap();
        assert!(parsed.issues().is_empty());

        let bad: SqliteVecConfig = parse_config(&serde_json::json!({
            "hnsw_m": 1, "ef_search": 0, "compact_deleted_ratio": 1.5,
            "kvstore": {"type": "redis"}, "index_save_interval_seconds": 0
        }))
        .unwrap();
        let paths: Vec<_> = bad.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "hnsw_m",
                "ef_search",
                "compact_deleted_ratio",
                "index_save_interval_seconds",
                "kvstore.type"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_paths() {
        let issues = parse_config::<SqliteVecConfig>(&serde_json::json!({
            "dbpath": "x", "kvstore": {"type": "sqlite", "host": "h"}
        }))
        .unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"dbpath"), "{issues:?}");
        assert!(paths.contains(&"kvstore.host"), "{issues:?}");
    }

    #[test]
    fn upstream_blocks_are_accepted_and_place_the_database() {
        let faiss: SqliteVecConfig = parse_config(&serde_json::json!({
            "kvstore": {"type": "sqlite", "db_path": "/d/faiss_store.db", "namespace": null}
        }))
        .unwrap();
        assert_eq!(
            faiss.database_path(Some(Path::new("/s"))).unwrap(),
            Path::new("/d/faiss_store.db")
        );
        let v3: SqliteVecConfig = parse_config(&serde_json::json!({
            "persistence": {"namespace": "vector_io::faiss", "backend": "kv_default"}
        }))
        .unwrap();
        assert_eq!(
            v3.database_path(Some(Path::new("/s"))).unwrap(),
            Path::new("/s/sqlite_vec.db")
        );
        let explicit: SqliteVecConfig = parse_config(&serde_json::json!({
            "db_path": "/x.db", "kvstore": {"db_path": "/y.db"}
        }))
        .unwrap();
        assert_eq!(explicit.database_path(None).unwrap(), Path::new("/x.db"));
        assert!(SqliteVecConfig::default().database_path(None).is_err());
    }
}
