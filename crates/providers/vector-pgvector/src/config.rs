//! `remote::pgvector` configuration: the `config:` block of the provider in run.yaml.

use std::fmt;

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use llama_stack_storage::PostgresSettings;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Chunks and embeddings in PostgreSQL with the pgvector extension. Field names follow the
/// upstream provider (`host`, `port`, `db`, `user`, `password`, `kvstore`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgVectorConfig {
    /// Host name or address of the PostgreSQL server.
    #[serde(default = "default_host", deserialize_with = "lenient_string")]
    pub host: String,
    /// TCP port of the PostgreSQL server.
    #[serde(default = "default_port", deserialize_with = "lenient_integer")]
    pub port: i64,
    /// The database holding the stores; it must exist. The `vector` extension is enabled in it
    /// on first start (which needs a superuser unless it is already enabled).
    #[serde(default = "default_db", deserialize_with = "lenient_string")]
    pub db: String,
    /// The user to log in as; it needs the right to create tables in `db`.
    #[serde(default = "default_user", deserialize_with = "lenient_string")]
    pub user: String,
    /// The user's password; leave empty for servers that trust local connections.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub password: Option<String>,
    /// Accepted for compatibility with upstream run.yaml files and not used: the stack keeps
    /// vector store metadata in its own registry (`metadata_store`), and the chunks live in
    /// PostgreSQL.
    #[serde(default)]
    pub kvstore: Option<Value>,
    /// The most connections the provider opens to the server.
    #[serde(default = "default_pool_size", deserialize_with = "lenient_integer")]
    pub pool_size: i64,
    /// The HNSW index built for each store's embeddings.
    #[serde(default)]
    pub hnsw: HnswConfig,
}

/// pgvector HNSW parameters. Larger values find the true nearest neighbours more often, at the
/// cost of slower inserts (`m`, `ef_construction`) or slower searches (`ef_search`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswConfig {
    /// Links per node in the graph, 2 to 100. Applies to stores created afterwards.
    #[serde(default = "default_m")]
    pub m: i64,
    /// Candidate list size while building the graph, at least `2 * m`, at most 1000. Applies
    /// to stores created afterwards.
    #[serde(default = "default_ef_construction")]
    pub ef_construction: i64,
    /// Candidate list size while searching (`hnsw.ef_search`), 1 to 1000.
    #[serde(default = "default_ef_search")]
    pub ef_search: i64,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: default_m(),
            ef_construction: default_ef_construction(),
            ef_search: default_ef_search(),
        }
    }
}

fn default_host() -> String {
    "localhost".into()
}
fn default_port() -> i64 {
    5432
}
fn default_db() -> String {
    "postgres".into()
}
fn default_user() -> String {
    "postgres".into()
}
fn default_pool_size() -> i64 {
    10
}
fn default_m() -> i64 {
    16
}
fn default_ef_construction() -> i64 {
    64
}
fn default_ef_search() -> i64 {
    100
}

/// The sample shown by `llama-stack providers` and checked by a test.
pub const SAMPLE_CONFIG: &str = r#"host: ${env.PGVECTOR_HOST:=localhost}
port: ${env.PGVECTOR_PORT:=5432}
db: ${env.PGVECTOR_DB:=postgres}
user: ${env.PGVECTOR_USER:=postgres}
password: ${env.PGVECTOR_PASSWORD:=}
pool_size: 10
hnsw:
  m: 16
  ef_construction: 64
  ef_search: 100
"#;

impl fmt::Debug for PgVectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("kvstore", &self.kvstore.is_some())
            .field("pool_size", &self.pool_size)
            .field("hnsw", &self.hnsw)
            .finish()
    }
}

impl PgVectorConfig {
    /// Connection settings, once [`PgVectorConfig::issues`] found nothing.
    pub fn postgres_settings(&self) -> PostgresSettings {
        PostgresSettings::from_fields(
            &self.host,
            self.port,
            &self.db,
            &self.user,
            self.password.as_deref(),
            self.pool_size,
        )
    }
}

impl CheckedConfig for PgVectorConfig {
    /// Every value problem, each with its path inside the `config:` block.
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = PostgresSettings::config_issues(
            &self.host,
            self.port,
            &self.db,
            &self.user,
            self.pool_size,
            "the stores",
        );
        let mut need = |ok: bool, path: &str, message: String| {
            if !ok {
                issues.push(ConfigIssue::new(path, message));
            }
        };
        let HnswConfig {
            m,
            ef_construction,
            ef_search,
        } = self.hnsw;
        need(
            (2..=100).contains(&m),
            "hnsw.m",
            format!("must be from 2 to 100, got {m}"),
        );
        need(
            (4..=1000).contains(&ef_construction) && ef_construction >= 2 * m,
            "hnsw.ef_construction",
            format!(
                "must be at least 2 * m ({}) and at most 1000, got {ef_construction}",
                2 * m
            ),
        );
        need(
            (1..=1000).contains(&ef_search),
            "hnsw.ef_search",
            format!("must be from 1 to 1000, got {ef_search}"),
        );
        if let Some(kvstore) = &self.kvstore {
            let kind = kvstore.get("type").and_then(Value::as_str);
            need(
                kvstore.is_null()
                    || matches!(kind, Some("sqlite" | "postgres" | "redis" | "mongodb")),
                "kvstore",
                "must be a store such as {type: sqlite, db_path: ...} (it is accepted for compatibility and not used)".into(),
            );
        }
        issues
    }
}

// Environment substitution turns `"5432"` into 5432 and `"123"` into a number, so strings
// accept numbers and numbers accept numeric strings.

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string, got {other}"
        ))),
    }
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        other => lenient_string(other)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn lenient_integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let value = Value::deserialize(d)?;
    let parsed = match &value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;
    use serde_json::json;

    #[test]
    fn defaults_follow_upstream() {
        let config: PgVectorConfig = parse_config(&Value::Null).unwrap();
        assert_eq!(
            (
                config.host.as_str(),
                config.port,
                config.db.as_str(),
                config.user.as_str()
            ),
            ("localhost", 5432, "postgres", "postgres")
        );
        assert_eq!(config.password, None);
        assert_eq!(config.pool_size, 10);
        assert!(config.issues().is_empty());
    }

    #[test]
    fn upstream_style_config_with_kvstore_and_string_port_is_accepted() {
        let config: PgVectorConfig = parse_config(&json!({
            "host": "db.internal", "port": "6543", "db": "rag", "user": 42,
            "password": "pw", "kvstore": {"type": "sqlite", "db_path": "/tmp/x.db"}
        }))
        .unwrap();
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        let settings = config.postgres_settings();
        assert_eq!(settings.address(), "db.internal:6543");
        assert_eq!(settings.user, "42");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let config: PgVectorConfig = parse_config(&json!({
            "host": " ", "port": 70000, "db": "", "user": "", "pool_size": 0,
            "hnsw": {"m": 1, "ef_construction": 1, "ef_search": 0},
            "kvstore": {"db_path": "x"}
        }))
        .unwrap();
        let paths: Vec<_> = config.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "host",
                "port",
                "db",
                "user",
                "pool_size",
                "hnsw.m",
                "hnsw.ef_construction",
                "hnsw.ef_search",
                "kvstore"
            ]
        );
    }

    #[test]
    fn unknown_and_mistyped_fields_are_refused() {
        let issues = parse_config::<PgVectorConfig>(&json!({
            "hostname": "x", "port": "abc", "hnsw": {"M": 3}
        }))
        .unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"hostname"), "{issues:?}");
        assert!(paths.contains(&"port"), "{issues:?}");
        assert!(paths.contains(&"hnsw.M"), "{issues:?}");
    }

    #[test]
    fn password_stays_out_of_debug() {
        let config: PgVectorConfig = parse_config(&json!({"password": "hunter2"})).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{:?}", config.postgres_settings()).contains("hunter2"));
    }
}
