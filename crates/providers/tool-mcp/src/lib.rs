//! `remote::model-context-protocol`: tool groups whose tools live on an MCP server, named by
//! the group's `mcp_endpoint.uri`. Tools are listed with `tools/list` and run with
//! `tools/call` over streamable HTTP, or over the legacy HTTP+SSE transport for endpoints
//! ending in `/sse` (and as a fallback either way, as upstream does).
//!
//! Per-request credentials come from the `mcp_headers` provider data,
//! `{"<endpoint uri>": {"<header>": "<value>"}}`.
//!
//! Depends on the core API and wire types only.

mod client;
mod mapping;
mod sse;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use llama_stack_core::request_context::provider_data_value;
use llama_stack_core::{
    Api, ConfigIssue, Error, ErrorKind, Result, config::CheckedConfig, config::load_config,
    config::validate_config,
};
use llama_stack_documents::{AddressClass, DocumentError};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};
use llama_stack_tools::ToolRuntimeProvider;
use llama_stack_types::{ToolDef, ToolGroup, ToolInvocationResult};
use reqwest::Url;
use reqwest::header::HeaderMap;
use rmcp::model::{CallToolRequestParams, ErrorCode};
use rmcp::service::ServiceError;
use serde::Deserialize;
use serde_json::{Map, Value};

use client::{Session, TransportKind, classify_service};

pub const PROVIDER_TYPE: &str = "remote::model-context-protocol";

/// `providers.tool_runtime[].config` of `remote::model-context-protocol`. Every field is
/// optional; the upstream config is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpRuntimeConfig {
    /// Time allowed for one exchange with an MCP server (connecting, then listing or running a
    /// tool), in seconds (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Let tool groups name MCP servers on loopback, private and link-local addresses
    /// (`localhost`, `10.x`, `169.254.x`, ...). Off by default, so registering a tool group
    /// cannot make the server reach services inside your network or cloud metadata endpoints.
    #[serde(default)]
    pub allow_private_addresses: bool,
}

fn default_timeout() -> f64 {
    30.0
}

pub const SAMPLE_CONFIG: &str = "timeout_seconds: 30\nallow_private_addresses: false\n";

/// How to allow an MCP server on a private address, for the refusal message.
const ALLOW_HINT: &str = "set allow_private_addresses: true in the remote::model-context-protocol provider config to allow it";

impl CheckedConfig for McpRuntimeConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(self.timeout_seconds > 0.0 && self.timeout_seconds.is_finite()) {
            issues.push(ConfigIssue::new(
                "timeout_seconds",
                format!(
                    "must be a positive number of seconds, got {}",
                    self.timeout_seconds
                ),
            ));
        }
        issues
    }
}

fn build(
    value: Value,
    _context: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<McpRuntimeConfig>(&value, PROVIDER_TYPE)?;
        let runtime = McpToolRuntime::new(&config)?;
        Ok(ProviderInstance::ToolRuntime(Arc::new(runtime)))
    }
    .boxed()
}

/// Adds `remote::model-context-protocol` to the registry.
pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::ToolRuntime,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Model Context Protocol (MCP) servers as tool groups: tools/list and tools/call over streamable HTTP or SSE",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<McpRuntimeConfig>,
        build,
    });
}

/// The MCP tool runtime. It opens a session per call: a session is cheap next to a tool run,
/// and a long-lived one would have to notice the server restarting.
pub struct McpToolRuntime {
    timeout: Duration,
    allow_private_addresses: bool,
    /// The transport that last worked per endpoint, tried first next time.
    transports: Mutex<HashMap<String, TransportKind>>,
}

/// A group's MCP server.
struct Endpoint {
    uri: String,
    url: Url,
}

impl McpToolRuntime {
    pub fn new(config: &McpRuntimeConfig) -> Result<Self> {
        // reqwest is built without a default TLS crypto provider (see the workspace manifest).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(McpToolRuntime {
            timeout: Duration::from_secs_f64(config.timeout_seconds),
            allow_private_addresses: config.allow_private_addresses,
            transports: Mutex::new(HashMap::new()),
        })
    }

    /// A client for one session with `endpoint`: its address checked against the SSRF rule and
    /// pinned (so a second DNS answer cannot point elsewhere), and no redirects followed (a
    /// redirect could lead anywhere, and requests carry the caller's credentials for this
    /// server only).
    async fn client_for(&self, endpoint: &Endpoint) -> Result<reqwest::Client> {
        let pinned = llama_stack_documents::checked_destination(
            &endpoint.url,
            self.allow_private_addresses,
            "connect to the MCP server at",
            ALLOW_HINT,
        )
        .await
        .map_err(|err| match err {
            DocumentError::Forbidden(why) => Error::new(ErrorKind::Forbidden, why),
            DocumentError::Invalid(why) => Error::invalid(why),
            other => Error::new(ErrorKind::Upstream, other.to_string()).set_temporary(true),
        })
        .map_err(|e| e.with_context("mcp_endpoint", endpoint.uri.clone()))?;
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some((domain, addrs)) = &pinned {
            builder = builder.resolve_to_addrs(domain, addrs);
        }
        builder
            .build()
            .map_err(|e| Error::internal(format!("could not build the HTTP client: {e}")))
    }

    async fn open(&self, endpoint: &Endpoint, headers: &HeaderMap) -> Result<Session> {
        let cached = self
            .transports
            .lock()
            .ok()
            .and_then(|t| t.get(&endpoint.uri).copied());
        let order = TransportKind::order(&endpoint.url, cached);
        let http = self.client_for(endpoint).await?;
        let (session, kind) = client::open_any(&http, &endpoint.url, headers, order)
            .await
            .map_err(|failure| failure.into_error(&endpoint.uri))?;
        if let Ok(mut transports) = self.transports.lock() {
            transports.insert(endpoint.uri.clone(), kind);
        }
        Ok(session)
    }

    /// Runs `exchange` under the configured timeout.
    async fn timed<T>(
        &self,
        endpoint: &Endpoint,
        exchange: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "The MCP server at {} did not answer within {} seconds; raise timeout_seconds in the {PROVIDER_TYPE} provider config if its tools are slow",
                        endpoint.uri,
                        self.timeout.as_secs_f64()
                    ),
                )
                .with_context("mcp_endpoint", endpoint.uri.clone()))
            })
    }
}

fn endpoint(group: &ToolGroup) -> Result<Endpoint> {
    let refuse = |problem: String| {
        Error::invalid(format!(
            "Tool group '{}' (provider '{}', {PROVIDER_TYPE}) {problem}; give mcp_endpoint.uri as the http(s) URL of its MCP server, e.g. {{\"uri\": \"http://localhost:8000/sse\"}}",
            group.identifier, group.provider_id
        ))
        .with_location(vec!["body".into(), "mcp_endpoint".into(), "uri".into()])
    };
    let uri = match &group.mcp_endpoint {
        None => return Err(refuse("has no mcp_endpoint".into())),
        Some(endpoint) => match endpoint.get("uri") {
            Some(Value::String(uri)) => uri.trim().to_string(),
            Some(other) => return Err(refuse(format!("has mcp_endpoint.uri {other}"))),
            None => return Err(refuse(format!("has mcp_endpoint {endpoint} without a uri"))),
        },
    };
    match Url::parse(&uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(Endpoint { uri, url })
        }
        _ => Err(refuse(format!(
            "has mcp_endpoint.uri '{uri}', not an http(s) URL"
        ))),
    }
}

/// The request's `mcp_headers` provider data.
fn provider_mcp_headers() -> Option<Value> {
    // Clients send the object itself; some send it JSON-encoded as a string.
    let text = match provider_data_value("mcp_headers")? {
        Value::String(text) => text,
        Value::Null => return None,
        value => return Some(value),
    };
    match serde_json::from_str(&text) {
        Ok(value) => Some(value),
        Err(error) => {
            // Upstream too ignores provider data it cannot read.
            tracing::warn!(error = %error, "Ignoring provider data mcp_headers that is not JSON");
            None
        }
    }
}

async fn close(session: Session) {
    // Ends the server's session (streamable HTTP sends DELETE); the answer does not matter.
    let _ = session.cancel().await;
}

fn call_error(endpoint: &Endpoint, tool: &str, error: &ServiceError) -> Error {
    match error {
        ServiceError::McpError(e) if e.code == ErrorCode::INVALID_PARAMS => {
            Error::invalid(format!(
                "The MCP server at {} refused the call of '{tool}': {}",
                endpoint.uri, e.message
            ))
            .with_context("mcp_endpoint", endpoint.uri.clone())
        }
        ServiceError::McpError(e) => Error::new(
            ErrorKind::Upstream,
            format!(
                "The MCP server at {} failed the call of '{tool}': {} (code {})",
                endpoint.uri, e.message, e.code.0
            ),
        )
        .with_context("mcp_endpoint", endpoint.uri.clone()),
        other => classify_service(other).into_error(&endpoint.uri),
    }
}

#[async_trait]
impl ToolRuntimeProvider for McpToolRuntime {
    fn serves_mcp(&self) -> bool {
        true
    }

    fn check_group(&self, group: &ToolGroup) -> Result<()> {
        let endpoint = endpoint(group)?;
        // An address written as an IP literal is refused when the group is registered; a host
        // name is checked, and its addresses pinned, on every connection.
        if !self.allow_private_addresses
            && let Some(ip) = endpoint
                .url
                .host_str()
                .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok())
        {
            let class = llama_stack_documents::classify_ip(ip);
            if class != AddressClass::Public {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    format!(
                        "refusing to connect to the MCP server at {}: {ip} is {}; {ALLOW_HINT}",
                        endpoint.uri,
                        class.description()
                    ),
                )
                .with_location(vec![
                    "body".into(),
                    "mcp_endpoint".into(),
                    "uri".into(),
                ]));
            }
        }
        Ok(())
    }

    async fn list_tools(&self, group: &ToolGroup) -> Result<Vec<ToolDef>> {
        let endpoint = endpoint(group)?;
        let headers = mapping::request_headers(provider_mcp_headers().as_ref(), &endpoint.uri)?;
        let tools = self
            .timed(&endpoint, async {
                let session = self.open(&endpoint, &headers).await?;
                let listed = session.list_all_tools().await;
                close(session).await;
                listed.map_err(|e| classify_service(&e).into_error(&endpoint.uri))
            })
            .await?;
        Ok(tools
            .iter()
            .map(|tool| mapping::tool_def(tool, &endpoint.uri))
            .collect())
    }

    async fn invoke(
        &self,
        group: &ToolGroup,
        tool: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        let endpoint = endpoint(group)?;
        let headers = mapping::request_headers(provider_mcp_headers().as_ref(), &endpoint.uri)?;
        let mut arguments = kwargs.clone();
        let result = self
            .timed(&endpoint, async {
                let session = self.open(&endpoint, &headers).await?;
                let result = async {
                    if arguments.contains_key("session_id") {
                        // The agent loop adds session_id to every call; a server that checks
                        // arguments strictly would refuse a tool call carrying it undeclared.
                        let tools = session
                            .list_all_tools()
                            .await
                            .map_err(|e| classify_service(&e).into_error(&endpoint.uri))?;
                        let declared = tools
                            .iter()
                            .find(|t| t.name == tool)
                            .is_some_and(|t| mapping::declares_parameter(t, "session_id"));
                        if !declared {
                            arguments.remove("session_id");
                        }
                    }
                    session
                        .call_tool(
                            CallToolRequestParams::new(tool.to_string()).with_arguments(arguments),
                        )
                        .await
                        .map_err(|e| call_error(&endpoint, tool, &e))
                }
                .await;
                close(session).await;
                result
            })
            .await?;
        Ok(mapping::invocation_result(tool, result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(mcp_endpoint: Option<Value>) -> ToolGroup {
        ToolGroup {
            identifier: "mcp::demo".into(),
            provider_resource_id: "mcp::demo".into(),
            provider_id: "model-context-protocol".into(),
            resource_type: "tool_group".into(),
            mcp_endpoint,
            args: None,
            owner: None,
        }
    }

    #[test]
    fn sample_and_empty_configs_parse() {
        assert!(validate_config::<McpRuntimeConfig>(&Value::Null).is_empty());
        let sample: Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        assert!(validate_config::<McpRuntimeConfig>(&sample).is_empty());
        let c: McpRuntimeConfig = llama_stack_core::parse_config(&json!({})).unwrap();
        assert_eq!(c.timeout_seconds, 30.0);
    }

    #[test]
    fn bad_fields_are_all_reported() {
        let issues =
            validate_config::<McpRuntimeConfig>(&json!({"timeout_seconds": 0, "uri": "http://x"}));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["uri"]);
        let issues = validate_config::<McpRuntimeConfig>(&json!({"timeout_seconds": -1}));
        assert_eq!(issues[0].path, "timeout_seconds");
    }

    #[test]
    fn groups_need_an_http_endpoint() {
        for bad in [
            None,
            Some(json!({})),
            Some(json!({"uri": 3})),
            Some(json!({"uri": "ftp://host/sse"})),
            Some(json!({"uri": "localhost:8000/sse"})),
        ] {
            let err = endpoint(&group(bad.clone())).err().unwrap();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad:?}");
            assert!(
                err.message().contains("mcp_endpoint.uri"),
                "{}",
                err.message()
            );
        }
        let ok = endpoint(&group(Some(json!({"uri": "https://h:8000/mcp"})))).unwrap();
        assert_eq!(ok.uri, "https://h:8000/mcp");
    }

    #[test]
    fn the_path_picks_the_first_transport() {
        let sse = Url::parse("http://h/sse").unwrap();
        let mcp = Url::parse("http://h/mcp").unwrap();
        assert_eq!(TransportKind::order(&sse, None)[0], TransportKind::Sse);
        assert_eq!(
            TransportKind::order(&mcp, None)[0],
            TransportKind::StreamableHttp
        );
        assert_eq!(
            TransportKind::order(&mcp, Some(TransportKind::Sse))[0],
            TransportKind::Sse
        );
    }
}
