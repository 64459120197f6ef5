//! The HTTP transport (axum): routes, error bodies, SSE framing and the generated OpenAPI
//! document.
//!
//! Handlers extract, call one `Stack` function, and map the result. This crate sees only the
//! core traits and types: it must never name a provider or the distribution assembler.

mod auth;
pub mod error;
mod limits;
mod metrics;
mod provider_data;
mod routes;
mod sse;
pub mod table;
mod trace;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use llama_stack_core::Error;
use llama_stack_core::limits::RequestLimits;
use llama_stack_core::quota::{self, Quota, QuotaClient};
use llama_stack_stack::Stack;

pub use auth::with_auth;
pub use metrics::with_metrics;
use routes::{
    agents, anthropic, files, inference, inspect, memory, models, openai, prompts, responses,
    safety, vector_stores,
};
pub use table::{RouteEntry, RouteTable};
pub use trace::with_trace_context;

/// Largest request body accepted by default (`server.limits.max_body_bytes`): a chat with long
/// documents fits; a runaway upload does not.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Every API's routes, in the order `/v1/inspect/routes` lists them.
fn table() -> RouteTable {
    let table = RouteTable::default();
    let table = inspect::declare(table);
    let table = models::declare(table);
    let table = inference::declare(table);
    let table = routes::rerank::declare(table);
    let table = openai::declare(table);
    let table = anthropic::declare(table);
    let table = memory::declare(table);
    let table = vector_stores::declare(table);
    let table = safety::declare(table);
    let table = agents::declare(table);
    let table = responses::declare(table);
    let table = prompts::declare(table);
    let table = routes::batches::declare(table);
    files::declare(table)
}

/// Every route the server answers, from the route table.
pub fn route_entries() -> &'static [RouteEntry] {
    static ENTRIES: OnceLock<Vec<RouteEntry>> = OnceLock::new();
    ENTRIES.get_or_init(|| table().entries())
}

/// The OpenAPI document, from the route table.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (paths, schemas) = table().into_openapi_parts();
    let mut components = utoipa::openapi::ComponentsBuilder::new();
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Llama Stack")
                .description(Some("Llama Stack APIs served by llama-stack-rs."))
                .version(env!("CARGO_PKG_VERSION"))
                .license(Some(
                    utoipa::openapi::LicenseBuilder::new()
                        .name(env!("CARGO_PKG_LICENSE"))
                        .identifier(Some(env!("CARGO_PKG_LICENSE")))
                        .build(),
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components.build()))
        .build()
}

pub fn openapi_json() -> String {
    openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

async fn not_found(method: Method, uri: Uri) -> Response {
    let err = Error::not_found(format!("Route {method} {} not found", uri.path()));
    let mut response = error::Classic::response_for(&err);
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

async fn serve_openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
        .into_response()
}

/// The application router over a built stack, with the default request limits.
pub fn router(stack: Arc<Stack>) -> Router {
    router_with(stack, &RequestLimits::default())
}

/// The application router with run.yaml's `server.limits`.
pub fn router_with(stack: Arc<Stack>, limits: &RequestLimits) -> Router {
    table()
        .into_router(limits.max_upload_bytes)
        .route("/openapi.json", get(serve_openapi))
        .route("/metrics", get(metrics::serve_metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(provider_data::scope))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        // Body extractors read the other limits from here.
        .layer(axum::Extension(Arc::new(limits.clone())))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(stack)
}

/// `router` with the browser playground (`server.playground`) at `/playground`. Apply it after
/// [`with_auth`] and [`with_quota`]: the page must load before its user has a token (it asks
/// for one when the API answers 401), and its static files are not API calls. It is not in the
/// route table, so neither the OpenAPI document nor `/v1/inspect/routes` lists it.
pub fn with_playground(router: Router) -> Router {
    router.merge(llama_stack_playground::router())
}

static DRAINING: AtomicBool = AtomicBool::new(false);

/// Marks the server as shutting down (or, with `false`, serving again): `/v1/ready` then
/// answers 503 so that load balancers stop sending it new work while in-flight requests finish.
pub fn set_draining(draining: bool) {
    DRAINING.store(draining, Ordering::SeqCst);
}

/// Whether [`set_draining`] marked the server as shutting down.
pub fn draining() -> bool {
    DRAINING.load(Ordering::SeqCst)
}

/// The client's address. A listener whose `Addr` is `PeerAddr` (plain or TLS) hands it to
/// handlers through `into_make_service_with_connect_info::<PeerAddr>`.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// `router` with every request but the health and version checks counted against `quota`
/// first; over the budget the answer is 429 with `Retry-After`.
pub fn with_quota(router: Router, quota: Arc<Quota>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(quota, count_request))
}

async fn count_request(
    axum::extract::State(quota): axum::extract::State<Arc<Quota>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if quota::exempt(request.uri().path()) {
        return next.run(request).await;
    }
    let ip = request
        .extensions()
        .get::<axum::extract::ConnectInfo<PeerAddr>>()
        .map(|info| info.0.0.ip())
        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    // Inside `with_auth`, an authenticated request counts against its principal.
    let client = match llama_stack_core::access::current_user() {
        Some(user) => QuotaClient::Principal(user.principal),
        None => QuotaClient::Anonymous(ip),
    };
    match quota.admit(&client).await {
        Ok(()) => next.run(request).await,
        Err(err) => error::OpenAiError::from(err).into_response(),
    }
}

/// Collapses repeated slashes, so a client base URL ending in `/` (`//v1/models`) still routes.
pub fn normalize_path(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.contains("//") {
        let mut collapsed = String::with_capacity(path.len());
        for c in path.chars() {
            if !(c == '/' && collapsed.ends_with('/')) {
                collapsed.push(c);
            }
        }
        let rebuilt = match request.uri().query() {
            Some(q) => format!("{collapsed}?{q}"),
            None => collapsed,
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_matches_the_openapi_document() {
        let doc = openapi();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut listed: Vec<(String, String)> = route_entries()
            .iter()
            .map(|r| (r.method.to_string(), r.path.clone()))
            .collect();
        listed.sort();
        let before = listed.len();
        listed.dedup();
        assert_eq!(before, listed.len(), "a route is declared twice");
        assert_eq!(documented, listed);
    }

    /// Sends every declared route (path parameters filled in) to the router over a stack with
    /// no providers: each must reach its handler, not the fallback that answers unknown routes.
    #[tokio::test]
    async fn every_declared_route_is_served() {
        use tower::ServiceExt;
        let store = Arc::new(routes::files::tests::NoStore);
        let services = llama_stack_stack::Services::over(&[], store, None);
        let stack = Stack::new(Default::default(), vec![], services);
        let app = router(Arc::new(stack));
        let fallback = |method: &str, path: &str| format!("Route {method} {path} not found");
        for entry in route_entries() {
            let path = entry
                .path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let request = Request::builder()
                .method(entry.method)
                .uri(&path)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains(&fallback(entry.method, &path)),
                "{} {path} reached the fallback: {text}",
                entry.method
            );
        }
        let unknown = Request::builder()
            .uri("/v1/not-a-route")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(unknown).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(String::from_utf8_lossy(&body).contains(&fallback("GET", "/v1/not-a-route")));
    }

    /// Every `{name}` of a path is documented as a path parameter, and nothing else is: a
    /// query parameter documented as part of the path sends generated clients and fuzzers to
    /// URLs the server does not serve.
    #[test]
    fn path_parameters_match_the_path_templates() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut wrong = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let mut wanted: Vec<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            wanted.sort();
            for (method, op) in item.as_object().unwrap() {
                let mut documented: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .filter_map(|p| p["name"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                documented.sort();
                if documented != wanted {
                    wrong.push(format!("{method} {path}: {documented:?}, want {wanted:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Every operation documents every status an error kind maps to, on either error flavour.
    #[test]
    fn every_operation_documents_the_error_statuses() {
        let doc = openapi();
        for (path, item) in &doc.paths.paths {
            for op in [&item.get, &item.post, &item.put, &item.delete]
                .into_iter()
                .flatten()
            {
                for kind in llama_stack_core::ErrorKind::ALL {
                    for status in [error::classic_status(kind), error::openai_status(kind)] {
                        assert!(
                            op.responses.responses.contains_key(status.as_str()),
                            "{path}: {status} ({kind:?}) is not documented"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn committed_openapi_document_is_current() {
        let committed = include_str!("../../../docs/openapi.json");
        assert!(
            committed.trim() == openapi_json().trim(),
            "docs/openapi.json is stale: regenerate it with `llama-stack openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn double_slashes_are_collapsed() {
        let req = Request::builder()
            .uri("http://h//v1//models?x=1")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(normalize_path(req).uri(), "/v1/models?x=1");
    }
}
