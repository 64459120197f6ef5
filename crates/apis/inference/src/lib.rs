//! The inference API: the trait inference providers implement ([`InferenceProvider`]), the
//! model registry that routes a request to its model's provider, the classic and
//! OpenAI-compatible inference functions both transports call, and the resilience layer that
//! wraps remote providers.
//!
//! Depends on `llama-stack-core` and the wire types only. Other APIs reach it through
//! [`InferenceApi`]; it never depends on them, on a provider or on a transport.

#[cfg(test)]
mod access_tests;
pub mod anthropic;
mod budget;
mod models;
mod openai_chunks;
pub mod openai_compat;
mod openai_embeddings;
mod openai_forward;
mod openai_json;
pub mod ops;
pub mod provider;
mod provider_models;
mod replicas;
pub mod rerank;
pub mod resilience;
mod service;
mod stored;

pub use models::RestoredModels;
pub use provider::{
    ChatStream, CompletionStream, Embeddings, ForwardedReply, InferenceProvider, JsonStream,
    ProviderModel,
};
pub use provider_models::RefreshOutcome;
pub use service::{InferenceApi, InferenceService};
pub use stored::CompletionQuery;
