//! `remote::postgres` (files) configuration: the `config:` block of the provider in run.yaml.

use std::fmt;

use llama_stack_core::{CheckedConfig, ConfigIssue};
use llama_stack_storage::PostgresSettings;
use serde::Deserialize;

use crate::shared::{lenient_integer, lenient_opt_string, lenient_opt_u64, lenient_string};

/// Uploaded files with their bytes and records in one PostgreSQL database. The connection
/// fields are those of `remote::pgvector` and the PostgreSQL `metadata_store`, so one set of
/// `POSTGRES_*` variables serves all three.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresFilesConfig {
    /// Host name or address of the PostgreSQL server.
    #[serde(default = "default_host", deserialize_with = "lenient_string")]
    pub host: String,
    #[serde(default = "default_port", deserialize_with = "lenient_integer")]
    pub port: i64,
    /// The database; it must exist. The provider creates its tables (`llama_stack_files`,
    /// `llama_stack_file_parts`) on first start.
    #[serde(default = "default_db", deserialize_with = "lenient_string")]
    pub db: String,
    /// The user to log in as; it needs the right to create tables in `db`.
    #[serde(default = "default_user", deserialize_with = "lenient_string")]
    pub user: String,
    /// Leave empty for servers that trust local connections.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub password: Option<String>,
    /// The most connections the provider opens to the server.
    #[serde(default = "default_pool_size", deserialize_with = "lenient_integer")]
    pub pool_size: i64,
    /// Bytes per stored part (64 KiB to 64 MiB): a file is kept as parts of this size, read back
    /// one at a time.
    #[serde(default = "default_part_bytes", deserialize_with = "lenient_integer")]
    pub part_bytes: i64,
    /// Seconds after upload when a file expires if the upload set no `expires_after`. Absent
    /// or 0: such files never expire.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub ttl_secs: Option<u64>,
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
fn default_part_bytes() -> i64 {
    1 << 20
}

const MIN_PART_BYTES: i64 = 64 << 10;
const MAX_PART_BYTES: i64 = 64 << 20;

/// The sample shown by `llama-stack providers` and checked by a test.
pub const SAMPLE_CONFIG: &str = r#"host: ${env.POSTGRES_HOST:=localhost}
port: ${env.POSTGRES_PORT:=5432}
db: ${env.POSTGRES_DB:=llamastack}
user: ${env.POSTGRES_USER:=llamastack}
password: ${env.POSTGRES_PASSWORD:=}
ttl_secs: 0
"#;

impl Default for PostgresFilesConfig {
    fn default() -> Self {
        PostgresFilesConfig {
            host: default_host(),
            port: default_port(),
            db: default_db(),
            user: default_user(),
            password: None,
            pool_size: default_pool_size(),
            part_bytes: default_part_bytes(),
            ttl_secs: None,
        }
    }
}

impl fmt::Debug for PostgresFilesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresFilesConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("pool_size", &self.pool_size)
            .field("part_bytes", &self.part_bytes)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

impl PostgresFilesConfig {
    /// Connection settings, once [`PostgresFilesConfig::issues`] found nothing.
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

impl CheckedConfig for PostgresFilesConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = PostgresSettings::config_issues(
            &self.host,
            self.port,
            &self.db,
            &self.user,
            self.pool_size,
            "the files",
        );
        let mut need = |ok: bool, path: &str, message: String| {
            if !ok {
                issues.push(ConfigIssue::new(path, message));
            }
        };
        need(
            (MIN_PART_BYTES..=MAX_PART_BYTES).contains(&self.part_bytes),
            "part_bytes",
            format!(
                "must be from {MIN_PART_BYTES} (64 KiB) to {MAX_PART_BYTES} (64 MiB), got {}",
                self.part_bytes
            ),
        );
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;
    use serde_json::json;

    #[test]
    fn defaults_and_substituted_values() {
        let config: PostgresFilesConfig = parse_config(&serde_json::Value::Null).unwrap();
        assert!(config.issues().is_empty());
        assert_eq!((config.port, config.part_bytes), (5432, 1 << 20));
        // What `${env.X}` substitution makes of numeric values and an empty default.
        let config: PostgresFilesConfig = parse_config(&json!({
            "host": "db", "port": "6543", "db": 1, "user": "u", "password": 123,
            "ttl_secs": "3600"
        }))
        .unwrap();
        let settings = config.postgres_settings();
        assert_eq!((settings.port, settings.db.as_str()), (6543, "1"));
        assert_eq!(settings.password.as_deref(), Some("123"));
        assert_eq!(config.ttl_secs, Some(3600));
        let config: PostgresFilesConfig = parse_config(&json!({"password": null})).unwrap();
        assert_eq!(config.password, None);
        assert!(
            !format!(
                "{:?}",
                parse_config::<PostgresFilesConfig>(&json!({"password": "pw"})).unwrap()
            )
            .contains("pw")
        );
    }

    #[test]
    fn every_problem_has_its_path() {
        let config: PostgresFilesConfig = parse_config(&json!({
            "host": " ", "port": 0, "db": "", "user": "", "pool_size": 0, "part_bytes": 10
        }))
        .unwrap();
        let paths: Vec<_> = config.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            ["host", "port", "db", "user", "pool_size", "part_bytes"]
        );
        let issues =
            parse_config::<PostgresFilesConfig>(&json!({"storage_dir": "/x"})).unwrap_err();
        assert_eq!(issues[0].path, "storage_dir");
    }

    #[test]
    fn the_sample_config_parses() {
        let text = SAMPLE_CONFIG
            .replace("${env.POSTGRES_HOST:=localhost}", "localhost")
            .replace("${env.POSTGRES_PORT:=5432}", "5432")
            .replace("${env.POSTGRES_DB:=llamastack}", "llamastack")
            .replace("${env.POSTGRES_USER:=llamastack}", "llamastack")
            .replace("${env.POSTGRES_PASSWORD:=}", "");
        let value: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let config: PostgresFilesConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty());
    }
}
