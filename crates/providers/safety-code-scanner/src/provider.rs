//! The shield: run-shield and moderation verdicts from scanner findings.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{Error, Result};
use llama_stack_safety::{
    provider::GuardInference, provider::SafetyProvider, provider::SafetyViolation,
    provider::ViolationLevel,
};
use llama_stack_types::{Message, ModerationResult, Shield};
use serde_json::{Map, Value, json};

use crate::rules::Severity;
use crate::scanner::{Finding, Scanner};

/// Shield ids this provider serves: upstream's names before 0.2.20 and since.
pub const SHIELD_IDS: &[&str] = &["CodeScanner", "CodeShield", "code-scanner", "code-shield"];

/// The text a run-shield request shows the end user when code is flagged.
pub const VIOLATION_MESSAGE: &str = "Sorry, I found security concerns in the code.";

/// Texts above this size are scanned on the blocking pool, so a pasted repository does not
/// stall the async workers.
const INLINE_SCAN_LIMIT: usize = 64 * 1024;

/// `inline::code-scanner`: rule-based insecure-code detection.
#[derive(Debug, Clone)]
pub struct CodeScannerSafety {
    scanner: Arc<Scanner>,
}

impl CodeScannerSafety {
    pub fn new(scanner: Scanner) -> Self {
        CodeScannerSafety {
            scanner: Arc::new(scanner),
        }
    }

    async fn scan(&self, text: String) -> Result<Vec<Finding>> {
        if text.len() <= INLINE_SCAN_LIMIT {
            return Ok(self.scanner.scan(&text));
        }
        let scanner = self.scanner.clone();
        tokio::task::spawn_blocking(move || scanner.scan(&text))
            .await
            .map_err(|err| Error::internal(format!("code scan did not finish: {err}")))
    }
}

/// Rule ids, each once, in order of first finding, comma-joined.
fn violation_type(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(Finding::id)
        .collect::<Vec<_>>()
        .join(",")
}

fn message_text(message: &Message) -> String {
    match message {
        Message::User { content, .. }
        | Message::System { content }
        | Message::Tool { content, .. }
        | Message::Assistant { content, .. } => content.as_text(" "),
    }
}

fn moderation_result(findings: &[Finding]) -> ModerationResult {
    if findings.is_empty() {
        return ModerationResult {
            flagged: false,
            categories: Map::new(),
            category_scores: Map::new(),
            category_applied_input_types: Map::new(),
            user_message: None,
            metadata: Map::new(),
        };
    }
    let ids = || findings.iter().map(|f| f.id().to_string());
    let treatment = if findings.iter().any(|f| f.severity() == Severity::Error) {
        "BLOCK"
    } else {
        "WARN"
    };
    let descriptions: Vec<&str> = findings
        .iter()
        .map(|f| f.rule.description.as_str())
        .collect();
    ModerationResult {
        flagged: true,
        categories: ids().map(|id| (id, Value::Bool(true))).collect(),
        category_scores: ids().map(|id| (id, json!(1.0))).collect(),
        category_applied_input_types: ids().map(|id| (id, json!(["text"]))).collect(),
        user_message: Some(format!(
            "Security concerns detected in the code. {treatment}: {}",
            descriptions.join(", ")
        )),
        metadata: Map::from_iter([(
            "violation_type".to_string(),
            Value::String(violation_type(findings)),
        )]),
    }
}

#[async_trait]
impl SafetyProvider for CodeScannerSafety {
    async fn register_shield(
        &self,
        shield: &Shield,
        _inference: &dyn GuardInference,
    ) -> Result<()> {
        if SHIELD_IDS.contains(&shield.provider_resource_id.as_str()) {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "unsupported code scanner id `{}`; allowed ids: {}",
            shield.provider_resource_id,
            SHIELD_IDS.join(", ")
        )))
    }

    async fn run_shield(
        &self,
        shield: &Shield,
        messages: &[Message],
        _params: &Value,
        _inference: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>> {
        let text = messages
            .iter()
            .map(message_text)
            .collect::<Vec<_>>()
            .join("\n");
        let findings = self.scan(text).await?;
        if findings.is_empty() {
            return Ok(None);
        }
        let violation_type = violation_type(&findings);
        tracing::info!(shield = %shield.identifier, rules = %violation_type, "Insecure code found");
        Ok(Some(SafetyViolation {
            violation_level: ViolationLevel::Error,
            user_message: Some(VIOLATION_MESSAGE.to_string()),
            metadata: Map::from_iter([(
                "violation_type".to_string(),
                Value::String(violation_type),
            )]),
        }))
    }

    async fn run_moderation(
        &self,
        shield: &Shield,
        inputs: &[String],
        _inference: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>> {
        let mut results = Vec::with_capacity(inputs.len());
        for input in inputs {
            let findings = self.scan(input.clone()).await?;
            if !findings.is_empty() {
                tracing::info!(
                    shield = %shield.identifier,
                    rules = %violation_type(&findings),
                    "Insecure code found"
                );
            }
            results.push(moderation_result(&findings));
        }
        Ok(results)
    }
}
