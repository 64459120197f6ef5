//! Request ids and W3C trace context (`traceparent`): who a log line belongs to, and the trace
//! a remote provider's request joins.
//!
//! A transport builds a [`TraceContext`] from the request's headers (or metadata), runs the
//! request inside [`with_trace`] and the context's [`TraceContext::span`]; the span puts both ids
//! on every log line, and the task-local lets a provider client send [`outgoing_traceparent`].
//! Both follow the request's task only: work spawned for a request goes through [`carry`].

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tracing::Instrument;

/// The request id header, read from the client and always answered.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The W3C trace context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A client-chosen request id longer than this, or with characters outside visible ASCII, is
/// replaced: it ends up in every log line and in a response header.
const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    request_id: String,
    /// 32 lowercase hex digits, never all zero.
    trace_id: String,
    /// The `traceparent` flags byte, kept so that a caller's sampling decision travels on.
    flags: String,
    /// The caller's span id, when a valid `traceparent` came: the exported request span's parent.
    parent_id: Option<String>,
}

/// One request's ids. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext(Arc<Inner>);

impl TraceContext {
    /// The context of a request that sent `traceparent` and `x-request-id` (either may be
    /// absent or malformed: then a fresh id stands in).
    pub fn from_headers(traceparent: Option<&[u8]>, request_id: Option<&[u8]>) -> Self {
        let parent = traceparent
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(parse_traceparent);
        let (trace_id, flags, parent_id) = match parent {
            Some(p) => (p.trace_id, p.flags, Some(p.parent_id)),
            // A new root: sampled, so that an upstream that honours the flag records it.
            None => (random_hex(16), "01".to_string(), None),
        };
        let request_id = request_id
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|id| valid_request_id(id))
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        TraceContext(Arc::new(Inner {
            request_id,
            trace_id,
            flags,
            parent_id,
        }))
    }

    pub fn request_id(&self) -> &str {
        &self.0.request_id
    }

    pub fn trace_id(&self) -> &str {
        &self.0.trace_id
    }

    /// A `traceparent` for a request sent on this one's behalf: same trace, new span id.
    pub fn child_traceparent(&self) -> String {
        format!("00-{}-{}-{}", self.0.trace_id, random_hex(8), self.0.flags)
    }

    /// The span a request runs in. ERROR level so that it is enabled under any filter that
    /// lets a line through at all: a `RUST_LOG=warn` server still tags its warnings.
    pub fn span(&self) -> tracing::Span {
        let span = tracing::error_span!(
            target: "llama_stack::request",
            "request",
            request_id = %self.0.request_id,
            trace_id = %self.0.trace_id,
        );
        self.join_exported_trace(&span);
        span
    }

    /// Makes the span exported over OTLP (when an exporter is installed; otherwise both calls
    /// find no OpenTelemetry layer and do nothing) carry this request's trace id, so that the
    /// exported trace, the logs and the upstream `traceparent` all agree.
    fn join_exported_trace(&self, span: &tracing::Span) {
        use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let Ok(trace_id) = TraceId::from_hex(&self.0.trace_id) else {
            return;
        };
        match self.0.parent_id.as_deref().map(SpanId::from_hex) {
            Some(Ok(parent)) => {
                let flags = u8::from_str_radix(&self.0.flags, 16).unwrap_or(1);
                let remote = SpanContext::new(
                    trace_id,
                    parent,
                    TraceFlags::new(flags),
                    true,
                    Default::default(),
                );
                let _ =
                    span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
            }
            // A root span gets its trace id from the exporter's id generator, which reads the
            // current request's context: build the span now, inside it.
            _ => in_scope(self, || {
                span.context();
            }),
        }
    }
}

/// The fields of a valid version-00 `traceparent`.
#[derive(Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

/// Parses `00-<32 hex>-<16 hex>-<2 hex>`. All-zero ids and version `ff` are invalid (W3C
/// trace-context §3.2); a later version is read by its first four fields, as the spec asks.
pub fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let value = value.trim();
    let mut parts = value.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    ok.then(|| TraceParent {
        trace_id: trace_id.to_string(),
        parent_id: parent_id.to_string(),
        flags: flags.to_string(),
    })
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// `bytes` random bytes as hex, never all zero (v4 UUIDs carry fixed version bits).
fn random_hex(bytes: usize) -> String {
    let random = uuid::Uuid::new_v4();
    random.simple().to_string()[..bytes * 2].to_string()
}

tokio::task_local! {
    static TRACE: TraceContext;
}

/// Runs `future` with `context` as the current request's trace context.
pub async fn with_trace<F: Future>(context: TraceContext, future: F) -> F::Output {
    TRACE.scope(context, future).await
}

/// Runs `f` with `context` current: for code polled outside the request's future, such as a
/// streamed response body.
pub fn in_scope<R>(context: &TraceContext, f: impl FnOnce() -> R) -> R {
    TRACE.sync_scope(context.clone(), f)
}

/// The current request's trace context, if code runs for a request.
pub fn current() -> Option<TraceContext> {
    TRACE.try_with(Clone::clone).ok()
}

/// The `traceparent` to send upstream from the current request (none outside a request).
pub fn outgoing_traceparent() -> Option<String> {
    current().map(|c| c.child_traceparent())
}

/// `future` carrying the current request's span and trace context, for `tokio::spawn`: a spawned
/// task starts with neither. Both are captured when `carry` is called, not when first polled.
pub fn carry<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let context = current();
    async move {
        match context {
            Some(context) => with_trace(context, future).await,
            None => future.await,
        }
    }
    .instrument(span)
}

/// A response body polled inside its request's span and trace context: a stream's chunks are
/// produced after the handler returned, outside the request's future.
pub struct TracedBody<B> {
    inner: B,
    span: tracing::Span,
    context: TraceContext,
}

impl<B> TracedBody<B> {
    pub fn new(inner: B, span: tracing::Span, context: TraceContext) -> Self {
        TracedBody {
            inner,
            span,
            context,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        in_scope(&this.context, || {
            std::pin::Pin::new(&mut this.inner).poll_frame(cx)
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_parsing_follows_the_spec() {
        let p = parse_traceparent(PARENT).unwrap();
        assert_eq!(p.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.parent_id, "00f067aa0ba902b7");
        assert_eq!(p.flags, "01");
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // A future version may append fields.
        assert!(
            parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x")
                .is_some()
        );
    }

    #[test]
    fn incoming_ids_are_kept_and_missing_or_bad_ones_generated() {
        let c = TraceContext::from_headers(Some(PARENT.as_bytes()), Some(b"req-1"));
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.request_id(), "req-1");
        let child = parse_traceparent(&c.child_traceparent()).unwrap();
        assert_eq!(child.trace_id, c.trace_id());
        assert_ne!(child.parent_id, "00f067aa0ba902b7");

        let fresh = TraceContext::from_headers(Some(b"garbage"), Some(b"has space"));
        assert!(parse_traceparent(&fresh.child_traceparent()).is_some());
        assert_ne!(fresh.request_id(), "has space");
        let other = TraceContext::from_headers(None, None);
        assert_ne!(fresh.trace_id(), other.trace_id());
        assert_ne!(fresh.request_id(), other.request_id());
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        let c = TraceContext::from_headers(None, Some(long.as_bytes()));
        assert_ne!(c.request_id(), long);
    }

    #[tokio::test]
    async fn context_is_current_in_scope_and_carried_into_spawned_tasks() {
        assert!(outgoing_traceparent().is_none());
        let c = TraceContext::from_headers(Some(PARENT.as_bytes()), None);
        let seen = with_trace(c.clone(), async {
            let spawned = tokio::spawn(carry(async { current() })).await.unwrap();
            (current(), spawned, outgoing_traceparent())
        })
        .await;
        assert_eq!(seen.0.as_ref(), Some(&c));
        assert_eq!(seen.1.as_ref(), Some(&c));
        assert!(seen.2.unwrap().contains(c.trace_id()));
        assert!(current().is_none());
    }
}
