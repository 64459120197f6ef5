//! The `SafetyProvider` implementation: shield checks on the async side, the model on the
//! engine thread.

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_safety::provider::{GuardInference, SafetyProvider};
use llama_stack_types::{Message, ModerationResult, SafetyViolation, Shield};

use crate::classifier::{self, Classifier};
use crate::config::{PROMPT_GUARD_MODEL, PromptGuardConfig};
use crate::engine::{self, EngineHandle};
use crate::verdict::{self, Scores};

pub struct PromptGuardSafety {
    config: PromptGuardConfig,
    engine: EngineHandle,
}

impl PromptGuardSafety {
    /// Checks the model folder, loads the model and starts its thread. The loading runs on a
    /// blocking thread, so the runtime stays free while the weights are read.
    pub async fn open(config: PromptGuardConfig) -> Result<PromptGuardSafety> {
        let dir = config.model_dir();
        let device_name = config.device.clone();
        let max_queue = config.max_queue;
        let engine = tokio::task::spawn_blocking(move || {
            let files = classifier::inspect(&dir)?;
            let device = engine::parse_device(&device_name)?;
            let classifier = Classifier::load(&files, &device)?;
            tracing::info!(
                dir = %files.dir.display(),
                device = %device_name,
                "Prompt Guard model loaded"
            );
            engine::start(classifier, max_queue)
        })
        .await
        .map_err(|e| Error::internal(format!("loading Prompt Guard failed: {e}")))??;
        Ok(PromptGuardSafety { config, engine })
    }

    pub fn config(&self) -> &PromptGuardConfig {
        &self.config
    }

    /// The model's probabilities for each text, in order.
    pub async fn scores(&self, texts: Vec<String>) -> Result<Vec<Scores>> {
        self.engine.scores(texts).await
    }

    /// The shield's verdict on one text.
    pub async fn check(&self, text: String) -> Result<Option<SafetyViolation>> {
        let scores = self.scores(vec![text]).await?;
        Ok(scores.first().and_then(|s| self.verdict(s)))
    }

    fn verdict(&self, scores: &Scores) -> Option<SafetyViolation> {
        tracing::debug!(
            embedded = scores.embedded,
            malicious = scores.malicious,
            "Prompt Guard scored a message"
        );
        verdict::violation(scores, self.config.guard_type, self.config.threshold)
    }
}

/// The text of a message as upstream reads it: its content, items joined by spaces.
fn message_text(message: &Message) -> String {
    match message {
        Message::User { content, .. }
        | Message::System { content }
        | Message::Tool { content, .. }
        | Message::Assistant { content, .. } => content.as_text(" "),
    }
}

#[async_trait]
impl SafetyProvider for PromptGuardSafety {
    async fn register_shield(
        &self,
        shield: &Shield,
        _inference: &dyn GuardInference,
    ) -> Result<()> {
        if shield.provider_resource_id != PROMPT_GUARD_MODEL {
            return Err(Error::invalid(format!(
                "shield '{}' names '{}'; inline::prompt-guard serves only {PROMPT_GUARD_MODEL}: \
                 register it with provider_shield_id {PROMPT_GUARD_MODEL}",
                shield.identifier, shield.provider_resource_id
            )));
        }
        Ok(())
    }

    /// Classifies the last message only, as upstream does: earlier turns were checked when
    /// they were sent.
    async fn run_shield(
        &self,
        _shield: &Shield,
        messages: &[Message],
        _params: &serde_json::Value,
        _inference: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>> {
        let last = messages
            .last()
            .ok_or_else(|| Error::invalid("run-shield needs at least one message"))?;
        self.check(message_text(last)).await
    }

    /// One result per input, each input classified alone, in the layout of [`verdict::moderation`].
    async fn run_moderation(
        &self,
        _shield: &Shield,
        inputs: &[String],
        _inference: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let scores = self.scores(inputs.to_vec()).await?;
        Ok(scores
            .iter()
            .map(|s| verdict::moderation(self.verdict(s).as_ref()))
            .collect())
    }
}
