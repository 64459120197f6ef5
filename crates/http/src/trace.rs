//! Request ids and trace context on HTTP: each request runs in a span carrying its
//! `request_id` and `trace_id` (from `x-request-id` and `traceparent` when the client sent
//! them), and the response says `x-request-id`.

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use llama_stack_core::trace::{
    REQUEST_ID_HEADER, TRACEPARENT_HEADER, TraceContext, TracedBody, with_trace,
};
use tracing::Instrument;

/// `router` with every request traced. Apply it last, so that it is the outermost layer: auth's
/// and quota's refusals then carry an id too.
pub fn with_trace_context(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(scope))
}

async fn scope(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let context = TraceContext::from_headers(
        headers.get(TRACEPARENT_HEADER).map(HeaderValue::as_bytes),
        headers.get(REQUEST_ID_HEADER).map(HeaderValue::as_bytes),
    );
    let span = context.span();
    let response = with_trace(context.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let (mut parts, body) = response.into_parts();
    // The id was either validated as visible ASCII or generated, so it is a valid value.
    if let Ok(value) = HeaderValue::from_str(context.request_id()) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    let body = axum::body::Body::new(TracedBody::new(body, span, context));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::get;
    use llama_stack_core::trace::{current, parse_traceparent};
    use tower::ServiceExt;

    use super::*;

    async fn call(headers: &[(&str, &str)]) -> (String, String) {
        let app = with_trace_context(Router::new().route(
            "/",
            get(|| async { current().map(|c| c.child_traceparent()).unwrap_or_default() }),
        ));
        let mut request = Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let id = response.headers()[REQUEST_ID_HEADER]
            .to_str()
            .unwrap()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        (id, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ids_are_taken_from_the_request_or_made() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (id, child) = call(&[("traceparent", parent), ("x-request-id", "abc-1")]).await;
        assert_eq!(id, "abc-1");
        let child = parse_traceparent(&child).unwrap();
        assert_eq!(child.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

        let (first, child) = call(&[]).await;
        assert!(parse_traceparent(&child).is_some());
        let (second, _) = call(&[]).await;
        assert!(!first.is_empty() && first != second);
    }
}
