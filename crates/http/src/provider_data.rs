//! `X-LlamaStack-Provider-Data` (§1.0): per-request provider secrets, made visible to the
//! providers for the duration of the request.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use llama_stack_core::request_context::{ProviderData, with_provider_data};

pub const HEADER: &str = "x-llamastack-provider-data";

/// Runs the request with its provider data in scope. A header that is not a JSON object is
/// ignored, as upstream does; its value is never logged, since it carries secrets.
pub async fn scope(request: Request, next: Next) -> Response {
    let data = match request.headers().get(HEADER) {
        None => ProviderData::default(),
        Some(value) => ProviderData::from_header(value.as_bytes()).unwrap_or_else(|| {
            tracing::warn!(
                "Ignoring an X-LlamaStack-Provider-Data header that is not a JSON object"
            );
            ProviderData::default()
        }),
    };
    with_provider_data(data, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use llama_stack_core::request_context::provider_data_string;
    use tower::ServiceExt;

    use super::*;

    async fn seen(header: Option<&str>) -> String {
        let app = Router::new()
            .route(
                "/",
                get(|| async { provider_data_string("together_api_key").unwrap_or_default() }),
            )
            .layer(axum::middleware::from_fn(scope));
        let mut request = Request::builder().uri("/");
        if let Some(value) = header {
            request = request.header(HEADER, value);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_header_reaches_code_running_for_the_request() {
        assert_eq!(seen(Some(r#"{"together_api_key": "k"}"#)).await, "k");
        assert_eq!(seen(Some("{}")).await, "");
        assert_eq!(seen(Some("not json")).await, "");
        assert_eq!(seen(None).await, "");
    }
}
