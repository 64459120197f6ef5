//! The safety API trait (shields). Providers arrive with the safety work.

use async_trait::async_trait;
use llama_stack_types::Message;

use crate::error::Result;

/// A violation reported by a shield.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SafetyViolation {
    /// `info`, `warn` or `error`.
    pub violation_level: String,
    pub user_message: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[async_trait]
pub trait SafetyProvider: Send + Sync {
    /// Runs the shield `provider_shield_id` over `messages`; `None` means safe.
    async fn run_shield(
        &self,
        provider_shield_id: &str,
        messages: &[Message],
        params: &serde_json::Value,
    ) -> Result<Option<SafetyViolation>>;
}
