//! The bottom of the stack above the wire types: the API names, the domain error, provider
//! config checking, the registry store trait and request-scoped provider data.
//!
//! Depends only on `llama-stack-types`. Every API crate (`crates/apis/*`), provider, transport
//! and the distribution assembler depend on this crate; it depends on none of them.

pub mod access;
pub mod api;
pub mod config;
pub mod error;
pub mod limits;
mod memory_store;
pub mod metrics;
pub mod paging;
pub mod quota;
pub mod request_context;
pub mod store;
pub mod trace;

pub use api::Api;
pub use config::{CheckedConfig, ConfigIssue, load_config, parse_config, validate_config};
pub use error::{Error, ErrorKind, Result};
pub use memory_store::MemoryStore;
pub use store::{RegistryChange, RegistryStore, StoreLock};

/// Now as upstream writes timestamps (ISO 8601, UTC, microseconds).
pub fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Now in Unix seconds, as OpenAI objects carry it.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Now in nanoseconds since the epoch: creation order finer than `now_secs`.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A new id: `prefix_` and 48 lowercase hex digits, the shape upstream gives conversations and
/// prompts (and checks conversation ids against).
pub fn hex_id(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{a}{}", &b[..16])
}

/// Ids joined for an error message that lists the known ones, or `(none)`.
pub fn list_or_none<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}
