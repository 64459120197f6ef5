//! Request ids and trace context on gRPC, as on HTTP: each call runs in a span carrying its
//! `request_id` and `trace_id` (from `x-request-id` and `traceparent` metadata when the client
//! sent them), and the response's initial metadata says `x-request-id`.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use llama_stack_core::trace::{
    REQUEST_ID_HEADER, TRACEPARENT_HEADER, TraceContext, TracedBody, with_trace,
};
use tonic::codegen::http;
use tracing::Instrument;

#[derive(Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Traced { inner }
    }
}

#[derive(Clone)]
pub struct Traced<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let headers = request.headers();
        let context = TraceContext::from_headers(
            headers.get(TRACEPARENT_HEADER).map(|v| v.as_bytes()),
            headers.get(REQUEST_ID_HEADER).map(|v| v.as_bytes()),
        );
        let span = context.span();
        // The inner service may start work as soon as it is called: call it inside the scope.
        let answer = {
            let _entered = span.enter();
            llama_stack_core::trace::in_scope(&context, || self.inner.call(request))
        };
        Box::pin(async move {
            let mut response = with_trace(context.clone(), answer)
                .instrument(span.clone())
                .await?;
            if let Ok(value) = http::HeaderValue::from_str(context.request_id()) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            // Streamed replies are produced while the body is polled, after this future ended.
            Ok(response.map(|body| tonic::body::Body::new(TracedBody::new(body, span, context))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use llama_stack_core::trace::{current, parse_traceparent};
    use tower::{Layer, ServiceExt};

    use super::*;

    #[tokio::test]
    async fn calls_run_with_their_ids_and_answer_the_request_id() {
        let service = TraceLayer.layer(tower::service_fn(|_: http::Request<()>| async {
            let child = current().unwrap().child_traceparent();
            let mut response = http::Response::new(tonic::body::Body::empty());
            response
                .headers_mut()
                .insert("child", http::HeaderValue::from_str(&child).unwrap());
            Ok::<_, Infallible>(response)
        }));
        let request = http::Request::builder()
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("x-request-id", "grpc-1")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.headers()["x-request-id"], "grpc-1");
        let child = parse_traceparent(response.headers()["child"].to_str().unwrap()).unwrap();
        assert_eq!(child.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
