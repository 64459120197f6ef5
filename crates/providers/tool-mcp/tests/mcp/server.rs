//! A real MCP server (rmcp's server side) on 127.0.0.1, over streamable HTTP (rmcp's axum
//! service) or over the legacy HTTP+SSE transport (rmcp no longer ships that server, so a small
//! axum bridge carries the JSON-RPC lines of an in-memory rmcp session as SSE events).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::routing::{get, post};
use futures::StreamExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const PNG: &str = "iVBORw0KGgo=";

/// One `tools/call` as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub tool: String,
    pub arguments: Map<String, Value>,
    /// The `x-api-key` header of the HTTP request that carried the call (streamable HTTP).
    pub api_key: Option<String>,
}

#[derive(Clone, Default)]
pub struct TestServer {
    pub calls: Arc<Mutex<Vec<Call>>>,
}

fn schema(value: Value) -> Arc<Map<String, Value>> {
    Arc::new(value.as_object().cloned().unwrap_or_default())
}

fn tools_page(cursor: Option<&str>) -> ListToolsResult {
    let empty = || schema(json!({"type": "object", "properties": {}}));
    match cursor {
        None => {
            let mut page = ListToolsResult::with_all_items(vec![
                Tool::new(
                    "add",
                    "Add two integers",
                    schema(json!({
                        "type": "object",
                        "properties": {
                            "a": {"type": "integer", "description": "First addend"},
                            "b": {"type": "integer", "default": 0}
                        },
                        "required": ["a"]
                    })),
                ),
                Tool::new("fail", "Always fails", empty()),
            ]);
            page.next_cursor = Some("page-2".into());
            page
        }
        Some(_) => ListToolsResult::with_all_items(vec![
            Tool::new("picture", "An image and a document", empty()),
            Tool::new(
                "whoami",
                "Says which session called",
                schema(json!({"type": "object", "properties": {"session_id": {"type": "string"}}})),
            ),
        ]),
    }
}

impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(tools_page(
            request.as_ref().and_then(|r| r.cursor.as_deref()),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = request.arguments.clone().unwrap_or_default();
        let api_key = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("x-api-key"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.calls.lock().unwrap().push(Call {
            tool: request.name.to_string(),
            arguments: arguments.clone(),
            api_key,
        });
        let result = match request.name.as_ref() {
            "add" => {
                let arg = |name| arguments.get(name).and_then(Value::as_i64);
                let Some(a) = arg("a") else {
                    return Err(ErrorData::invalid_params("a must be an integer", None));
                };
                if arguments.contains_key("session_id") {
                    return Err(ErrorData::invalid_params(
                        "unexpected argument session_id",
                        None,
                    ));
                }
                CallToolResult::success(vec![ContentBlock::text(
                    (a + arg("b").unwrap_or(0)).to_string(),
                )])
            }
            "fail" => CallToolResult::error(vec![ContentBlock::text("the disk is full")]),
            "picture" => CallToolResult::success(vec![
                ContentBlock::image(PNG, "image/png"),
                ContentBlock::embedded_text("file:///notes.txt", "some notes"),
            ]),
            "whoami" => CallToolResult::success(vec![ContentBlock::text(
                arguments
                    .get("session_id")
                    .and_then(Value::as_str)
                    .unwrap_or("nobody")
                    .to_string(),
            )]),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other}"),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

/// Serves `server` over streamable HTTP at `http://addr{path}`.
pub async fn streamable(server: TestServer, path: &str) -> SocketAddr {
    let service: StreamableHttpService<TestServer, LocalSessionManager> =
        StreamableHttpService::new(
            move || Ok(server.clone()),
            Default::default(),
            StreamableHttpServerConfig::default().with_sse_keep_alive(None),
        );
    serve(Router::new().nest_service(path, service)).await
}

type Writer = Arc<tokio::sync::Mutex<tokio::io::WriteHalf<tokio::io::DuplexStream>>>;
type Writers = Arc<Mutex<HashMap<String, Writer>>>;

#[derive(Clone)]
struct SseState {
    server: TestServer,
    writers: Writers,
    /// The `x-api-key` header of every request the SSE server received.
    api_keys: Arc<Mutex<Vec<Option<String>>>>,
}

/// Serves `server` over the legacy SSE transport: the stream at `http://addr{path}`, messages
/// posted to `/messages?session_id=...`. Returns the address and the `x-api-key` headers seen.
pub async fn sse(server: TestServer, path: &str) -> (SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let state = SseState {
        server,
        writers: Default::default(),
        api_keys: Default::default(),
    };
    let api_keys = state.api_keys.clone();
    let router = Router::new()
        .route(path, get(sse_stream))
        .route("/messages", post(sse_message))
        .with_state(state);
    (serve(router).await, api_keys)
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn sse_stream(
    State(state): State<SseState>,
    headers: HeaderMap,
) -> Sse<impl futures::Stream<Item = Result<Event, std::convert::Infallible>>> {
    state.api_keys.lock().unwrap().push(api_key(&headers));
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        if let Ok(running) = state.server.clone().serve(theirs).await {
            let _ = running.waiting().await;
        }
    });
    let (read, write) = tokio::io::split(ours);
    let id = format!("s{}", state.writers.lock().unwrap().len());
    state
        .writers
        .lock()
        .unwrap()
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(write)));
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?session_id={id}"));
    let messages = futures::stream::unfold(BufReader::new(read).lines(), |mut lines| async move {
        let line = lines.next_line().await.ok().flatten()?;
        Some((Event::default().event("message").data(line), lines))
    });
    Sse::new(
        futures::stream::once(async { endpoint })
            .chain(messages)
            .map(Ok),
    )
}

async fn sse_message(
    State(state): State<SseState>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    state.api_keys.lock().unwrap().push(api_key(&headers));
    let Some(id) = query.get("session_id") else {
        return StatusCode::BAD_REQUEST;
    };
    let Some(writer) = state.writers.lock().unwrap().get(id).cloned() else {
        return StatusCode::NOT_FOUND;
    };
    let written = writer
        .lock()
        .await
        .write_all(format!("{body}\n").as_bytes())
        .await;
    match written {
        Ok(()) => StatusCode::ACCEPTED,
        Err(_) => StatusCode::GONE,
    }
}
