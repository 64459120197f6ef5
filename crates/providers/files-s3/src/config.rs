//! `remote::s3` configuration: the `config:` block of the provider in run.yaml, with upstream's
//! fields.

use std::fmt;

use llama_stack_core::{CheckedConfig, ConfigIssue};
use llama_stack_provider_files_postgres::shared::{
    lenient_bool, lenient_opt_string, lenient_opt_u64, lenient_string,
};
use serde::Deserialize;

/// Uploaded files as objects in an S3 bucket (AWS, MinIO, Ceph, moto, ...), named by their ids;
/// their records in the distribution's metadata store.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3FilesConfig {
    /// The bucket holding the bytes.
    #[serde(deserialize_with = "lenient_string")]
    pub bucket_name: String,
    /// The bucket's region; `us-east-1` when absent.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub region: Option<String>,
    /// With `aws_secret_access_key`; both absent: the usual AWS sources (`AWS_*` variables, web
    /// identity, the instance's role).
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub aws_secret_access_key: Option<String>,
    /// An S3-compatible server's URL (`http://minio:9000`); absent: AWS. Buckets are addressed
    /// by path there (`<endpoint_url>/<bucket>/<key>`), as MinIO and Ceph expect.
    #[serde(default, deserialize_with = "lenient_opt_string")]
    pub endpoint_url: Option<String>,
    /// Create the bucket at start-up when it does not exist; otherwise a missing bucket stops
    /// the start.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub auto_create_bucket: bool,
    /// Where the file records go. Absent, upstream's `{backend, table_name}` or
    /// `{type: postgres, ...}`: the distribution's metadata store, which replicas share.
    /// `{type: sqlite, db_path}`: a SQLite database of its own, which only one server can use.
    #[serde(default)]
    pub metadata_store: Option<serde_json::Value>,
    /// Seconds after upload when a file expires if the upload set no `expires_after`. Absent
    /// or 0: such files never expire.
    #[serde(default, deserialize_with = "lenient_opt_u64")]
    pub ttl_secs: Option<u64>,
}

pub const DEFAULT_REGION: &str = "us-east-1";

/// The sample shown by `llama-stack providers` and checked by a test.
pub const SAMPLE_CONFIG: &str = r#"bucket_name: ${env.S3_BUCKET_NAME:=llama-stack-files}
region: ${env.AWS_REGION:=us-east-1}
aws_access_key_id: ${env.AWS_ACCESS_KEY_ID:=}
aws_secret_access_key: ${env.AWS_SECRET_ACCESS_KEY:=}
endpoint_url: ${env.S3_ENDPOINT_URL:=}
auto_create_bucket: ${env.S3_AUTO_CREATE_BUCKET:=false}
"#;

impl fmt::Debug for S3FilesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "********");
        f.debug_struct("S3FilesConfig")
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .field("aws_access_key_id", &hidden(&self.aws_access_key_id))
            .field(
                "aws_secret_access_key",
                &hidden(&self.aws_secret_access_key),
            )
            .field("endpoint_url", &self.endpoint_url)
            .field("auto_create_bucket", &self.auto_create_bucket)
            .field("metadata_store", &self.metadata_store)
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// Where the file records are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStore {
    /// The distribution's metadata store.
    Distribution,
    /// A SQLite file of the provider's own.
    Sqlite(String),
}

impl S3FilesConfig {
    pub fn region(&self) -> &str {
        self.region.as_deref().unwrap_or(DEFAULT_REGION)
    }

    /// `endpoint_url` without a trailing `/`.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint_url
            .as_deref()
            .map(|e| e.trim_end_matches('/'))
    }

    pub fn record_store(&self) -> RecordStore {
        let store = self.metadata_store.as_ref();
        match store.and_then(|s| s.get("type")).and_then(|t| t.as_str()) {
            Some("sqlite") => RecordStore::Sqlite(
                store
                    .and_then(|s| s.get("db_path"))
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => RecordStore::Distribution,
        }
    }
}

/// S3's bucket naming rules, so a bad name is reported with its path rather than as an
/// unexplained error from the server.
fn bucket_name_problem(name: &str) -> Option<String> {
    if !(3..=63).contains(&name.len()) {
        return Some(format!(
            "must be 3 to 63 characters, got {} ('{name}')",
            name.len()
        ));
    }
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.';
    if !name.bytes().all(allowed) {
        return Some(format!(
            "'{name}' may hold only lowercase letters, digits, '-' and '.'"
        ));
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[name.len() - 1]) {
        return Some(format!(
            "'{name}' must begin and end with a letter or digit"
        ));
    }
    None
}

impl CheckedConfig for S3FilesConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Some(problem) = bucket_name_problem(&self.bucket_name) {
            issues.push(ConfigIssue::new("bucket_name", problem));
        }
        if self.region().trim().is_empty() {
            issues.push(ConfigIssue::new("region", "must name the bucket's region"));
        }
        match (&self.aws_access_key_id, &self.aws_secret_access_key) {
            (Some(_), None) => issues.push(ConfigIssue::new(
                "aws_secret_access_key",
                "is needed with aws_access_key_id; give both, or neither to use the usual AWS \
                 credential sources",
            )),
            (None, Some(_)) => issues.push(ConfigIssue::new(
                "aws_access_key_id",
                "is needed with aws_secret_access_key; give both, or neither",
            )),
            _ => {}
        }
        if let Some(endpoint) = self.endpoint() {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                issues.push(ConfigIssue::new(
                    "endpoint_url",
                    format!("must be an http(s) URL such as http://minio:9000, got '{endpoint}'"),
                ));
            }
        }
        if let Some(store) = &self.metadata_store {
            if !store.is_object() && !store.is_null() {
                issues.push(ConfigIssue::new(
                    "metadata_store",
                    "must be a store such as {backend: sql_default, table_name: ...} or \
                     {type: sqlite, db_path: ...}",
                ));
            } else if self.record_store() == RecordStore::Sqlite(String::new()) {
                issues.push(ConfigIssue::new(
                    "metadata_store.db_path",
                    "db_path is empty; give a database file, or remove metadata_store to use \
                     the distribution's store",
                ));
            }
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::parse_config;
    use serde_json::json;

    #[test]
    fn upstream_configs_parse() {
        let yaml = r#"
bucket_name: my-llama-files
region: eu-west-1
aws_access_key_id: AKIAEXAMPLE
aws_secret_access_key: wJalrXUtnFEMI
endpoint_url: http://minio:9000/
auto_create_bucket: "true"
metadata_store:
  table_name: s3_files_metadata
  backend: sql_default
"#;
        let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        let config: S3FilesConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty(), "{:?}", config.issues());
        assert_eq!(config.region(), "eu-west-1");
        assert_eq!(config.endpoint(), Some("http://minio:9000"));
        assert!(config.auto_create_bucket);
        assert_eq!(config.record_store(), RecordStore::Distribution);
        assert!(!format!("{config:?}").contains("wJalrXUtnFEMI"));
        // Older upstream files give a SQLite store of its own.
        let config: S3FilesConfig = parse_config(&json!({
            "bucket_name": "b12",
            "metadata_store": {"type": "sqlite", "db_path": "/data/s3.db"}
        }))
        .unwrap();
        assert_eq!(
            config.record_store(),
            RecordStore::Sqlite("/data/s3.db".into())
        );
    }

    #[test]
    fn unset_variables_are_absent() {
        // What `${env.X:=}` substitution gives for unset variables.
        let config: S3FilesConfig = parse_config(&json!({
            "bucket_name": "files", "region": null, "aws_access_key_id": null,
            "aws_secret_access_key": null, "endpoint_url": null, "auto_create_bucket": false
        }))
        .unwrap();
        assert!(config.issues().is_empty());
        assert_eq!(config.region(), "us-east-1");
        assert_eq!(config.endpoint(), None);
    }

    #[test]
    fn every_problem_has_its_path() {
        let config: S3FilesConfig = parse_config(&json!({
            "bucket_name": "Bad_Bucket", "aws_access_key_id": "k",
            "endpoint_url": "minio:9000", "metadata_store": {"type": "sqlite", "db_path": ""}
        }))
        .unwrap();
        let paths: Vec<_> = config.issues().into_iter().map(|i| i.path).collect();
        assert_eq!(
            paths,
            [
                "bucket_name",
                "aws_secret_access_key",
                "endpoint_url",
                "metadata_store.db_path"
            ]
        );
        for bad in ["ab", "-abc", "abc.", "a b c"] {
            assert!(bucket_name_problem(bad).is_some(), "{bad}");
        }
        assert!(parse_config::<S3FilesConfig>(&json!({})).is_err());
    }

    #[test]
    fn the_sample_config_parses() {
        let value: serde_json::Value = serde_norway::from_str(
            &SAMPLE_CONFIG
                .replace(
                    "${env.S3_BUCKET_NAME:=llama-stack-files}",
                    "llama-stack-files",
                )
                .replace("${env.AWS_REGION:=us-east-1}", "us-east-1")
                .replace("${env.S3_AUTO_CREATE_BUCKET:=false}", "false")
                .replace(": ${env.AWS_ACCESS_KEY_ID:=}", ":")
                .replace(": ${env.AWS_SECRET_ACCESS_KEY:=}", ":")
                .replace(": ${env.S3_ENDPOINT_URL:=}", ":"),
        )
        .unwrap();
        let config: S3FilesConfig = parse_config(&value).unwrap();
        assert!(config.issues().is_empty(), "{:?}", config.issues());
    }
}
