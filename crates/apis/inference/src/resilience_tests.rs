use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use llama_stack_types::{
    ChatCompletionResponseStreamChunk, ChatEventType, ContentDelta, Message, ModelType,
};

use super::*;

/// A provider that answers from a script: each call takes the next outcome (the last one
/// repeats), after an optional delay.
struct Scripted {
    outcomes: Mutex<VecDeque<std::result::Result<(), Error>>>,
    calls: AtomicUsize,
    delay: Duration,
    /// A stream that sends one event and then stays silent.
    stalls: bool,
}

impl Scripted {
    fn new(outcomes: Vec<std::result::Result<(), Error>>) -> Arc<Self> {
        Arc::new(Scripted {
            outcomes: Mutex::new(outcomes.into()),
            calls: AtomicUsize::new(0),
            delay: Duration::ZERO,
            stalls: false,
        })
    }

    fn next(&self) -> std::result::Result<(), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut outcomes = self.outcomes.lock().unwrap();
        if outcomes.len() > 1 {
            outcomes.pop_front().unwrap()
        } else {
            outcomes.front().cloned().unwrap_or(Ok(()))
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl InferenceProvider for Scripted {
    async fn register_model(&self, _: &Model) -> Result<()> {
        Ok(())
    }

    async fn chat_completion(&self, _: &Model, _: ChatCompletionRequest) -> Result<ChatStream> {
        tokio::time::sleep(self.delay).await;
        self.next()?;
        let first = Ok(ChatCompletionResponseStreamChunk::new(
            ChatEventType::Start,
            ContentDelta::text(""),
        ));
        if self.stalls {
            return Ok(futures::stream::iter([first])
                .chain(futures::stream::pending())
                .boxed());
        }
        Ok(futures::stream::iter([first]).boxed())
    }

    async fn completion(&self, _: &Model, _: CompletionRequest) -> Result<CompletionStream> {
        Err(Error::unsupported("not scripted"))
    }
}

fn model() -> Model {
    Model {
        identifier: "p/m".into(),
        provider_resource_id: "m".into(),
        provider_id: "p".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: ModelType::Llm,
        owner: None,
    }
}

fn request() -> ChatCompletionRequest {
    ChatCompletionRequest {
        model_id: "m".into(),
        messages: vec![Message::user("hi")],
        sampling_params: None,
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: Some(true),
        logprobs: None,
        tool_config: None,
    }
}

fn fast() -> ResilienceConfig {
    ResilienceConfig {
        timeout_s: 5.0,
        stream_idle_timeout_s: 5.0,
        max_retries: 2,
        initial_backoff_s: 0.001,
        max_backoff_s: 0.004,
        max_retry_after_s: 1.0,
        circuit_breaker_failures: 0,
        circuit_breaker_cooldown_s: 30.0,
    }
}

fn unreachable() -> Error {
    Error::new(ErrorKind::Upstream, "connection refused").set_temporary(true)
}

async fn chat(layer: &Arc<dyn InferenceProvider>) -> Result<usize> {
    let stream = layer.chat_completion(&model(), request()).await?;
    Ok(stream.count().await)
}

#[tokio::test]
async fn temporary_failures_are_retried_until_success() {
    let inner = Scripted::new(vec![Err(unreachable()), Err(unreachable()), Ok(())]);
    let layer = Resilient::wrap(inner.clone(), "p", fast());
    assert_eq!(chat(&layer).await.unwrap(), 1);
    assert_eq!(inner.calls(), 3);
}

#[tokio::test]
async fn retries_stop_at_max_retries_and_say_how_many_attempts() {
    let inner = Scripted::new(vec![Err(unreachable())]);
    let layer = Resilient::wrap(inner.clone(), "p", fast());
    let err = chat(&layer).await.unwrap_err();
    assert_eq!(inner.calls(), 3);
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.to_string().contains("attempts: 3"), "{err}");
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    for err in [
        Error::invalid("bad request"),
        Error::new(ErrorKind::Upstream, "500 from upstream"),
    ] {
        let inner = Scripted::new(vec![Err(err)]);
        let layer = Resilient::wrap(inner.clone(), "p", fast());
        assert!(chat(&layer).await.is_err());
        assert_eq!(inner.calls(), 1);
    }
}

#[tokio::test]
async fn retry_after_is_honoured_unless_too_long() {
    let limited =
        Error::new(ErrorKind::RateLimited, "429").with_retry_after(Duration::from_millis(50));
    let inner = Scripted::new(vec![Err(limited), Ok(())]);
    let layer = Resilient::wrap(inner.clone(), "p", fast());
    let started = Instant::now();
    chat(&layer).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(inner.calls(), 2);

    let too_long =
        Error::new(ErrorKind::RateLimited, "429").with_retry_after(Duration::from_secs(60));
    let inner = Scripted::new(vec![Err(too_long)]);
    let layer = Resilient::wrap(inner.clone(), "p", fast());
    let err = chat(&layer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert_eq!(inner.calls(), 1);
}

#[tokio::test]
async fn a_slow_attempt_times_out_without_retry() {
    let inner = Arc::new(Scripted {
        outcomes: Mutex::new(vec![Ok(())].into()),
        calls: AtomicUsize::new(0),
        delay: Duration::from_secs(60),
        stalls: false,
    });
    let config = ResilienceConfig {
        timeout_s: 0.05,
        ..fast()
    };
    let layer = Resilient::wrap(inner.clone(), "slow", config);
    let err = chat(&layer).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.message().contains("'slow'"), "{err}");
    assert_eq!(inner.calls(), 0, "the attempt was cut before it finished");
}

#[tokio::test]
async fn a_silent_stream_ends_with_a_timeout_error() {
    let inner = Arc::new(Scripted {
        outcomes: Mutex::new(vec![Ok(())].into()),
        calls: AtomicUsize::new(0),
        delay: Duration::ZERO,
        stalls: true,
    });
    let config = ResilienceConfig {
        stream_idle_timeout_s: 0.05,
        ..fast()
    };
    let layer = Resilient::wrap(inner.clone(), "p", config);
    let items: Vec<_> = layer
        .chat_completion(&model(), request())
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(inner.calls(), 1, "a started stream is never retried");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_closes_after_a_good_probe() {
    let inner = Scripted::new(vec![
        Err(unreachable()),
        Err(unreachable()),
        Err(unreachable()),
        Ok(()),
    ]);
    let config = ResilienceConfig {
        max_retries: 0,
        circuit_breaker_failures: 3,
        circuit_breaker_cooldown_s: 0.1,
        ..fast()
    };
    let layer = Resilient::wrap(inner.clone(), "down", config);
    for _ in 0..3 {
        assert!(chat(&layer).await.is_err());
    }
    assert_eq!(inner.calls(), 3);
    let err = chat(&layer).await.unwrap_err();
    assert_eq!(
        inner.calls(),
        3,
        "an open breaker does not call the provider"
    );
    assert!(err.message().contains("unavailable"), "{err}");
    assert!(err.message().contains("connection refused"), "{err}");
    assert!(err.retry_after().is_some());

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(chat(&layer).await.unwrap(), 1, "the probe goes through");
    assert_eq!(chat(&layer).await.unwrap(), 1, "and the breaker is closed");
    assert_eq!(inner.calls(), 5);
}

#[tokio::test]
async fn client_errors_do_not_open_the_breaker() {
    let inner = Scripted::new(vec![Err(Error::invalid("bad"))]);
    let config = ResilienceConfig {
        circuit_breaker_failures: 1,
        ..fast()
    };
    let layer = Resilient::wrap(inner.clone(), "p", config);
    for _ in 0..3 {
        assert_eq!(
            chat(&layer).await.unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
    }
    assert_eq!(inner.calls(), 3);
}

#[test]
fn backoff_grows_is_capped_and_jittered() {
    let config = ResilienceConfig {
        initial_backoff_s: 1.0,
        max_backoff_s: 4.0,
        ..ResilienceConfig::default()
    };
    for _ in 0..50 {
        let first = config.backoff(0).as_secs_f64();
        assert!((0.5..=1.0).contains(&first), "{first}");
        let third = config.backoff(2).as_secs_f64();
        assert!((2.0..=4.0).contains(&third), "{third}");
        let capped = config.backoff(20).as_secs_f64();
        assert!((2.0..=4.0).contains(&capped), "{capped}");
    }
}

#[test]
fn config_ranges_are_checked() {
    assert!(ResilienceConfig::default().issues("resilience").is_empty());
    let bad = ResilienceConfig {
        timeout_s: 0.0,
        max_retries: 99,
        initial_backoff_s: 10.0,
        max_backoff_s: 1.0,
        ..ResilienceConfig::default()
    };
    let paths: Vec<String> = bad.issues("r").into_iter().map(|i| i.path).collect();
    assert_eq!(
        paths,
        ["r.timeout_s", "r.max_retries", "r.initial_backoff_s"],
        "{paths:?}"
    );
}

/// The value of one sample of `/metrics`: `name{...provider="<provider>"...}`.
fn sample(name: &str, provider: &str) -> Option<f64> {
    let text = llama_stack_core::metrics::render();
    let wanted = format!("provider=\"{provider}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

#[tokio::test]
async fn errors_retries_and_the_breaker_state_are_metrics() {
    use llama_stack_core::metrics::{CIRCUIT_STATE, PROVIDER_ERRORS, PROVIDER_RETRIES};
    let inner = Scripted::new(vec![Err(unreachable()), Err(unreachable()), Ok(())]);
    let config = ResilienceConfig {
        max_retries: 1,
        circuit_breaker_failures: 2,
        circuit_breaker_cooldown_s: 0.05,
        ..fast()
    };
    let layer = Resilient::wrap(inner.clone(), "metered", config);
    assert_eq!(sample(CIRCUIT_STATE, "metered"), Some(0.0));
    assert!(chat(&layer).await.is_err());
    assert_eq!(sample(PROVIDER_ERRORS, "metered"), Some(2.0));
    assert_eq!(sample(PROVIDER_RETRIES, "metered"), Some(1.0));
    assert_eq!(sample(CIRCUIT_STATE, "metered"), Some(2.0), "open");
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(chat(&layer).await.unwrap(), 1);
    assert_eq!(sample(CIRCUIT_STATE, "metered"), Some(0.0), "closed again");
}
