//! The tool runtime API: the trait tool runtimes implement ([`ToolRuntimeProvider`]) and the
//! tool group registry that routes a call to its group's runtime.
//!
//! Depends on core, the wire types and `llama-stack-documents`; never on a provider or a
//! transport.

#[cfg(test)]
mod access_tests;
pub mod provider;
mod service;

pub use provider::{FetchPolicy, FetchSettings, ToolRuntimeProvider};
pub use service::{ToolsApi, ToolsService};

/// The tool group id the RAG runtime's tools are registered under by the distributions.
pub const BUILTIN_RAG: &str = "builtin::rag";
