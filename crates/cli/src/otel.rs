//! OpenTelemetry trace export over OTLP/HTTP (protobuf), configured by the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` variables. Without
//! either there is no exporter and no OpenTelemetry layer, so tracing costs what it did before.

use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// Whether the environment asks for trace export.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The exporting layer and the provider to flush at exit, when export is configured. A
/// misconfiguration is reported and export left off: the server itself still works.
pub fn init<S>() -> Option<(impl Layer<S>, SdkTracerProvider)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    if !wanted() {
        return None;
    }
    let client = match Client::new() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("OTLP trace export is off: {err}");
            return None;
        }
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        // Only protobuf is built in: a JSON or gRPC setting in the environment is not honoured.
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OTLP trace export is off: {err}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("llama-stack");
    }
    // The batch processor reads OTEL_BSP_* (schedule delay, queue size) itself.
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource.build())
        .with_id_generator(RequestTraceIds::default())
        .build();
    Some((layer(&provider), provider))
}

/// The layer that hands spans to `provider`.
fn layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("llama-stack"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        // Only spans: log lines stay in the log rather than travelling again as span events
        // (they can quote request content, and would multiply the export's size).
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()))
}

/// Sends what is still queued; called once the server stopped.
pub fn shutdown(provider: &SdkTracerProvider) {
    if let Err(err) = provider.shutdown() {
        eprintln!("OTLP trace export: flushing at exit failed: {err}");
    }
}

/// The exporter's HTTP client: the server's async reqwest (rustls on ring) driven by a one-thread
/// runtime of its own, since the SDK's batch processor exports from a plain thread, and the
/// server's runtime is stopped before the last flush.
#[derive(Debug)]
struct Client {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn new() -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()?;
        // The standard variable, in milliseconds; the SDK applies it only to clients it builds.
        let timeout = std::env::var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .ok()
            .and_then(|ms| ms.trim().parse().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis);
        Ok(Client {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            runtime,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Client {
    async fn send_bytes(
        &self,
        request: http::Request<opentelemetry_http::Bytes>,
    ) -> Result<http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let answer = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = response.headers().clone();
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        });
        answer.await?
    }
}

/// A root span started for a request takes the request's trace id (the one its logs and
/// upstream `traceparent` carry) rather than a random one; anything else is random.
#[derive(Debug, Default)]
struct RequestTraceIds(RandomIdGenerator);

impl IdGenerator for RequestTraceIds {
    fn new_trace_id(&self) -> TraceId {
        llama_stack_core::trace::current()
            .and_then(|c| TraceId::from_hex(c.trace_id()).ok())
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use llama_stack_core::trace::TraceContext;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Debug, Default)]
    struct Recorded(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Recorded {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// The spans `f` ends, exported as the server's layer exports them.
    fn exported(f: impl FnOnce()) -> Vec<SpanData> {
        let recorded = Recorded::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(recorded.clone())
            .with_id_generator(RequestTraceIds::default())
            .build();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer(&provider)), f);
        recorded.0.lock().unwrap().clone()
    }

    fn request_with_child(context: &TraceContext) {
        let span = context.span();
        let _entered = span.enter();
        tracing::error_span!("child").in_scope(|| tracing::error!("not exported"));
    }

    fn by_name<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans.iter().find(|s| s.name == name).expect(name)
    }

    #[test]
    fn the_request_span_joins_the_callers_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::from_headers(Some(parent.as_bytes()), None);
        let spans = exported(|| request_with_child(&context));
        let request = by_name(&spans, "request");
        assert_eq!(
            request.span_context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(request.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(request.parent_span_is_remote);
        let child = by_name(&spans, "child");
        assert_eq!(child.parent_span_id, request.span_context.span_id());
        assert!(child.events.is_empty());
        assert_eq!(
            child.span_context.trace_id(),
            request.span_context.trace_id()
        );
    }

    #[test]
    fn a_new_root_takes_the_trace_id_the_request_logs() {
        let context = TraceContext::from_headers(None, None);
        let spans = exported(|| request_with_child(&context));
        let request = by_name(&spans, "request");
        assert_eq!(
            request.span_context.trace_id().to_string(),
            context.trace_id()
        );
        assert_eq!(request.parent_span_id, SpanId::INVALID);
        let child = by_name(&spans, "child");
        assert_eq!(
            child.span_context.trace_id(),
            request.span_context.trace_id()
        );
        // Outside a request, ids are random.
        let other = exported(|| tracing::error_span!("background").in_scope(|| {}));
        assert_ne!(
            by_name(&other, "background")
                .span_context
                .trace_id()
                .to_string(),
            context.trace_id()
        );
    }
}
