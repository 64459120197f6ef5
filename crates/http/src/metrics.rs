//! `GET /metrics` and the layer that counts and times every HTTP request by its route template.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llama_stack_core::metrics;

/// The label of requests no route matched (404s of the fallback): one label, whatever the
/// path, so scanners cannot grow the label set.
pub const UNMATCHED: &str = "unmatched";

/// `router` with every request counted and timed. Apply it last, outside quota and auth, so
/// their refusals are counted too.
pub fn with_metrics(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(track))
}

pub(crate) async fn serve_metrics() -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
        .into_response()
}

async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let in_flight = metrics::http_request_started();
    let method = metrics::method_label(request.method().as_str());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let response = next.run(request).await;
    let done = Done {
        method,
        route,
        status: response.status().as_u16(),
        started,
        _in_flight: in_flight,
    };
    // A stream's duration is the whole stream's: the request is done when its body is.
    response.map(|body| {
        Body::new(Timed {
            inner: body,
            done: Some(done),
        })
    })
}

/// Records its request when dropped: after the body's last frame, or when the client hangs up.
struct Done {
    method: &'static str,
    route: String,
    status: u16,
    started: Instant,
    _in_flight: metrics::HttpInFlight,
}

impl Drop for Done {
    fn drop(&mut self) {
        metrics::http_request(
            self.method,
            &self.route,
            self.status,
            self.started.elapsed(),
        );
    }
}

struct Timed {
    inner: Body,
    done: Option<Done>,
}

impl HttpBody for Timed {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done = None;
        }
        polled
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
    use std::sync::Arc;

    use async_trait::async_trait;
    use axum::http::StatusCode;
    use llama_stack_core::{Error, MemoryStore, RegistryStore, Result};
    use llama_stack_stack::{Services, Stack};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;

    /// A metadata store that cannot be reached.
    struct Unreachable;

    #[async_trait]
    impl RegistryStore for Unreachable {
        async fn put(&self, _: &str, _: &str, _: &Value) -> Result<()> {
            Err(Error::internal("connection refused"))
        }
        async fn delete(&self, _: &str, _: &str) -> Result<bool> {
            Err(Error::internal("connection refused"))
        }
        async fn get(&self, _: &str, _: &str) -> Result<Option<Value>> {
            Err(Error::internal("connection refused"))
        }
        async fn list(&self, _: &str) -> Result<Vec<Value>> {
            Err(Error::internal("connection refused"))
        }
    }

    fn app(store: Arc<dyn RegistryStore>) -> Router {
        let services = Services::over(&[], store, None);
        let stack = Stack::new(Default::default(), vec![], services);
        with_metrics(crate::router(Arc::new(stack)))
    }

    async fn get(app: &Router, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .uri(path)
            .body(Body::empty())
            .expect("a valid request");
        let response = app.clone().oneshot(request).await.expect("an answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn requests_are_counted_by_route_template_and_status() {
        let app = app(Arc::new(MemoryStore::default()));
        let (status, _) = get(&app, "/v1/providers/metrics-test-provider").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = get(&app, "/v1/no-such-route/metrics-test").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, text) = get(&app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            text.contains(
                "llama_stack_http_requests_total{method=\"GET\",route=\"/v1/providers/{provider_id}\",status=\"400\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "llama_stack_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "llama_stack_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/providers/{provider_id}\",le=\"0.005\"}"
            ),
            "{text}"
        );
        assert!(!text.contains("metrics-test"), "raw paths are never labels");
    }

    #[tokio::test]
    async fn readiness_follows_the_store_and_the_shutdown() {
        let healthy = app(Arc::new(MemoryStore::default()));
        let (status, body) = get(&healthy, "/v1/ready").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            serde_json::json!({"status": "OK"})
        );

        let (status, body) = get(&app(Arc::new(Unreachable)), "/v1/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "Error");
        assert_eq!(body["failing"][0]["component"], "metadata_store");
        assert!(
            !body.to_string().contains("connection refused"),
            "the store's own error stays in the log"
        );

        crate::set_draining(true);
        let (status, body) = get(&healthy, "/v1/ready").await;
        crate::set_draining(false);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body.contains("\"component\":\"server\""), "{body}");
        let (status, _) = get(&healthy, "/v1/health").await;
        assert_eq!(status, StatusCode::OK, "liveness is not readiness");
    }
}
