//! `remote::passthrough`: shields checked by another service's OpenAI-style `/v1/moderations`
//! route, such as another Llama Stack server or a hosted moderation service.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use llama_stack_core::parse_config;
use llama_stack_core::request_context::provider_data_string;
use llama_stack_core::{Api, ConfigIssue, Error, ErrorKind, Result};
use llama_stack_safety::provider::{GuardInference, SafetyProvider};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};
use llama_stack_types::{
    ContentItem, InterleavedContent, Message, ModerationResult, SafetyViolation, Shield,
    ViolationLevel,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub const PROVIDER_TYPE: &str = "remote::passthrough";

/// The message shown when the downstream service flags content without saying what to show.
pub const FLAGGED_MESSAGE: &str = "Content was flagged by the safety service.";

/// Forwards every check to a downstream `/moderations` route; a shield's
/// `provider_shield_id` is sent as the moderation `model`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughConfig {
    /// Base URL of the downstream service, ending before `/moderations`, e.g.
    /// `http://guard-host:8321/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`. When empty, a request's provider data
    /// (`X-LlamaStack-Provider-Data: {"passthrough_api_key": "..."}`) may supply one.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Seconds to wait for the downstream answer.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    30
}

pub const SAMPLE_CONFIG: &str = "base_url: ${env.PASSTHROUGH_SAFETY_URL:=http://localhost:8321/v1}
api_key: ${env.PASSTHROUGH_SAFETY_API_KEY:=}
timeout_s: 30
";

impl PassthroughConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match reqwest::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {}
            Ok(url) => issues.push(ConfigIssue::new(
                "base_url",
                format!("`{}` is not an http(s) URL", url),
            )),
            Err(err) => issues.push(ConfigIssue::new(
                "base_url",
                format!(
                    "`{}` is not a URL ({err}); write e.g. http://host:8321/v1",
                    self.base_url
                ),
            )),
        }
        if self.timeout_s == 0 {
            issues.push(ConfigIssue::new("timeout_s", "must be at least 1"));
        }
        issues
    }
}

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Safety,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Shields checked by another service's /v1/moderations route",
        sample_config: SAMPLE_CONFIG,
        validate,
        build,
    });
}

fn validate(config: &Value) -> Vec<ConfigIssue> {
    match parse_config::<PassthroughConfig>(config) {
        Ok(config) => config.issues(),
        Err(issues) => issues,
    }
}

fn build(
    config: Value,
    _ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = parse_config::<PassthroughConfig>(&config).map_err(|issues| {
            Error::invalid(
                issues
                    .iter()
                    .map(|i| format!("{}: {}", i.path, i.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_s))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        Ok(ProviderInstance::Safety(Arc::new(Passthrough {
            url: format!("{}/moderations", config.base_url.trim_end_matches('/')),
            api_key: config.api_key.filter(|k| !k.is_empty()),
            http,
        })))
    }
    .boxed()
}

pub struct Passthrough {
    url: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Passthrough {
    async fn moderate(&self, input: Value, model: &str) -> Result<Vec<ModerationResult>> {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({"input": input, "model": model}));
        if let Some(key) = self
            .api_key
            .clone()
            .or_else(|| provider_data_string("passthrough_api_key"))
        {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|err| {
            let kind = if err.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Upstream
            };
            Error::new(
                kind,
                format!(
                    "Failed to reach the downstream safety service at {}: {err}",
                    self.url
                ),
            )
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let kind = if status.is_client_error() {
                ErrorKind::InvalidRequest
            } else {
                ErrorKind::Upstream
            };
            let excerpt: String = body.chars().take(300).collect();
            return Err(Error::new(
                kind,
                format!("The downstream safety service answered HTTP {status}: {excerpt}"),
            ));
        }
        let results = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("results").cloned())
            .and_then(|r| serde_json::from_value::<Vec<Value>>(r).ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Upstream,
                    "The downstream safety service answered without a `results` list",
                )
            })?;
        Ok(results.iter().map(read_result).collect())
    }
}

/// One downstream result, tolerant of the fields other services leave out.
fn read_result(value: &Value) -> ModerationResult {
    let map = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    ModerationResult {
        flagged: value
            .get("flagged")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        categories: map("categories"),
        category_scores: map("category_scores"),
        category_applied_input_types: map("category_applied_input_types"),
        user_message: value
            .get("user_message")
            .and_then(Value::as_str)
            .map(str::to_string),
        metadata: map("metadata"),
    }
}

/// The violation for the first flagged result. The downstream's own `violation_type` and user
/// message are kept when it sends them (another Llama Stack does); otherwise the first flagged
/// category names it.
fn violation_of(results: &[ModerationResult]) -> Option<SafetyViolation> {
    let flagged = results.iter().find(|r| r.flagged)?;
    let violation_type = match flagged.metadata.get("violation_type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => flagged
            .categories
            .iter()
            .find(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| "unsafe".into()),
    };
    let mut metadata = Map::new();
    metadata.insert("violation_type".into(), Value::String(violation_type));
    Some(SafetyViolation {
        violation_level: ViolationLevel::Error,
        user_message: Some(
            flagged
                .user_message
                .clone()
                .unwrap_or_else(|| FLAGGED_MESSAGE.to_string()),
        ),
        metadata,
    })
}

/// The text of the messages, one entry per text part, as the downstream moderation input.
fn texts(messages: &[Message]) -> Vec<String> {
    let mut out = Vec::new();
    for message in messages {
        let content = match message {
            Message::User { content, .. }
            | Message::System { content }
            | Message::Tool { content, .. }
            | Message::Assistant { content, .. } => content,
        };
        match content {
            InterleavedContent::Text(t) => out.push(t.clone()),
            other => out.extend(other.items().into_iter().filter_map(|item| match item {
                ContentItem::Text { text } => Some(text),
                ContentItem::Image { .. } => None,
            })),
        }
    }
    out
}

#[async_trait]
impl SafetyProvider for Passthrough {
    async fn register_shield(
        &self,
        _shield: &Shield,
        _inference: &dyn GuardInference,
    ) -> Result<()> {
        Ok(())
    }

    async fn run_shield(
        &self,
        shield: &Shield,
        messages: &[Message],
        _params: &Value,
        _inference: &dyn GuardInference,
    ) -> Result<Option<SafetyViolation>> {
        let texts = texts(messages);
        let input = match texts.as_slice() {
            [] => return Ok(None),
            [one] => Value::String(one.clone()),
            _ => json!(texts),
        };
        let results = self.moderate(input, &shield.provider_resource_id).await?;
        Ok(violation_of(&results))
    }

    async fn run_moderation(
        &self,
        shield: &Shield,
        inputs: &[String],
        _inference: &dyn GuardInference,
    ) -> Result<Vec<ModerationResult>> {
        let results = self
            .moderate(json!(inputs), &shield.provider_resource_id)
            .await?;
        // One verdict per input, or one for all of them (a Llama Guard service reads a list
        // as one conversation).
        if results.len() != inputs.len() && results.len() != 1 {
            return Err(Error::new(
                ErrorKind::Upstream,
                format!(
                    "The downstream safety service returned {} results for {} inputs",
                    results.len(),
                    inputs.len()
                ),
            ));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validates_and_bad_urls_are_reported() {
        // SAMPLE_CONFIG itself is checked after env substitution by the distribution's tests.
        let sample: Value = serde_norway::from_str(
            "base_url: http://localhost:8321/v1\napi_key: \"\"\ntimeout_s: 30\n",
        )
        .unwrap();
        assert_eq!(validate(&sample), vec![]);
        let issues = validate(&json!({"base_url": "ftp://x", "timeout_s": 0}));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["base_url", "timeout_s"]);
        assert_eq!(validate(&json!({})).len(), 1);
    }

    #[test]
    fn a_flagged_result_keeps_the_downstream_codes_and_message() {
        let llama_stack = read_result(&json!({
            "flagged": true, "categories": {"Hate": true}, "category_scores": {"Hate": 1.0},
            "user_message": "No.", "metadata": {"violation_type": ["S10", "S2"]}}));
        let v = violation_of(&[llama_stack]).unwrap();
        assert_eq!(v.user_message.as_deref(), Some("No."));
        assert_eq!(v.metadata["violation_type"], "S10,S2");

        let openai = read_result(&json!({
            "flagged": true, "categories": {"harassment": false, "violence": true}}));
        let v = violation_of(&[read_result(&json!({"flagged": false})), openai]).unwrap();
        assert_eq!(v.user_message.as_deref(), Some(FLAGGED_MESSAGE));
        assert_eq!(v.metadata["violation_type"], "violence");

        assert_eq!(
            violation_of(&[read_result(&json!({"flagged": false}))]),
            None
        );
    }

    #[test]
    fn texts_are_taken_part_by_part() {
        let messages = vec![
            Message::user("one"),
            Message::User {
                content: InterleavedContent::Items(vec![
                    ContentItem::Text { text: "two".into() },
                    ContentItem::Text {
                        text: "three".into(),
                    },
                ]),
                context: None,
            },
        ];
        assert_eq!(texts(&messages), ["one", "two", "three"]);
    }
}
