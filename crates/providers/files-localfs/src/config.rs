//! `inline::localfs` configuration: the `config:` block of the provider in run.yaml.

use std::path::{Path, PathBuf};

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use serde::Deserialize;

/// Uploaded files kept as plain files in one folder, their records in a SQL store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalfsConfig {
    /// Folder holding the uploaded bytes, one file per upload named after its id (the name a
    /// client gave is metadata only). Created when missing. Defaults to `files/` beside the
    /// distribution's registry database.
    #[serde(default)]
    pub storage_dir: Option<String>,
    /// Where file records are kept. When absent they go to the distribution's own store
    /// (`metadata_store` at the top of run.yaml). A `sqlite` store opens its own database; other
    /// types are accepted so upstream files load, and use the distribution's store.
    #[serde(default)]
    pub metadata_store: Option<MetadataStore>,
    /// Seconds after upload when a file expires if the upload set no `expires_after`. Absent
    /// or 0: such files never expire. Expired files are not returned and are removed when
    /// next seen.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// `{type: sqlite, db_path}`, or another upstream store type.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataStore {
    Sqlite(SqliteStore),
    /// Accepted for upstream compatibility; records go to the distribution's store.
    Postgres(serde_json::Map<String, serde_json::Value>),
}

/// A SQLite database of its own for file records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteStore {
    /// The database file; created when missing. A leading `~` is the home folder.
    pub db_path: String,
    /// Upstream's key prefix; records here are kept under their own kind already.
    #[serde(default)]
    pub namespace: Option<String>,
}

pub const SAMPLE_CONFIG: &str = r#"storage_dir: ${env.FILES_STORAGE_DIR:=}
ttl_secs: 0
"#;

impl LocalfsConfig {
    /// The folder for the bytes: `storage_dir`, else `<store_dir>/files`.
    pub fn storage_dir(&self, store_dir: Option<&Path>) -> Option<PathBuf> {
        match self.storage_dir.as_deref().map(str::trim) {
            Some(dir) if !dir.is_empty() => Some(expand_home(dir)),
            _ => store_dir.map(|dir| dir.join("files")),
        }
    }

    /// `ttl_secs` as an expiry, `None` for never.
    pub fn default_expiry_secs(&self) -> Option<i64> {
        self.ttl_secs
            .filter(|&secs| secs > 0)
            .map(|secs| secs.min(i64::MAX as u64) as i64)
    }
}

impl CheckedConfig for LocalfsConfig {
    /// Checks the values serde cannot.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(MetadataStore::Sqlite(store)) = &self.metadata_store
            && store.db_path.trim().is_empty()
        {
            issues.push(ConfigIssue::new(
                "metadata_store.db_path",
                "db_path is empty; give a database file, or remove metadata_store to use the \
                 distribution's store",
            ));
        }
        issues
    }
}

/// A leading `~` (alone or before `/`) is `$HOME`, as in upstream configs.
pub(crate) fn expand_home(path: &str) -> PathBuf {
    if let Some(rest) = path.strip_prefix('~')
        && (rest.is_empty() || rest.starts_with('/'))
        && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        let mut expanded = PathBuf::from(home);
        expanded.push(rest.trim_start_matches('/'));
        return expanded;
    }
    PathBuf::from(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;

    #[test]
    fn upstream_configs_parse() {
        let yaml = r#"
storage_dir: /data/files
metadata_store:
  type: sqlite
  db_path: /data/files_metadata.db
ttl_secs: 31536000
"#;
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        let config: LocalfsConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty());
        assert_eq!(config.storage_dir(None), Some(PathBuf::from("/data/files")));
        assert_eq!(config.default_expiry_secs(), Some(31_536_000));
        let value = serde_json::json!({"metadata_store": {"type": "postgres", "host": "h"}});
        assert!(parse_config::<LocalfsConfig>(&value).is_ok());
    }

    #[test]
    fn defaults_and_problems() {
        let config: LocalfsConfig = parse_config(&serde_json::Value::Null).unwrap();
        assert_eq!(
            config.storage_dir(Some(Path::new("/store"))),
            Some(PathBuf::from("/store/files"))
        );
        assert_eq!(config.default_expiry_secs(), None);
        let issues =
            parse_config::<LocalfsConfig>(&serde_json::json!({"storage": "/x"})).unwrap_err();
        assert_eq!(issues[0].path, "storage");
        let config: LocalfsConfig = parse_config(&serde_json::json!({
            "metadata_store": {"type": "sqlite", "db_path": " "}
        }))
        .unwrap();
        assert_eq!(config.issues()[0].path, "metadata_store.db_path");
    }

    #[test]
    fn the_sample_config_parses() {
        let value: serde_json::Value =
            serde_norway::from_str(&SAMPLE_CONFIG.replace("${env.FILES_STORAGE_DIR:=}", ""))
                .unwrap();
        let config: LocalfsConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty());
    }
}
