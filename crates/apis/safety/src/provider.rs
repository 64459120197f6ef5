//! The safety API traits. A safety provider checks messages against a registered shield; a
//! guard that is itself a model (Llama Guard) reaches it through [`GuardInference`], which the
//! stack implements over its own inference routing, so the guard model may be served by any
//! inference provider.

use async_trait::async_trait;
use llama_stack_types::{InterleavedContent, Message, Model, ModerationResult, Shield};

use llama_stack_core::Result;

pub use llama_stack_types::{SafetyViolation, ViolationLevel};

/// The stack's inference API as a guard model sees it.
#[async_trait]
pub trait GuardInference: Send + Sync {
    /// Resolves a model id through the registry, as an inference request would.
    async fn find_model(&self, model_id: &str) -> Result<Model>;

    /// One non-streaming chat completion with a single user message at temperature 0;
    /// returns the reply text.
    async fn guard_chat(&self, model_id: &str, content: InterleavedContent) -> Result<String>;
}

#[async_trait]
pub trait SafetyProvider: Send + Sync {
    /// Checks a shield before it is registered or restored; an error refuses it.
    async fn register_shield(&self, shield: &Shield, inference: &dyn GuardInference) -> Result<()>;

    /// Runs `shield` over `messages`; `None` means they passed.
    async fn run_shield(
        &self,
        shield: &Shield,
        messages: &[Message],
        params: &serde_json::Value,
        inference: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>>;

    /// The `/v1/moderations` verdicts for `inputs`, in the provider's own result layout (one
    /// result per input, or one for the whole list where the check reads them as a
    /// conversation).
    async fn run_moderation(
        &self,
        shield: &Shield,
        inputs: &[String],
        inference: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>>;
}
