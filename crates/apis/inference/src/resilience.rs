//! Resilience as a layer around any inference provider, so no provider carries its own retry
//! loop: a per-request timeout, retries with exponential backoff and jitter on temporary
//! failures only, an idle timeout on started streams, and a circuit breaker that makes requests
//! fail fast while an upstream is down.
//!
//! What counts as temporary is the provider's call: it marks an error temporary
//! ([`Error::is_temporary`]) when trying again may help (connection refused, 429, 502, 503,
//! 504), with the wait its upstream asked for in [`Error::retry_after`]. A call is retried only
//! until it returns; a stream that has started is never retried, since its first events may
//! already be on their way to the client.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use llama_stack_types::openai::{
    OpenAiChatCompletionRequest, OpenAiCompletionRequest, OpenAiEmbeddingsRequest,
    OpenAiEmbeddingsResponse,
};
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, HealthInfo, Model,
};
use llama_stack_types::{RerankRequest, RerankResponse};
use rand::Rng;
use serde::Deserialize;

use crate::provider::{
    ChatStream, CompletionStream, Embeddings, ForwardedReply, InferenceProvider, ProviderModel,
};
use llama_stack_core::ConfigIssue;
use llama_stack_core::metrics::{self, CircuitState};
use llama_stack_core::{Error, ErrorKind, Result};

/// Timeouts, retries and the circuit breaker of one provider: the `resilience:` block of a
/// provider config that supports it. Every field has a default, so the block is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Seconds one attempt may take: until the whole answer of a non-streamed call, until the
    /// response headers of a stream. Past it the request fails with 504 and is not retried.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Seconds a started stream may go without an event before it is ended with an error.
    #[serde(default = "default_timeout_s")]
    pub stream_idle_timeout_s: f64,
    /// Retries after a temporary failure (connection refused or reset, 429, 502, 503, 504);
    /// 0 turns retrying off.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Seconds before the first retry; each further retry waits twice as long, up to
    /// `max_backoff_s`, with random jitter so that clients do not retry in lockstep.
    #[serde(default = "default_initial_backoff_s")]
    pub initial_backoff_s: f64,
    /// Longest wait between two attempts, in seconds.
    #[serde(default = "default_max_backoff_s")]
    pub max_backoff_s: f64,
    /// Longest `Retry-After` (seconds) an upstream may ask for and still be retried; a longer
    /// wait is passed on to the client instead.
    #[serde(default = "default_max_retry_after_s")]
    pub max_retry_after_s: f64,
    /// Consecutive failed attempts (unreachable upstream, timeouts, 5xx answers) after which
    /// requests fail at once without contacting the upstream; 0 turns the breaker off.
    #[serde(default = "default_breaker_failures")]
    pub circuit_breaker_failures: u32,
    /// Seconds requests fail fast once the breaker has opened; after that one request tries
    /// the upstream again and closes the breaker if it succeeds.
    #[serde(default = "default_breaker_cooldown_s")]
    pub circuit_breaker_cooldown_s: f64,
}

fn default_timeout_s() -> f64 {
    120.0
}
fn default_max_retries() -> u32 {
    2
}
fn default_initial_backoff_s() -> f64 {
    0.5
}
fn default_max_backoff_s() -> f64 {
    8.0
}
fn default_max_retry_after_s() -> f64 {
    30.0
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown_s() -> f64 {
    30.0
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            timeout_s: default_timeout_s(),
            stream_idle_timeout_s: default_timeout_s(),
            max_retries: default_max_retries(),
            initial_backoff_s: default_initial_backoff_s(),
            max_backoff_s: default_max_backoff_s(),
            max_retry_after_s: default_max_retry_after_s(),
            circuit_breaker_failures: default_breaker_failures(),
            circuit_breaker_cooldown_s: default_breaker_cooldown_s(),
        }
    }
}

/// Retries beyond this are a configuration mistake, not resilience.
const MAX_RETRIES_LIMIT: u32 = 10;
/// Longest duration any setting may name (a day), so conversions cannot overflow.
const MAX_SECONDS: f64 = 86_400.0;

impl ResilienceConfig {
    /// Every out-of-range value, with paths under `prefix` (e.g. `resilience`).
    pub fn issues(&self, prefix: &str) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let mut seconds = |name: &str, value: f64, zero_ok: bool| {
            let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
            if !value.is_finite() || !low_ok || value > MAX_SECONDS {
                let low = if zero_ok { "0" } else { "more than 0" };
                issues.push(ConfigIssue::new(
                    format!("{prefix}.{name}"),
                    format!("must be between {low} and {MAX_SECONDS} seconds, got {value}"),
                ));
            }
        };
        seconds("timeout_s", self.timeout_s, false);
        seconds("stream_idle_timeout_s", self.stream_idle_timeout_s, false);
        seconds("initial_backoff_s", self.initial_backoff_s, true);
        seconds("max_backoff_s", self.max_backoff_s, true);
        seconds("max_retry_after_s", self.max_retry_after_s, true);
        seconds(
            "circuit_breaker_cooldown_s",
            self.circuit_breaker_cooldown_s,
            false,
        );
        if self.max_retries > MAX_RETRIES_LIMIT {
            issues.push(ConfigIssue::new(
                format!("{prefix}.max_retries"),
                format!(
                    "must be at most {MAX_RETRIES_LIMIT}, got {}",
                    self.max_retries
                ),
            ));
        }
        if self.initial_backoff_s > self.max_backoff_s {
            issues.push(ConfigIssue::new(
                format!("{prefix}.initial_backoff_s"),
                format!(
                    "must not exceed max_backoff_s ({} > {})",
                    self.initial_backoff_s, self.max_backoff_s
                ),
            ));
        }
        issues
    }

    /// The wait before retry number `retry` (0-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that a retry never comes immediately.
    pub fn backoff(&self, retry: u32) -> Duration {
        let full =
            (self.initial_backoff_s * 2f64.powi(retry.min(30) as i32)).min(self.max_backoff_s);
        let half = full / 2.0;
        let jitter = if half > 0.0 {
            rand::rng().random_range(0.0..=half)
        } else {
            0.0
        };
        seconds(half + jitter)
    }

    /// How long to wait before retrying after `err`, or `None` when it must not be retried.
    fn retry_delay(&self, err: &Error, retry: u32) -> Option<Duration> {
        if !err.is_temporary() || retry >= self.max_retries {
            return None;
        }
        match err.retry_after() {
            Some(asked) if asked > seconds(self.max_retry_after_s) => None,
            Some(asked) => Some(asked),
            None => Some(self.backoff(retry)),
        }
    }
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.0, MAX_SECONDS))
}

/// Errors that say the upstream is unwell, as opposed to a bad request or a rate limit (an
/// upstream that answers 4xx is up).
fn counts_against_upstream(err: &Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Upstream | ErrorKind::Timeout | ErrorKind::Overloaded
    )
}

#[derive(Debug, Default)]
struct BreakerState {
    consecutive_failures: u32,
    /// While set and in the future, requests fail fast. Once past, one request is let through
    /// and the instant moves a cooldown ahead, so that only that request probes the upstream.
    open_until: Option<Instant>,
    last_error: String,
}

/// The layer: wraps a provider and applies a [`ResilienceConfig`] to every call.
pub struct Resilient {
    inner: Arc<dyn InferenceProvider>,
    provider_id: String,
    config: ResilienceConfig,
    breaker: Mutex<BreakerState>,
}

impl Resilient {
    pub fn wrap(
        inner: Arc<dyn InferenceProvider>,
        provider_id: impl Into<String>,
        config: ResilienceConfig,
    ) -> Arc<dyn InferenceProvider> {
        let provider_id = provider_id.into();
        if config.circuit_breaker_failures > 0 {
            metrics::circuit_state(&provider_id, CircuitState::Closed);
        }
        Arc::new(Resilient {
            inner,
            provider_id,
            config,
            breaker: Mutex::new(BreakerState::default()),
        })
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, BreakerState> {
        // The state is a few counters; a panic elsewhere cannot leave it inconsistent.
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets an attempt through, or fails fast while the breaker is open.
    fn admit(&self) -> Result<()> {
        if self.config.circuit_breaker_failures == 0 {
            return Ok(());
        }
        let mut state = self.breaker();
        let Some(until) = state.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until {
            state.open_until = Some(now + seconds(self.config.circuit_breaker_cooldown_s));
            metrics::circuit_state(&self.provider_id, CircuitState::HalfOpen);
            tracing::info!(provider = %self.provider_id, "Circuit half-open; probing the upstream");
            return Ok(());
        }
        let wait = until - now;
        Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "provider '{}' is unavailable: its last {} attempts failed (last error: {}); requests fail fast for {} more seconds",
                self.provider_id,
                state.consecutive_failures,
                state.last_error,
                wait.as_secs_f64().ceil() as u64
            ),
        )
        .with_retry_after(wait.max(Duration::from_secs(1))))
    }

    fn record(&self, outcome: std::result::Result<(), &Error>) {
        if self.config.circuit_breaker_failures == 0 {
            return;
        }
        let mut state = self.breaker();
        match outcome {
            Err(err) if counts_against_upstream(err) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                state.last_error = err.to_string();
                if state.consecutive_failures >= self.config.circuit_breaker_failures {
                    if state.open_until.is_none() {
                        tracing::warn!(provider = %self.provider_id,
                            failures = state.consecutive_failures, error = %err,
                            "Circuit opened; requests to this provider fail fast");
                    }
                    state.open_until =
                        Some(Instant::now() + seconds(self.config.circuit_breaker_cooldown_s));
                    metrics::circuit_state(&self.provider_id, CircuitState::Open);
                }
            }
            _ => {
                if state.open_until.is_some() {
                    metrics::circuit_state(&self.provider_id, CircuitState::Closed);
                    tracing::info!(provider = %self.provider_id, "Circuit closed; upstream answers again");
                }
                *state = BreakerState::default();
            }
        }
    }

    /// Runs `attempt` under the timeout, retrying temporary failures.
    async fn call<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let timeout = seconds(self.config.timeout_s);
        let mut retry = 0;
        loop {
            self.admit()?;
            let outcome = match tokio::time::timeout(timeout, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "provider '{}' did not answer within {} seconds",
                        self.provider_id, self.config.timeout_s
                    ),
                )),
            };
            let err = match outcome {
                Ok(value) => {
                    self.record(Ok(()));
                    return Ok(value);
                }
                Err(err) => err,
            };
            metrics::provider_error(&self.provider_id, err.kind());
            self.record(Err(&err));
            let Some(delay) = self.config.retry_delay(&err, retry) else {
                return Err(if retry > 0 {
                    err.with_context("attempts", (retry + 1).to_string())
                } else {
                    err
                });
            };
            tracing::debug!(provider = %self.provider_id, error = %err, retry = retry + 1,
                delay_ms = delay.as_millis() as u64, "Retrying after a temporary failure");
            metrics::provider_retry(&self.provider_id);
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// Ends a started stream with an error when it stays silent too long.
    fn idle_limited<T: Send + 'static>(
        &self,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        let limit = seconds(self.config.stream_idle_timeout_s);
        let message = format!(
            "provider '{}' sent nothing for {} seconds; the stream was ended",
            self.provider_id, self.config.stream_idle_timeout_s
        );
        let provider_id: Arc<str> = self.provider_id.as_str().into();
        futures::stream::unfold(Some(stream), move |state| {
            let message = message.clone();
            let provider_id = provider_id.clone();
            async move {
                let mut stream = state?;
                match tokio::time::timeout(limit, stream.next()).await {
                    Ok(Some(item)) => Some((item, Some(stream))),
                    Ok(None) => None,
                    Err(_) => {
                        metrics::provider_error(&provider_id, ErrorKind::Timeout);
                        Some((Err(Error::new(ErrorKind::Timeout, message)), None))
                    }
                }
            }
        })
        .boxed()
    }
}

#[async_trait]
impl InferenceProvider for Resilient {
    async fn register_model(&self, model: &Model) -> Result<()> {
        self.inner.register_model(model).await
    }

    async fn unregister_model(&self, model: &Model) -> Result<()> {
        self.inner.unregister_model(model).await
    }

    async fn chat_completion(
        &self,
        model: &Model,
        request: ChatCompletionRequest,
    ) -> Result<ChatStream> {
        let stream = self
            .call(|| self.inner.chat_completion(model, request.clone()))
            .await?;
        Ok(self.idle_limited(stream))
    }

    async fn completion(
        &self,
        model: &Model,
        request: CompletionRequest,
    ) -> Result<CompletionStream> {
        let stream = self
            .call(|| self.inner.completion(model, request.clone()))
            .await?;
        Ok(self.idle_limited(stream))
    }

    async fn embeddings(&self, model: &Model, request: EmbeddingsRequest) -> Result<Embeddings> {
        self.call(|| self.inner.embeddings(model, request.clone()))
            .await
    }

    async fn rerank(&self, model: &Model, request: RerankRequest) -> Result<RerankResponse> {
        self.call(|| self.inner.rerank(model, request.clone()))
            .await
    }

    fn forwards_openai(&self) -> bool {
        self.inner.forwards_openai()
    }

    async fn openai_chat_completion(
        &self,
        model: &Model,
        request: OpenAiChatCompletionRequest,
    ) -> Result<ForwardedReply> {
        let reply = self
            .call(|| self.inner.openai_chat_completion(model, request.clone()))
            .await?;
        Ok(self.limit_reply(reply))
    }

    async fn openai_completion(
        &self,
        model: &Model,
        request: OpenAiCompletionRequest,
    ) -> Result<ForwardedReply> {
        let reply = self
            .call(|| self.inner.openai_completion(model, request.clone()))
            .await?;
        Ok(self.limit_reply(reply))
    }

    async fn openai_embeddings(
        &self,
        model: &Model,
        request: OpenAiEmbeddingsRequest,
    ) -> Result<OpenAiEmbeddingsResponse> {
        self.call(|| self.inner.openai_embeddings(model, request.clone()))
            .await
    }

    async fn list_provider_models(&self) -> Option<Result<Vec<ProviderModel>>> {
        let timeout = seconds(self.config.timeout_s);
        match tokio::time::timeout(timeout, self.inner.list_provider_models()).await {
            Ok(listed) => listed,
            Err(_) => Some(Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "provider '{}' did not list its models within {} seconds",
                    self.provider_id, self.config.timeout_s
                ),
            ))),
        }
    }

    async fn health(&self) -> HealthInfo {
        self.inner.health().await
    }
}

impl Resilient {
    fn limit_reply(&self, reply: ForwardedReply) -> ForwardedReply {
        match reply {
            ForwardedReply::Json(value) => ForwardedReply::Json(value),
            ForwardedReply::Stream(stream) => ForwardedReply::Stream(self.idle_limited(stream)),
        }
    }
}

#[cfg(test)]
#[path = "resilience_tests.rs"]
mod tests;
