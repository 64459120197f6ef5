//! API traits, the domain error, provider registration and the assembled [`Stack`] whose
//! functions both transports call.
//!
//! Depends only on `llama-stack-types` and `llama-stack-documents` (text extraction and
//! chunking, which vector store ingestion uses). Must never depend on a provider, a transport or the
//! distribution assembler: those depend on this crate.

pub mod agents;
pub mod api;
pub mod error;
pub mod files;
pub mod files_ops;
pub mod inference;
pub mod inference_ops;
pub mod memory;
mod models;
pub mod openai_compat;
mod openai_embeddings;
mod openai_forward;
pub mod provider;
mod provider_models;
pub mod request_context;
pub mod resilience;
pub mod safety;
mod shields;
pub mod stack;
pub mod store;
pub mod tool_runtime;
pub mod vector_io;

pub use api::Api;
pub use error::{Error, ErrorKind, Result};
pub use inference::{
    ChatStream, CompletionStream, Embeddings, ForwardedReply, InferenceProvider, JsonStream,
    ProviderModel,
};
pub use models::RestoredModels;
pub use provider::{
    CheckedConfig, ConfigIssue, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
};
pub use provider_models::RefreshOutcome;
pub use shields::RestoredShields;
pub use stack::{ProviderHandle, Stack, StackInfo};
pub use store::RegistryStore;
