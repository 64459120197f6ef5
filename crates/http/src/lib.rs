//! The HTTP transport (axum): routes, error bodies, SSE framing and the generated OpenAPI
//! document.
//!
//! Handlers extract, call one `Stack` function, and map the result. This crate sees only the
//! core traits and types: it must never name a provider or the distribution assembler.

pub mod error;
mod provider_data;
mod routes;
mod sse;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use llama_stack_core::{Api, Error, Stack};
use utoipa::OpenApi;

use routes::{agents, files, inference, inspect, memory, models, openai, safety, vector_stores};

/// Largest request body accepted (a chat with long documents fits; a runaway upload does not).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// One served route, for `GET /v1/inspect/routes`.
pub struct RouteEntry {
    pub method: &'static str,
    pub path: &'static str,
    /// The API whose providers serve it; `None` for routes always present.
    pub api: Option<Api>,
}

const fn route(method: &'static str, path: &'static str, api: Option<Api>) -> RouteEntry {
    RouteEntry { method, path, api }
}

/// Every route the server answers. A test checks it against the OpenAPI document.
pub const ROUTES: &[RouteEntry] = &[
    route("GET", "/v1/health", None),
    route("GET", "/v1/version", None),
    route("GET", "/v1/providers", None),
    route("GET", "/v1/providers/{provider_id}", None),
    route("GET", "/v1/inspect/routes", None),
    route("GET", "/v1/models", Some(Api::Inference)),
    route("POST", "/v1/models", Some(Api::Inference)),
    route("GET", "/v1/models/{model_id}", Some(Api::Inference)),
    route("DELETE", "/v1/models/{model_id}", Some(Api::Inference)),
    route("GET", "/v1/openai/v1/models", Some(Api::Inference)),
    route(
        "POST",
        "/v1/inference/chat-completion",
        Some(Api::Inference),
    ),
    route("POST", "/v1/inference/completion", Some(Api::Inference)),
    route("POST", "/v1/inference/embeddings", Some(Api::Inference)),
    route("POST", "/v1/chat/completions", Some(Api::Inference)),
    route("POST", "/v1/completions", Some(Api::Inference)),
    route(
        "POST",
        "/v1/openai/v1/chat/completions",
        Some(Api::Inference),
    ),
    route("POST", "/v1/openai/v1/completions", Some(Api::Inference)),
    route("POST", "/v1/embeddings", Some(Api::Inference)),
    route("POST", "/v1/openai/v1/embeddings", Some(Api::Inference)),
    route("GET", "/v1/vector-dbs", Some(Api::VectorIo)),
    route("POST", "/v1/vector-dbs", Some(Api::VectorIo)),
    route("GET", "/v1/vector-dbs/{vector_db_id}", Some(Api::VectorIo)),
    route(
        "DELETE",
        "/v1/vector-dbs/{vector_db_id}",
        Some(Api::VectorIo),
    ),
    route("POST", "/v1/vector-io/insert", Some(Api::VectorIo)),
    route("POST", "/v1/vector-io/query", Some(Api::VectorIo)),
    route("POST", "/v1/vector_stores", Some(Api::VectorIo)),
    route("GET", "/v1/vector_stores", Some(Api::VectorIo)),
    route(
        "GET",
        "/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "DELETE",
        "/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/vector_stores/{vector_store_id}/search",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/vector_stores/{vector_store_id}/files",
        Some(Api::VectorIo),
    ),
    route(
        "GET",
        "/v1/vector_stores/{vector_store_id}/files",
        Some(Api::VectorIo),
    ),
    route(
        "GET",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route(
        "DELETE",
        "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route("POST", "/v1/openai/v1/vector_stores", Some(Api::VectorIo)),
    route("GET", "/v1/openai/v1/vector_stores", Some(Api::VectorIo)),
    route(
        "GET",
        "/v1/openai/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/openai/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "DELETE",
        "/v1/openai/v1/vector_stores/{vector_store_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/openai/v1/vector_stores/{vector_store_id}/search",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/openai/v1/vector_stores/{vector_store_id}/files",
        Some(Api::VectorIo),
    ),
    route(
        "GET",
        "/v1/openai/v1/vector_stores/{vector_store_id}/files",
        Some(Api::VectorIo),
    ),
    route(
        "GET",
        "/v1/openai/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/openai/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route(
        "DELETE",
        "/v1/openai/v1/vector_stores/{vector_store_id}/files/{file_id}",
        Some(Api::VectorIo),
    ),
    route(
        "POST",
        "/v1/tool-runtime/rag-tool/insert",
        Some(Api::ToolRuntime),
    ),
    route(
        "POST",
        "/v1/tool-runtime/rag-tool/query",
        Some(Api::ToolRuntime),
    ),
    route("POST", "/v1/tool-runtime/invoke", Some(Api::ToolRuntime)),
    route("GET", "/v1/tool-runtime/list-tools", Some(Api::ToolRuntime)),
    route("GET", "/v1/toolgroups", Some(Api::ToolRuntime)),
    route("POST", "/v1/toolgroups", Some(Api::ToolRuntime)),
    route(
        "GET",
        "/v1/toolgroups/{toolgroup_id}",
        Some(Api::ToolRuntime),
    ),
    route(
        "DELETE",
        "/v1/toolgroups/{toolgroup_id}",
        Some(Api::ToolRuntime),
    ),
    route("GET", "/v1/tools", Some(Api::ToolRuntime)),
    route("GET", "/v1/tools/{tool_name}", Some(Api::ToolRuntime)),
    route("GET", "/v1/shields", Some(Api::Safety)),
    route("POST", "/v1/shields", Some(Api::Safety)),
    route("GET", "/v1/shields/{identifier}", Some(Api::Safety)),
    route("DELETE", "/v1/shields/{identifier}", Some(Api::Safety)),
    route("POST", "/v1/safety/run-shield", Some(Api::Safety)),
    route("POST", "/v1/moderations", Some(Api::Safety)),
    route("POST", "/v1/openai/v1/moderations", Some(Api::Safety)),
    route("POST", "/v1/agents", Some(Api::Agents)),
    route("GET", "/v1/agents", Some(Api::Agents)),
    route("GET", "/v1/agents/{agent_id}", Some(Api::Agents)),
    route("DELETE", "/v1/agents/{agent_id}", Some(Api::Agents)),
    route("POST", "/v1/agents/{agent_id}/session", Some(Api::Agents)),
    route("GET", "/v1/agents/{agent_id}/sessions", Some(Api::Agents)),
    route(
        "GET",
        "/v1/agents/{agent_id}/session/{session_id}",
        Some(Api::Agents),
    ),
    route(
        "DELETE",
        "/v1/agents/{agent_id}/session/{session_id}",
        Some(Api::Agents),
    ),
    route(
        "POST",
        "/v1/agents/{agent_id}/session/{session_id}/turn",
        Some(Api::Agents),
    ),
    route(
        "POST",
        "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/resume",
        Some(Api::Agents),
    ),
    route(
        "GET",
        "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}",
        Some(Api::Agents),
    ),
    route(
        "GET",
        "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/step/{step_id}",
        Some(Api::Agents),
    ),
    route("POST", "/v1/files", Some(Api::Files)),
    route("GET", "/v1/files", Some(Api::Files)),
    route("GET", "/v1/files/{file_id}", Some(Api::Files)),
    route("DELETE", "/v1/files/{file_id}", Some(Api::Files)),
    route("GET", "/v1/files/{file_id}/content", Some(Api::Files)),
    route("POST", "/v1/openai/v1/files", Some(Api::Files)),
    route("GET", "/v1/openai/v1/files", Some(Api::Files)),
    route("GET", "/v1/openai/v1/files/{file_id}", Some(Api::Files)),
    route("DELETE", "/v1/openai/v1/files/{file_id}", Some(Api::Files)),
    route(
        "GET",
        "/v1/openai/v1/files/{file_id}/content",
        Some(Api::Files),
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Llama Stack",
        description = "Llama Stack APIs served by llama-stack-rs."
    ),
    paths(
        inspect::health,
        inspect::version,
        inspect::list_providers,
        inspect::get_provider,
        inspect::list_routes,
        models::list_models,
        models::register_model,
        models::get_model,
        models::unregister_model,
        models::openai_list_models,
        inference::chat_completion,
        inference::completion,
        inference::embeddings,
        openai::chat_completions,
        openai::completions,
        openai::embeddings,
        memory::list_vector_dbs,
        memory::register_vector_db,
        memory::get_vector_db,
        memory::unregister_vector_db,
        memory::insert_chunks,
        memory::query_chunks,
        memory::rag_insert,
        memory::rag_query,
        memory::invoke_tool,
        memory::list_runtime_tools,
        memory::list_tool_groups,
        memory::register_tool_group,
        memory::get_tool_group,
        memory::unregister_tool_group,
        memory::list_tools,
        memory::get_tool,
        vector_stores::create,
        vector_stores::list,
        vector_stores::get,
        vector_stores::update,
        vector_stores::delete,
        vector_stores::search,
        vector_stores::attach_file,
        vector_stores::list_files,
        vector_stores::get_file,
        vector_stores::update_file,
        vector_stores::delete_file,
        files::upload,
        files::list,
        files::retrieve,
        files::remove,
        files::content,
        safety::list_shields,
        safety::register_shield,
        safety::get_shield,
        safety::unregister_shield,
        safety::run_shield,
        safety::moderations,
        agents::create_agent,
        agents::list_agents,
        agents::get_agent,
        agents::delete_agent,
        agents::create_session,
        agents::list_sessions,
        agents::get_session,
        agents::delete_session,
        agents::create_turn,
        agents::resume_turn,
        agents::get_turn,
        agents::get_step,
    )
)]
pub struct ApiDoc;

/// The OpenAPI document, with the `/v1/openai/v1` aliases listed too.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (alias, original) in [
        ("/v1/openai/v1/chat/completions", "/v1/chat/completions"),
        ("/v1/openai/v1/completions", "/v1/completions"),
        ("/v1/openai/v1/embeddings", "/v1/embeddings"),
        ("/v1/openai/v1/moderations", "/v1/moderations"),
        ("/v1/openai/v1/files", "/v1/files"),
        ("/v1/openai/v1/files/{file_id}", "/v1/files/{file_id}"),
        (
            "/v1/openai/v1/files/{file_id}/content",
            "/v1/files/{file_id}/content",
        ),
        ("/v1/openai/v1/vector_stores", "/v1/vector_stores"),
        (
            "/v1/openai/v1/vector_stores/{vector_store_id}",
            "/v1/vector_stores/{vector_store_id}",
        ),
        (
            "/v1/openai/v1/vector_stores/{vector_store_id}/search",
            "/v1/vector_stores/{vector_store_id}/search",
        ),
        (
            "/v1/openai/v1/vector_stores/{vector_store_id}/files",
            "/v1/vector_stores/{vector_store_id}/files",
        ),
        (
            "/v1/openai/v1/vector_stores/{vector_store_id}/files/{file_id}",
            "/v1/vector_stores/{vector_store_id}/files/{file_id}",
        ),
    ] {
        if let Some(item) = doc.paths.paths.get(original).cloned() {
            doc.paths.paths.insert(alias.to_string(), item);
        }
    }
    doc
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

/// The application router over a built stack.
pub fn router(stack: Arc<Stack>) -> Router {
    Router::new()
        .route("/v1/health", get(inspect::health))
        .route("/v1/version", get(inspect::version))
        .route("/v1/providers", get(inspect::list_providers))
        .route("/v1/providers/{provider_id}", get(inspect::get_provider))
        .route("/v1/inspect/routes", get(inspect::list_routes))
        .route(
            "/v1/models",
            get(models::list_models).post(models::register_model),
        )
        .route(
            "/v1/models/{*model_id}",
            get(models::get_model).delete(models::unregister_model),
        )
        .route("/v1/openai/v1/models", get(models::openai_list_models))
        .route(
            "/v1/inference/chat-completion",
            post(inference::chat_completion),
        )
        .route("/v1/inference/completion", post(inference::completion))
        .route("/v1/inference/embeddings", post(inference::embeddings))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/completions", post(openai::completions))
        .route(
            "/v1/openai/v1/chat/completions",
            post(openai::chat_completions),
        )
        .route("/v1/openai/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/openai/v1/embeddings", post(openai::embeddings))
        .route(
            "/v1/vector-dbs",
            get(memory::list_vector_dbs).post(memory::register_vector_db),
        )
        .route(
            "/v1/vector-dbs/{*vector_db_id}",
            get(memory::get_vector_db).delete(memory::unregister_vector_db),
        )
        .route("/v1/vector-io/insert", post(memory::insert_chunks))
        .route("/v1/vector-io/query", post(memory::query_chunks))
        .route("/v1/tool-runtime/rag-tool/insert", post(memory::rag_insert))
        .route("/v1/tool-runtime/rag-tool/query", post(memory::rag_query))
        .route("/v1/tool-runtime/invoke", post(memory::invoke_tool))
        .route(
            "/v1/tool-runtime/list-tools",
            get(memory::list_runtime_tools),
        )
        .route(
            "/v1/toolgroups",
            get(memory::list_tool_groups).post(memory::register_tool_group),
        )
        .route(
            "/v1/toolgroups/{*toolgroup_id}",
            get(memory::get_tool_group).delete(memory::unregister_tool_group),
        )
        .route("/v1/tools", get(memory::list_tools))
        .route("/v1/tools/{*tool_name}", get(memory::get_tool))
        .route(
            "/v1/shields",
            get(safety::list_shields).post(safety::register_shield),
        )
        .route(
            "/v1/shields/{*identifier}",
            get(safety::get_shield).delete(safety::unregister_shield),
        )
        .route("/v1/safety/run-shield", post(safety::run_shield))
        .route("/v1/moderations", post(safety::moderations))
        .route("/v1/openai/v1/moderations", post(safety::moderations))
        .route(
            "/v1/agents",
            post(agents::create_agent).get(agents::list_agents),
        )
        .route(
            "/v1/agents/{agent_id}",
            get(agents::get_agent).delete(agents::delete_agent),
        )
        .route(
            "/v1/agents/{agent_id}/session",
            post(agents::create_session),
        )
        .route("/v1/agents/{agent_id}/sessions", get(agents::list_sessions))
        .route(
            "/v1/agents/{agent_id}/session/{session_id}",
            get(agents::get_session).delete(agents::delete_session),
        )
        .route(
            "/v1/agents/{agent_id}/session/{session_id}/turn",
            post(agents::create_turn),
        )
        .route(
            "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/resume",
            post(agents::resume_turn),
        )
        .route(
            "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}",
            get(agents::get_turn),
        )
        .route(
            "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/step/{step_id}",
            get(agents::get_step),
        )
        .merge(vector_store_routes("/v1"))
        .merge(vector_store_routes("/v1/openai/v1"))
        .merge(files::routes("/v1"))
        .merge(files::routes("/v1/openai/v1"))
        .route("/openapi.json", get(serve_openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(provider_data::scope))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(stack)
}

/// The vector store routes under one prefix (`/v1` or `/v1/openai/v1`).
fn vector_store_routes(prefix: &str) -> Router<Arc<Stack>> {
    use axum::routing::delete;
    Router::new()
        .route(
            &format!("{prefix}/vector_stores"),
            post(vector_stores::create).get(vector_stores::list),
        )
        .route(
            &format!("{prefix}/vector_stores/{{vector_store_id}}"),
            get(vector_stores::get)
                .post(vector_stores::update)
                .merge(delete(vector_stores::delete)),
        )
        .route(
            &format!("{prefix}/vector_stores/{{vector_store_id}}/search"),
            post(vector_stores::search),
        )
        .route(
            &format!("{prefix}/vector_stores/{{vector_store_id}}/files"),
            post(vector_stores::attach_file).get(vector_stores::list_files),
        )
        .route(
            &format!("{prefix}/vector_stores/{{vector_store_id}}/files/{{file_id}}"),
            get(vector_stores::get_file)
                .post(vector_stores::update_file)
                .merge(delete(vector_stores::delete_file)),
        )
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
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut listed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        listed.sort();
        assert_eq!(documented, listed);
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
