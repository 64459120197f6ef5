//! Process metrics, rendered in the Prometheus text format for `GET /metrics`.
//!
//! Every crate records through the helpers here, so the API crates and providers need neither
//! a transport nor a metrics crate of their own, and every name and label is spelled in one
//! place (README's "Metrics" lists them). Label values are bounded: route templates, method
//! names, status codes, error kinds, and the ids of registered models and configured
//! providers, never raw paths or client input.
//!
//! The recorder is installed on first use; [`start`] also runs its upkeep, which keeps
//! histogram samples from piling up between scrapes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{Error, ErrorKind};

/// The media type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Seconds buckets of every `_seconds` histogram: from a cached lookup to a long generation on
/// a CPU.
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often an expected rejection of one kind is logged at most.
pub const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub const HTTP_REQUESTS: &str = "llama_stack_http_requests_total";
pub const HTTP_DURATION: &str = "llama_stack_http_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "llama_stack_http_requests_in_flight";
pub const GRPC_REQUESTS: &str = "llama_stack_grpc_requests_total";
pub const GRPC_DURATION: &str = "llama_stack_grpc_request_duration_seconds";
pub const INFERENCE_REQUESTS: &str = "llama_stack_inference_requests_total";
pub const TIME_TO_FIRST_TOKEN: &str = "llama_stack_inference_time_to_first_token_seconds";
pub const GENERATION_DURATION: &str = "llama_stack_inference_generation_duration_seconds";
pub const PROMPT_TOKENS: &str = "llama_stack_inference_prompt_tokens_total";
pub const COMPLETION_TOKENS: &str = "llama_stack_inference_completion_tokens_total";
pub const ENGINE_QUEUE_DEPTH: &str = "llama_stack_engine_queue_depth";
pub const ENGINE_BATCH_SIZE: &str = "llama_stack_engine_batch_size";
pub const SPECULATIVE_TOKENS: &str = "llama_stack_engine_speculative_tokens_total";
pub const PROVIDER_ERRORS: &str = "llama_stack_provider_errors_total";
pub const PROVIDER_RETRIES: &str = "llama_stack_provider_retries_total";
pub const CIRCUIT_STATE: &str = "llama_stack_provider_circuit_breaker_state";
pub const VECTOR_QUERY_DURATION: &str = "llama_stack_vector_query_duration_seconds";
pub const AGENT_TURNS: &str = "llama_stack_agent_turns_total";
pub const TOOL_CALLS: &str = "llama_stack_agent_tool_calls_total";
pub const REJECTIONS: &str = "llama_stack_rejections_total";

fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("Another metrics recorder is installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

/// Installs the recorder and runs its upkeep every few seconds for the life of the process.
pub fn start() {
    static UPKEEP: OnceLock<()> = OnceLock::new();
    UPKEEP.get_or_init(|| {
        let handle = handle().clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    handle.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "Metrics upkeep did not start; scrapes still drain samples");
        }
    });
}

/// Every metric recorded so far, in the Prometheus text exposition format.
pub fn render() -> String {
    handle().render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        "Seconds from an HTTP request's arrival to the end of its response body (a stream's last event)"
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being answered now");
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls answered, by method and status code"
    );
    describe_histogram!(
        GRPC_DURATION,
        "Seconds from a gRPC call's arrival to the end of its response"
    );
    describe_counter!(
        INFERENCE_REQUESTS,
        "Generations started (chat and text completions, every API), by model and provider"
    );
    describe_histogram!(
        TIME_TO_FIRST_TOKEN,
        "Seconds from calling the provider to the first generated text or tool call"
    );
    describe_histogram!(
        GENERATION_DURATION,
        "Seconds from calling the provider to the end of the generation"
    );
    describe_counter!(PROMPT_TOKENS, "Prompt tokens read, by model and provider");
    describe_counter!(
        COMPLETION_TOKENS,
        "Completion tokens generated, by model and provider"
    );
    describe_gauge!(
        ENGINE_QUEUE_DEPTH,
        "Requests waiting in the local engine's queue, by model"
    );
    describe_gauge!(
        ENGINE_BATCH_SIZE,
        "Sequences the local engine decodes together, by model"
    );
    describe_counter!(
        SPECULATIVE_TOKENS,
        "Tokens the local engine drafted by prompt lookup, and those the model kept, by model and outcome (drafted, accepted)"
    );
    describe_counter!(
        PROVIDER_ERRORS,
        "Failed attempts of calls to an inference provider, by provider and error kind"
    );
    describe_counter!(
        PROVIDER_RETRIES,
        "Retries of inference provider calls after a temporary failure"
    );
    describe_gauge!(
        CIRCUIT_STATE,
        "Circuit breaker of an inference provider: 0 closed, 1 half-open (probing), 2 open (failing fast)"
    );
    describe_histogram!(
        VECTOR_QUERY_DURATION,
        "Seconds a vector store search takes, query embedding included, by search mode"
    );
    describe_counter!(AGENT_TURNS, "Agent turns run, by outcome");
    describe_counter!(
        TOOL_CALLS,
        "Server-side tool calls made by agent turns, by tool and outcome"
    );
    describe_counter!(
        REJECTIONS,
        "Requests refused before any work: quota (rate_limited), a full queue (overloaded), authentication (unauthorized)"
    );
}

/// An HTTP method as a label: the standard ones, else `other`.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

static HTTP_IN_FLIGHT_NOW: AtomicI64 = AtomicI64::new(0);

/// An HTTP request being answered: counted in [`HTTP_IN_FLIGHT`] until dropped.
pub struct HttpInFlight(());

/// Counts a request in flight until the guard drops.
pub fn http_request_started() -> HttpInFlight {
    handle();
    let now = HTTP_IN_FLIGHT_NOW.fetch_add(1, Ordering::Relaxed) + 1;
    gauge!(HTTP_IN_FLIGHT).set(now as f64);
    HttpInFlight(())
}

impl Drop for HttpInFlight {
    fn drop(&mut self) {
        let now = HTTP_IN_FLIGHT_NOW.fetch_sub(1, Ordering::Relaxed) - 1;
        gauge!(HTTP_IN_FLIGHT).set(now as f64);
    }
}

/// HTTP requests being answered now, for the shutdown log.
pub fn http_in_flight() -> i64 {
    HTTP_IN_FLIGHT_NOW.load(Ordering::Relaxed)
}

/// One answered HTTP request; `route` is the matched route template.
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    handle();
    counter!(HTTP_REQUESTS, "method" => method, "route" => route.to_string(),
        "status" => status.to_string())
    .increment(1);
    histogram!(HTTP_DURATION, "method" => method, "route" => route.to_string())
        .record(elapsed.as_secs_f64());
}

/// One answered gRPC call; `method` is a served method path, `code` the status name.
pub fn grpc_request(method: &str, code: &'static str, elapsed: Duration) {
    handle();
    counter!(GRPC_REQUESTS, "method" => method.to_string(), "code" => code).increment(1);
    histogram!(GRPC_DURATION, "method" => method.to_string()).record(elapsed.as_secs_f64());
}

/// One generation's timings, from the provider call to its end.
pub struct Generation {
    model: String,
    provider: String,
    started: Instant,
    first_token: bool,
    finished: bool,
}

impl Generation {
    /// A generation of `model` (its identifier) by `provider` (its provider id), starting now.
    pub fn start(model: &str, provider: &str) -> Generation {
        handle();
        counter!(INFERENCE_REQUESTS, "model" => model.to_string(),
            "provider" => provider.to_string())
        .increment(1);
        Generation {
            model: model.to_string(),
            provider: provider.to_string(),
            started: Instant::now(),
            first_token: false,
            finished: false,
        }
    }

    fn labels(&self) -> [(&'static str, String); 2] {
        [
            ("model", self.model.clone()),
            ("provider", self.provider.clone()),
        ]
    }

    /// The first text or tool call arrived; later calls do nothing.
    pub fn first_token(&mut self) {
        if !self.first_token {
            self.first_token = true;
            histogram!(TIME_TO_FIRST_TOKEN, &self.labels())
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    /// The tokens the generation read and wrote, when its provider reports them.
    pub fn tokens(&self, prompt: u64, completion: u64) {
        counter!(PROMPT_TOKENS, &self.labels()).increment(prompt);
        counter!(COMPLETION_TOKENS, &self.labels()).increment(completion);
    }

    /// The generation ended (its stream finished, or its whole answer came back); later calls
    /// do nothing. A generation dropped before it ends (a client that hung up) is not timed.
    pub fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            histogram!(GENERATION_DURATION, &self.labels())
                .record(self.started.elapsed().as_secs_f64());
        }
    }
}

/// The local engine's queue and batch after a decoding step.
pub fn engine_state(model: &str, queue_depth: usize, batch_size: usize) {
    handle();
    gauge!(ENGINE_QUEUE_DEPTH, "model" => model.to_string()).set(queue_depth as f64);
    gauge!(ENGINE_BATCH_SIZE, "model" => model.to_string()).set(batch_size as f64);
}

/// One speculative step of the local engine: `drafted` tokens read, `accepted` of them kept.
pub fn speculative_tokens(model: &str, drafted: usize, accepted: usize) {
    handle();
    counter!(SPECULATIVE_TOKENS, "model" => model.to_string(), "outcome" => "drafted")
        .increment(drafted as u64);
    counter!(SPECULATIVE_TOKENS, "model" => model.to_string(), "outcome" => "accepted")
        .increment(accepted as u64);
}

/// A failed attempt of a call to inference provider `provider`.
pub fn provider_error(provider: &str, kind: ErrorKind) {
    handle();
    counter!(PROVIDER_ERRORS, "provider" => provider.to_string(), "kind" => kind.as_str())
        .increment(1);
}

/// A retry of a call to inference provider `provider`.
pub fn provider_retry(provider: &str) {
    handle();
    counter!(PROVIDER_RETRIES, "provider" => provider.to_string()).increment(1);
}

/// The states of a provider's circuit breaker, as [`CIRCUIT_STATE`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    HalfOpen,
    Open,
}

pub fn circuit_state(provider: &str, state: CircuitState) {
    handle();
    let value = match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
    };
    gauge!(CIRCUIT_STATE, "provider" => provider.to_string()).set(value);
}

/// One vector store search in `mode` (`vector`, `keyword`, `hybrid`).
pub fn vector_query(mode: &'static str, elapsed: Duration) {
    handle();
    histogram!(VECTOR_QUERY_DURATION, "mode" => mode).record(elapsed.as_secs_f64());
}

/// One agent turn ended: `complete`, `awaiting_input` (paused for client tools) or `failed`.
pub fn agent_turn(outcome: &'static str) {
    handle();
    counter!(AGENT_TURNS, "outcome" => outcome).increment(1);
}

/// One server-side tool call of an agent turn; `tool` is a tool the turn offered, or
/// `unknown` for a name the model made up.
pub fn tool_call(tool: &str, ok: bool) {
    handle();
    let outcome = if ok { "ok" } else { "error" };
    counter!(TOOL_CALLS, "tool" => tool.to_string(), "outcome" => outcome).increment(1);
}

/// At most one log line per interval; counts what it held back.
struct LogThrottle {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    const fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written at `now`.
    fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.interval => {
                *held += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held))
            }
        }
    }
}

static REJECTION_LOGS: [LogThrottle; 3] = [
    LogThrottle::new(REJECTION_LOG_INTERVAL),
    LogThrottle::new(REJECTION_LOG_INTERVAL),
    LogThrottle::new(REJECTION_LOG_INTERVAL),
];

/// Counts and logs `err` when it is an expected rejection (over quota, a full queue, no valid
/// credentials) and answers true; other errors are left to the caller. Such rejections come
/// in bursts under load, so they are logged as one WARN per kind per
/// [`REJECTION_LOG_INTERVAL`] with the number held back, not as a line per request.
pub fn rejection(transport: &'static str, err: &Error) -> bool {
    let slot = match err.kind() {
        ErrorKind::RateLimited => 0,
        ErrorKind::Overloaded => 1,
        ErrorKind::Unauthorized => 2,
        _ => return false,
    };
    handle();
    let kind = err.kind().as_str();
    counter!(REJECTIONS, "transport" => transport, "kind" => kind).increment(1);
    if let Some(held_back) = REJECTION_LOGS[slot].admit(Instant::now()) {
        tracing::warn!(
            transport,
            kind,
            error = %err,
            similar_not_logged = held_back,
            "Request rejected (logged at most once every {} s per kind; {REJECTIONS} counts them all)",
            REJECTION_LOG_INTERVAL.as_secs()
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|p| l.contains(p)))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .next()
    }

    #[test]
    fn recorded_metrics_render_as_prometheus_text() {
        http_request(
            "GET",
            "/v1/models/{model_id}",
            200,
            Duration::from_millis(30),
        );
        grpc_request(
            "/llama_stack.v1.ModelsService/ListModels",
            "OK",
            Duration::ZERO,
        );
        let mut generation = Generation::start("test-model", "test-provider");
        generation.first_token();
        generation.first_token();
        generation.tokens(7, 3);
        generation.finish();
        generation.finish();
        let text = render();
        assert!(
            text.contains(&format!("# TYPE {HTTP_REQUESTS} counter")),
            "{text}"
        );
        assert!(
            sample(
                &text,
                HTTP_REQUESTS,
                &["route=\"/v1/models/{model_id}\"", "status=\"200\""]
            )
            .is_some_and(|v| v >= 1.0),
            "{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {HTTP_DURATION} histogram")),
            "{text}"
        );
        assert!(
            text.contains(&format!("{HTTP_DURATION}_bucket{{")) && text.contains("le=\"0.05\""),
            "{text}"
        );
        let model = ["model=\"test-model\""];
        assert_eq!(sample(&text, PROMPT_TOKENS, &model), Some(7.0), "{text}");
        assert_eq!(
            sample(&text, COMPLETION_TOKENS, &model),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{TIME_TO_FIRST_TOKEN}_count"), &model),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{GENERATION_DURATION}_count"), &model),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains(&format!("# HELP {GRPC_REQUESTS}")), "{text}");
    }

    #[test]
    fn only_expected_rejections_are_counted() {
        assert!(rejection(
            "test",
            &Error::new(ErrorKind::RateLimited, "over")
        ));
        assert!(rejection(
            "test",
            &Error::new(ErrorKind::RateLimited, "over")
        ));
        assert!(rejection(
            "test",
            &Error::overloaded("busy", Duration::from_secs(1))
        ));
        assert!(!rejection("test", &Error::internal("boom")));
        assert!(!rejection("test", &Error::invalid("bad")));
        let text = render();
        let kind = |k: ErrorKind| format!("kind=\"{}\"", k.as_str());
        assert_eq!(
            sample(
                &text,
                REJECTIONS,
                &["transport=\"test\"", &kind(ErrorKind::RateLimited)]
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                REJECTIONS,
                &["transport=\"test\"", &kind(ErrorKind::Overloaded)]
            ),
            Some(1.0)
        );
        assert!(sample(&text, REJECTIONS, &[&kind(ErrorKind::Internal)]).is_none());
    }

    #[test]
    fn a_throttled_log_writes_once_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(throttle.admit(t), Some(0));
        assert_eq!(throttle.admit(t + Duration::from_secs(1)), None);
        assert_eq!(throttle.admit(t + Duration::from_secs(9)), None);
        assert_eq!(throttle.admit(t + Duration::from_secs(10)), Some(2));
        assert_eq!(throttle.admit(t + Duration::from_secs(11)), None);
    }

    #[test]
    fn the_in_flight_gauge_follows_its_guards() {
        let before = http_in_flight();
        let a = http_request_started();
        let b = http_request_started();
        assert!(http_in_flight() >= before + 2);
        drop(a);
        drop(b);
        // Other tests may run requests at the same time; the guards return what they took.
        assert!(http_in_flight() >= 0);
    }

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("BREW"), "other");
    }
}
