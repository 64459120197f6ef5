//! The typed run.yaml (run config version 2), after environment substitution.
//!
//! Field names and shapes follow the upstream `StackRunConfig`. Sections that are fixed upstream
//! reject unknown keys; sections whose features this server does not implement yet are kept as
//! raw values so that upstream files still parse (validation reports them as not implemented).

use std::collections::BTreeMap;
use std::fmt;

use llama_stack_core::Api;
use llama_stack_types::ModelType;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The run config versions this server reads.
pub const RUN_CONFIG_VERSION: u32 = 2;

/// The default `server.port`.
pub const DEFAULT_PORT: u16 = 8321;
/// The default `server.grpc_port`.
pub const DEFAULT_GRPC_PORT: u16 = 8322;

/// The top-level keys of a version 2 run config (`distro_name` is accepted for `image_name`).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "image_name",
    "distro_name",
    "container_image",
    "external_providers_dir",
    "apis",
    "providers",
    "metadata_store",
    "inference_store",
    "models",
    "shields",
    "vector_dbs",
    "datasets",
    "scoring_fns",
    "benchmarks",
    "tool_groups",
    "safety",
    "logging",
    "server",
];

/// A whole run.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Always 2 (written `2` or `'2'`).
    #[serde(deserialize_with = "version")]
    pub version: u32,
    /// The distribution's name; the default store directory is named after it.
    #[serde(alias = "distro_name", deserialize_with = "lenient::string")]
    pub image_name: String,
    /// The container image the distribution was built into; informational only.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub container_image: Option<String>,
    /// The APIs to serve; empty means every API that has a provider.
    #[serde(default, deserialize_with = "api_list")]
    pub apis: Vec<Api>,
    /// The providers of each API.
    #[serde(default, deserialize_with = "provider_map")]
    pub providers: BTreeMap<Api, Vec<ProviderEntry>>,
    /// Where the registry (registered models, ...) is kept; SQLite by default.
    #[serde(default)]
    pub metadata_store: Option<StoreConfig>,
    /// Where chat completions are stored (not implemented yet).
    #[serde(default)]
    pub inference_store: Option<StoreConfig>,
    /// Models registered at startup.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub models: Vec<ModelInput>,
    /// Shields registered at startup.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub shields: Vec<ShieldInput>,
    /// Settings of the safety API.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub safety: SafetySettings,
    /// Vector databases registered at startup (not implemented yet).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub vector_dbs: Vec<Value>,
    /// Datasets registered at startup (not implemented yet).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub datasets: Vec<Value>,
    /// Scoring functions registered at startup (not implemented yet).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub scoring_fns: Vec<Value>,
    /// Benchmarks registered at startup (not implemented yet).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub benchmarks: Vec<Value>,
    /// Tool groups registered at startup (not implemented yet).
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub tool_groups: Vec<Value>,
    /// Log levels per category (not implemented yet; use `RUST_LOG`).
    #[serde(default)]
    pub logging: Option<Value>,
    /// How the server listens.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub server: ServerConfig,
    /// Directory of external provider specs (not implemented yet).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub external_providers_dir: Option<String>,
}

/// One entry of `providers.<api>`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// The name models and other resources use to refer to this provider.
    #[serde(deserialize_with = "lenient::string")]
    pub provider_id: String,
    /// Which implementation to use, e.g. `inline::candle`.
    #[serde(deserialize_with = "lenient::string")]
    pub provider_type: String,
    /// The provider's own settings; each provider documents its fields.
    #[serde(default)]
    pub config: Value,
    /// Python module of an external provider (not supported).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub module: Option<String>,
}

impl fmt::Debug for ProviderEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderEntry")
            .field("provider_id", &self.provider_id)
            .field("provider_type", &self.provider_type)
            .field("config", &llama_stack_stack::redact_config(&self.config))
            .field("module", &self.module)
            .finish()
    }
}

/// A store location: `metadata_store` and `inference_store`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoreConfig {
    Sqlite(SqliteStoreConfig),
    Postgres(PostgresStoreConfig),
    /// Parsed so upstream files load; not implemented yet.
    Redis(serde_json::Map<String, Value>),
    /// Parsed so upstream files load; not implemented yet.
    Mongodb(serde_json::Map<String, Value>),
}

impl StoreConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            StoreConfig::Sqlite(_) => "sqlite",
            StoreConfig::Postgres(_) => "postgres",
            StoreConfig::Redis(_) => "redis",
            StoreConfig::Mongodb(_) => "mongodb",
        }
    }
}

/// `{type: sqlite, db_path}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteStoreConfig {
    /// The database file; created when missing.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub db_path: Option<String>,
    /// Key prefix inside a shared store (not implemented yet).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub namespace: Option<String>,
}

/// `{type: postgres, host, port, db, user, password}`, upstream's field names. The registry
/// is kept in table `llama_stack_registry` of `db` (see `migrations/postgres/registry`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresStoreConfig {
    /// Host name or address of the PostgreSQL server.
    #[serde(default = "default_pg_host", deserialize_with = "lenient::string")]
    pub host: String,
    /// TCP port of the server.
    #[serde(default = "default_pg_port", deserialize_with = "lenient::integer")]
    pub port: i64,
    /// The database; it must exist.
    #[serde(default = "default_pg_db", deserialize_with = "lenient::string")]
    pub db: String,
    /// The user to log in as; it needs the right to create tables in `db`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub user: Option<String>,
    /// The user's password; empty for servers that trust the connection.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    /// `disable`, `allow` or `prefer`; this build does not speak TLS to PostgreSQL, so
    /// `require`, `verify-ca` and `verify-full` are refused.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ssl_mode: Option<String>,
    /// CA certificate for TLS; refused, as TLS is not supported.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub ca_cert_path: Option<String>,
    /// Upstream's key-value table name; accepted and not used (the registry has its own table).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub table_name: Option<String>,
    /// Key prefix inside a shared store (not implemented yet).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub namespace: Option<String>,
}

fn default_pg_host() -> String {
    "localhost".into()
}
fn default_pg_port() -> i64 {
    5432
}
fn default_pg_db() -> String {
    "llamastack".into()
}

impl fmt::Debug for PostgresStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStoreConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("ssl_mode", &self.ssl_mode)
            .field("ca_cert_path", &self.ca_cert_path)
            .field("table_name", &self.table_name)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// One entry of `models`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    /// The name clients use (combined with the provider id when it equals the provider's name).
    #[serde(deserialize_with = "lenient::string")]
    pub model_id: String,
    /// The inference provider serving it; optional when there is exactly one.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub provider_id: Option<String>,
    /// The provider's name for the model; defaults to `model_id`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub provider_model_id: Option<String>,
    /// `llm` or `embedding`.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub model_type: ModelType,
    /// Free-form metadata; embedding models need `embedding_dimension`.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub metadata: serde_json::Map<String, Value>,
}

/// The `safety` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetySettings {
    /// The shield `/v1/moderations` uses when a request names no `model`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub default_shield_id: Option<String>,
}

/// One entry of `shields`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShieldInput {
    #[serde(deserialize_with = "lenient::string")]
    pub shield_id: String,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub provider_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub provider_shield_id: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
}

/// The `server` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listening port, 1024 to 65535.
    #[serde(default = "default_port", deserialize_with = "port")]
    pub port: u16,
    /// Address to bind; by default both `::` and `0.0.0.0`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub host: Option<String>,
    /// Port of the gRPC API (same host), 1024 to 65535; `0` turns gRPC off. Default 8322.
    #[serde(default = "default_grpc_port", deserialize_with = "grpc_port")]
    pub grpc_port: u16,
    /// TLS certificate chain (PEM) for both listeners; with `tls_keyfile`, the server speaks
    /// HTTPS and gRPC over TLS.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tls_certfile: Option<String>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tls_keyfile: Option<String>,
    /// CA certificates (PEM) for mutual TLS: clients must present a certificate they signed.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub tls_cafile: Option<String>,
    /// Authentication (not implemented yet).
    #[serde(default)]
    pub auth: Option<Value>,
    /// Request size limits: `max_body_bytes`, `max_upload_bytes`, `max_json_depth`,
    /// `max_tokens`, `max_embedding_inputs` (each optional, with a default).
    #[serde(default)]
    pub limits: Option<Value>,
    /// Request quotas: a budget per client per period (`anonymous_max_requests`,
    /// `authenticated_max_requests`, `period`), counted in the metadata store.
    #[serde(default)]
    pub quota: Option<Value>,
    /// Serve the browser playground (chat, documents, agents, safety and a server overview,
    /// all over the public HTTP API) at `/playground`: `true` or `false`. Default `false`, so
    /// an existing deployment grows no new page unless it asks for one; the `local` and
    /// `starter` distributions turn it on.
    #[serde(default, deserialize_with = "lenient::null_as_default")]
    pub playground: bool,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |v: &Option<Value>| v.as_ref().map(llama_stack_stack::redact_config);
        f.debug_struct("ServerConfig")
            .field("port", &self.port)
            .field("host", &self.host)
            .field("grpc_port", &self.grpc_port)
            .field("tls_certfile", &self.tls_certfile)
            .field("tls_keyfile", &self.tls_keyfile)
            .field("tls_cafile", &self.tls_cafile)
            .field("auth", &redacted(&self.auth))
            .field("quota", &redacted(&self.quota))
            .field("limits", &self.limits)
            .field("playground", &self.playground)
            .finish()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: DEFAULT_PORT,
            host: None,
            grpc_port: DEFAULT_GRPC_PORT,
            tls_certfile: None,
            tls_keyfile: None,
            tls_cafile: None,
            auth: None,
            quota: None,
            limits: None,
            playground: false,
        }
    }
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_grpc_port() -> u16 {
    DEFAULT_GRPC_PORT
}

fn grpc_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    use serde::de::Error;
    let value = Value::deserialize(d)?;
    match &value {
        Value::Null => Ok(DEFAULT_GRPC_PORT),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Ok(0),
            Some(p) if (1024..=65535).contains(&p) => Ok(p as u16),
            _ => Err(D::Error::custom(format!(
                "grpc_port must be 0 (off) or an integer from 1024 to 65535, got {n}"
            ))),
        },
        // ${env.X:=8322} substitutes to a string.
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(0) => Ok(0),
            Ok(p) if (1024..=65535).contains(&p) => Ok(p as u16),
            _ => Err(D::Error::custom(format!(
                "grpc_port must be 0 (off) or an integer from 1024 to 65535, got `{s}`"
            ))),
        },
        other => Err(D::Error::custom(format!(
            "grpc_port must be 0 (off) or an integer from 1024 to 65535, got {other}"
        ))),
    }
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    use serde::de::Error;
    let value = Value::deserialize(d)?;
    match &value {
        Value::Null => Ok(DEFAULT_PORT),
        Value::Number(n) => match n.as_i64() {
            Some(p) if (1024..=65535).contains(&p) => Ok(p as u16),
            _ => Err(D::Error::custom(format!(
                "port must be an integer from 1024 to 65535, got {n}"
            ))),
        },
        other => Err(D::Error::custom(format!(
            "port must be an integer from 1024 to 65535, got {other}"
        ))),
    }
}

fn version<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    use serde::de::Error;
    let value = Value::deserialize(d)?;
    let ok = match &value {
        Value::Number(n) => n.as_u64() == Some(RUN_CONFIG_VERSION as u64),
        Value::String(s) => s.trim() == RUN_CONFIG_VERSION.to_string(),
        _ => false,
    };
    if ok {
        Ok(RUN_CONFIG_VERSION)
    } else {
        Err(D::Error::custom(format!(
            "unsupported run config version {value}; this server reads version {RUN_CONFIG_VERSION}"
        )))
    }
}

fn api_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Api>, D::Error> {
    let names: Option<Vec<String>> = Option::deserialize(d)?;
    names
        .unwrap_or_default()
        .iter()
        .map(|n| n.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn provider_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<Api, Vec<ProviderEntry>>, D::Error> {
    let raw: Option<BTreeMap<String, Option<Vec<ProviderEntry>>>> = Option::deserialize(d)?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|(name, entries)| {
            let api = name.parse().map_err(serde::de::Error::custom)?;
            Ok((api, entries.unwrap_or_default()))
        })
        .collect()
}

/// Deserializers that accept what environment substitution may produce.
pub(crate) mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    /// A string, also accepting a number or boolean (substitution converts `"123"` to 123).
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {}, expected a string",
                describe(&other)
            ))),
        }
    }

    /// Like [`string`], with null meaning absent.
    pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            Value::Number(n) => Ok(Some(n.to_string())),
            Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "invalid type: {}, expected a string",
                describe(&other)
            ))),
        }
    }

    /// An integer, also accepting a string of one.
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let value = Value::deserialize(d)?;
        let parsed = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!("invalid value: {value}, expected an integer"))
        })
    }

    /// The type's default when the value is null.
    pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default,
    {
        Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
    }

    pub fn describe(value: &Value) -> &'static str {
        match value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "a list",
            Value::Object(_) => "a mapping",
        }
    }
}
