//! A scripted upstream that records every request, and helpers to build a runtime through its
//! registered spec.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use llama_stack_core::Result;
use llama_stack_core::request_context::{ProviderData, with_provider_data};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry};
use llama_stack_tools::ToolRuntimeProvider;
use llama_stack_types::{ToolGroup, ToolInvocationResult};
use serde_json::{Map, Value};

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    /// The decoded query pairs, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the request body is JSON")
    }
}

#[derive(Clone)]
struct Script {
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<(StatusCode, String)>,
    delay: Duration,
}

/// An upstream on 127.0.0.1 that answers every request with `status` and `body`.
pub struct Upstream {
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Upstream {
    pub async fn answering(status: u16, body: impl Into<String>) -> Self {
        Self::start(status, body.into(), Duration::ZERO).await
    }

    /// An upstream that answers only after `delay`.
    pub async fn slow(delay: Duration) -> Self {
        Self::start(200, "{}".into(), delay).await
    }

    async fn start(status: u16, body: String, delay: Duration) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Script {
            received: received.clone(),
            answer: Arc::new((StatusCode::from_u16(status).unwrap(), body)),
            delay,
        };
        let app = Router::new().fallback(answer).with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Upstream {
            base_url: format!("http://{address}"),
            received,
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The one request the upstream received.
    pub fn only_request(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "{received:?}");
        received.into_iter().next().unwrap()
    }
}

async fn answer(
    State(script): State<Script>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let query = uri.query().map(url_pairs).unwrap_or_default();
    script.received.lock().unwrap().push(Received {
        method,
        path: uri.path().to_string(),
        query,
        headers,
        body,
    });
    tokio::time::sleep(script.delay).await;
    let (status, body) = &*script.answer;
    (
        *status,
        [("content-type", "application/json")],
        body.clone(),
    )
}

/// Decodes `a=b&c=d` as a URL's query is read.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://upstream/?{query}")).unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A base URL where nothing listens: a port bound, then released.
pub async fn unreachable_base_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    llama_stack_provider_tool_search::register(&mut registry);
    registry
}

/// Builds `provider_type` through its registered spec, after checking that it validates.
pub async fn build(provider_type: &str, config: Value) -> Arc<dyn ToolRuntimeProvider> {
    let registry = registry();
    let spec = registry.get(provider_type).expect("registered");
    let issues = (spec.validate)(&config);
    assert!(issues.is_empty(), "{issues:?}");
    let context = ProviderContext {
        provider_id: "search".into(),
        ..Default::default()
    };
    match (spec.build)(config, context).await {
        Ok(ProviderInstance::ToolRuntime(provider)) => provider,
        Ok(_) => panic!("{provider_type} built something other than a tool runtime provider"),
        Err(err) => panic!("{provider_type} did not build: {err}"),
    }
}

/// The config block's problems, as the paths they name.
pub fn issue_paths(provider_type: &str, config: Value) -> Vec<String> {
    let registry = registry();
    let spec = registry.get(provider_type).expect("registered");
    (spec.validate)(&config)
        .into_iter()
        .map(|issue| issue.path)
        .collect()
}

pub fn group(mcp_endpoint: Option<Value>) -> ToolGroup {
    ToolGroup {
        identifier: "builtin::websearch".into(),
        provider_resource_id: "builtin::websearch".into(),
        provider_id: "search".into(),
        resource_type: "tool_group".into(),
        mcp_endpoint,
        args: None,
        owner: None,
    }
}

pub fn kwargs(value: Value) -> Map<String, Value> {
    value.as_object().expect("kwargs are an object").clone()
}

pub async fn invoke(
    provider: &Arc<dyn ToolRuntimeProvider>,
    tool: &str,
    kwargs: Value,
) -> Result<ToolInvocationResult> {
    provider
        .invoke(&group(None), tool, &self::kwargs(kwargs))
        .await
}

/// Invokes inside a request whose `X-LlamaStack-Provider-Data` is `provider_data`.
pub async fn invoke_with(
    provider: &Arc<dyn ToolRuntimeProvider>,
    provider_data: Value,
    tool: &str,
    kwargs: Value,
) -> Result<ToolInvocationResult> {
    let data = ProviderData::from_header(provider_data.to_string().as_bytes()).unwrap();
    with_provider_data(data, invoke(provider, tool, kwargs)).await
}

/// The text content of a successful result.
pub fn content(result: &ToolInvocationResult) -> &str {
    assert_eq!(result.error_message, None, "{result:?}");
    assert_eq!(result.error_code, None);
    result
        .content
        .as_ref()
        .and_then(Value::as_str)
        .expect("the content is a string")
}

/// The error message of a failed result, checking its code.
pub fn failure(result: &ToolInvocationResult, code: i64) -> &str {
    assert_eq!(result.content, None, "{result:?}");
    assert_eq!(result.error_code, Some(code), "{result:?}");
    result.error_message.as_deref().expect("an error message")
}
