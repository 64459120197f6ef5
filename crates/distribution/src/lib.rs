//! Distributions: loading, checking and assembling a run.yaml (run config version 2).
//!
//! This crate owns the run.yaml format and the path from a file to a running [`Stack`]:
//!
//! 1. [`resolve_run_config`] turns a CLI argument (a file, or a distribution name such as
//!    `local`) into a path.
//! 2. [`load`] reads the file, substitutes `${env.…}` references (see [`env`]), and checks
//!    everything — YAML syntax, keys, versions, provider types, each provider's own config,
//!    references between sections, ports — collecting *all* problems with their YAML path and,
//!    where known, line and column. Features the file asks for that this server does not
//!    implement yet are accepted and listed in [`LoadedConfig::not_implemented`].
//! 3. [`build`] opens the registry store, builds each provider, restores the models registered
//!    by earlier runs and registers the run.yaml models. An embedding model whose files are not
//!    found is left out with one warning, so a distribution still starts without it.
//!
//! It also owns the list of provider crates compiled in ([`builtin_registry`]). It does not
//! serve anything: transports receive the built [`Stack`].
//!
//! An entry whose `provider_id` (or, for resources, whose id field) resolves to empty, null or
//! `__disabled__` is dropped rather than reported, so one file can switch providers on and off
//! with `${env.X:+id}`; the dropped entries are listed in [`LoadedConfig::disabled`].
//!
//! [`Stack`]: llama_stack_stack::Stack

mod assemble;
mod build;
pub mod env;
mod locate;
mod registry_store;
mod replicas;
mod resolve;
pub mod schema;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use llama_stack_core::Api;
use llama_stack_stack::ProviderRegistry;
use llama_stack_types::RegisterModelRequest;

pub use build::{Built, build};
pub use env::EnvMap;
pub use resolve::{distribution_names, resolve_run_config};
pub use schema::RunConfig;

/// Every provider type compiled into this build.
pub fn builtin_registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_inference_candle::register(&mut registry);
    llama_stack_provider_inference_sentence_transformers::register(&mut registry);
    llama_stack_provider_inference_remote::register(&mut registry);
    llama_stack_provider_tool_rag_runtime::register(&mut registry);
    llama_stack_provider_tool_search::register(&mut registry);
    llama_stack_provider_tool_mcp::register(&mut registry);
    llama_stack_provider_vector_sqlite::register(&mut registry);
    llama_stack_provider_vector_pgvector::register(&mut registry);
    llama_stack_provider_files_localfs::register(&mut registry);
    llama_stack_provider_files_postgres::register(&mut registry);
    llama_stack_provider_files_s3::register(&mut registry);
    llama_stack_provider_safety_llama_guard::register(&mut registry);
    llama_stack_provider_safety_code_scanner::register(&mut registry);
    llama_stack_provider_safety_prompt_guard::register(&mut registry);
    llama_stack_provider_safety_passthrough::register(&mut registry);
    llama_stack_provider_agents_meta_reference::register(&mut registry);
    llama_stack_provider_responses_builtin::register(&mut registry);
    llama_stack_provider_batches_reference::register(&mut registry);
    registry
}

/// Reads and checks a run.yaml with the built-in providers. Variables come from the process
/// environment, with `env_overrides` (the CLI's `--env K=V`) taking precedence.
pub fn load(
    path: &Path,
    env_overrides: &BTreeMap<String, String>,
) -> Result<LoadedConfig, ConfigErrors> {
    load_with(path, &env::process_env(env_overrides), &builtin_registry())
}

/// [`load`] with an explicit environment (not merged with the process environment) and
/// registry.
pub fn load_with(
    path: &Path,
    env: &EnvMap,
    registry: &ProviderRegistry,
) -> Result<LoadedConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| ConfigErrors {
        source: Some(path.to_path_buf()),
        problems: vec![Problem::new(
            "",
            format!("cannot read {}: {err}", path.display()),
        )],
    })?;
    let mut loaded = load_str(&text, env, registry).map_err(|mut errors| {
        errors.source = Some(path.to_path_buf());
        errors
    })?;
    loaded.source = Some(path.to_path_buf());
    Ok(loaded)
}

/// Checks run.yaml text. Pure: variables come from `env` only.
pub fn load_str(
    text: &str,
    env: &EnvMap,
    registry: &ProviderRegistry,
) -> Result<LoadedConfig, ConfigErrors> {
    let checked = validate::check(text, env, registry).map_err(|problems| ConfigErrors {
        source: None,
        problems,
    })?;
    Ok(LoadedConfig {
        source: None,
        config: checked.config,
        providers: checked.providers,
        models: checked.models,
        apis: checked.apis,
        server: checked.server,
        not_implemented: checked.not_implemented,
        disabled: checked.disabled,
        registry_db_path: checked.registry_db_path,
        registry: registry.clone(),
    })
}

/// A checked run.yaml, ready to [`build`].
pub struct LoadedConfig {
    /// The file it was read from.
    pub source: Option<PathBuf>,
    /// The configuration after substitution, without disabled entries.
    pub config: RunConfig,
    /// The providers that will be built, in file order.
    pub providers: Vec<PlannedProvider>,
    /// The models registered at startup, in file order.
    pub models: Vec<PlannedModel>,
    /// The APIs served: those listed in `apis` that have a buildable provider, or every API
    /// with one when `apis` is empty.
    pub apis: Vec<Api>,
    pub server: ServerSettings,
    /// One sentence, starting with its YAML path, per configured feature that is accepted but
    /// not implemented yet.
    pub not_implemented: Vec<String>,
    /// One sentence per entry dropped because its provider_id or id resolved empty.
    pub disabled: Vec<String>,
    registry_db_path: PathBuf,
    registry: ProviderRegistry,
}

impl LoadedConfig {
    /// The registry database: `metadata_store.db_path`, by default
    /// `${SQLITE_STORE_DIR:=~/.llama/distributions/<image_name>}/registry.db`.
    pub fn registry_db_path(&self) -> &Path {
        &self.registry_db_path
    }

    /// The directory of the registry database, also handed to providers that keep files.
    pub fn store_dir(&self) -> &Path {
        self.registry_db_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    }

    /// The provider types this configuration was checked against.
    pub fn registry(&self) -> &ProviderRegistry {
        &self.registry
    }
}

impl fmt::Debug for LoadedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedConfig")
            .field("source", &self.source)
            .field("config", &self.config)
            .field("providers", &self.providers)
            .field("models", &self.models)
            .field("apis", &self.apis)
            .field("server", &self.server)
            .field("not_implemented", &self.not_implemented)
            .field("disabled", &self.disabled)
            .field("registry_db_path", &self.registry_db_path)
            .finish_non_exhaustive()
    }
}

/// A provider to build.
#[derive(Clone)]
pub struct PlannedProvider {
    /// Its entry, e.g. `providers.inference[0]`.
    pub path: String,
    pub api: Api,
    pub provider_id: String,
    /// The registered type (an alias in the file is resolved to it).
    pub provider_type: &'static str,
    /// Its `config:` block after substitution.
    pub config: serde_json::Value,
}

impl fmt::Debug for PlannedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlannedProvider")
            .field("path", &self.path)
            .field("api", &self.api)
            .field("provider_id", &self.provider_id)
            .field("provider_type", &self.provider_type)
            .field("config", &llama_stack_stack::redact_config(&self.config))
            .finish()
    }
}

/// A model to register at startup.
#[derive(Debug, Clone)]
pub struct PlannedModel {
    /// Its entry, e.g. `models[0]`.
    pub path: String,
    pub request: RegisterModelRequest,
}

/// Where the server listens (`server.host`, `server.port`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// None binds every interface.
    pub host: Option<String>,
    pub port: u16,
    /// The gRPC port; 0 when gRPC is off.
    pub grpc_port: u16,
    /// TLS on both listeners, when configured.
    pub tls: Option<TlsSettings>,
    /// `server.quota`, when configured.
    pub quota: Option<llama_stack_core::quota::QuotaSettings>,
    /// `server.limits`, over the defaults.
    pub limits: llama_stack_core::limits::RequestLimits,
    /// `server.auth`, when configured: who callers are and what they may do.
    pub auth: Option<llama_stack_auth::AuthSettings>,
    /// `server.playground`: whether `/playground` serves the browser playground.
    pub playground: bool,
}

/// `server.tls_certfile`, `server.tls_keyfile` and `server.tls_cafile`, checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub certfile: String,
    pub keyfile: String,
    /// Clients must present a certificate signed by one of these CAs (mutual TLS).
    pub cafile: Option<String>,
}

/// One problem in a run.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// YAML path, e.g. `providers.inference[0].config.model_path`; empty for the whole file.
    pub path: String,
    pub message: String,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// 1-based column, where known.
    pub column: Option<usize>,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match (self.line, self.column) {
            (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
            (Some(line), None) => format!(" (line {line})"),
            _ => String::new(),
        };
        match (self.path.is_empty(), place.is_empty()) {
            (true, true) => write!(f, "{}", self.message),
            (true, false) => write!(f, "{}: {}", place.trim_start(), self.message),
            (false, _) => write!(f, "{}{place}: {}", self.path, self.message),
        }
    }
}

/// Every problem found in a run.yaml.
#[derive(Debug, Clone)]
pub struct ConfigErrors {
    /// The file, when loaded from one.
    pub source: Option<PathBuf>,
    pub problems: Vec<Problem>,
}

/// One problem per line: `path (line L, column C): message`.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
