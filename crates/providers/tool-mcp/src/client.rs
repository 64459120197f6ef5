//! Opening an MCP session over either HTTP transport, and turning transport failures into the
//! stack's errors.

use std::collections::HashMap;
use std::error::Error as StdError;

use llama_stack_core::{Error, ErrorKind};
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{ClientInitializeError, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::{RoleClient, ServiceExt};

use crate::sse::{SseTransport, SseTransportError};

pub(crate) type Session = RunningService<RoleClient, ClientConfig>;

/// The two HTTP transports of MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TransportKind {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    StreamableHttp,
    /// HTTP+SSE (MCP 2024-11-05).
    Sse,
}

impl TransportKind {
    fn name(self) -> &'static str {
        match self {
            TransportKind::StreamableHttp => "streamable HTTP",
            TransportKind::Sse => "SSE",
        }
    }

    /// The order to try the transports in: the one `uri` suggests, then the other.
    pub(crate) fn order(url: &Url, cached: Option<TransportKind>) -> [TransportKind; 2] {
        let first = cached.unwrap_or(if url.path().trim_end_matches('/').ends_with("/sse") {
            TransportKind::Sse
        } else {
            TransportKind::StreamableHttp
        });
        match first {
            TransportKind::StreamableHttp => [TransportKind::StreamableHttp, TransportKind::Sse],
            TransportKind::Sse => [TransportKind::Sse, TransportKind::StreamableHttp],
        }
    }
}

/// Why a session could not be opened or a request failed, as far as the caller cares.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Nothing answers at the address; the other transport would not fare better.
    Unreachable(String),
    /// The server asks for credentials; trying the other transport would not supply them.
    Unauthorized,
    /// The server answered, but not as this transport expects (or the exchange broke).
    Protocol(String),
}

impl Failure {
    pub(crate) fn into_error(self, uri: &str) -> Error {
        match self {
            Failure::Unreachable(cause) => Error::new(
                ErrorKind::Upstream,
                format!("Could not reach the MCP server at {uri}: {cause}. Check that it is running and that mcp_endpoint.uri is right"),
            )
            .set_temporary(true),
            Failure::Unauthorized => Error::new(
                ErrorKind::Unauthorized,
                format!("The MCP server at {uri} requires authorization; send its headers in the X-LlamaStack-Provider-Data header as {{\"mcp_headers\": {{\"{uri}\": {{\"Authorization\": \"Bearer ...\"}}}}}}"),
            ),
            // The cause may quote what the server sent; it goes to the log, not to the client,
            // so an endpoint that is no MCP server cannot be read through this error.
            Failure::Protocol(cause) => {
                tracing::warn!(mcp_endpoint = %uri, error = %cause, "MCP exchange failed");
                Error::new(
                    ErrorKind::Upstream,
                    format!("The MCP server at {uri} did not answer as an MCP server (streamable HTTP or SSE); the server log has the details"),
                )
            }
        }
        .with_context("mcp_endpoint", uri)
    }
}

fn client_config() -> ClientConfig {
    // This client opens sessions with `initialize`, which MCP servers of every version up to
    // 2025-11-25 understand; later versions still accept it.
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("llama-stack", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// Opens and initializes a session with `kind`.
pub(crate) async fn open(
    http: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    kind: TransportKind,
) -> Result<Session, Failure> {
    match kind {
        TransportKind::StreamableHttp => {
            let custom: HashMap<_, _> = headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let transport = StreamableHttpClientTransport::with_client(
                http.clone(),
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom),
            );
            client_config()
                .serve(transport)
                .await
                .map_err(|e| classify_init(&e))
        }
        TransportKind::Sse => {
            let transport = SseTransport::connect(http.clone(), url.clone(), headers.clone())
                .await
                .map_err(|e| classify(&e))?;
            client_config()
                .serve(transport)
                .await
                .map_err(|e| classify_init(&e))
        }
    }
}

/// Opens a session, trying the transports in `order`. Returns the transport that worked.
pub(crate) async fn open_any(
    http: &reqwest::Client,
    url: &Url,
    headers: &HeaderMap,
    order: [TransportKind; 2],
) -> Result<(Session, TransportKind), Failure> {
    let first = match open(http, url, headers, order[0]).await {
        Ok(session) => return Ok((session, order[0])),
        Err(failure @ (Failure::Unreachable(_) | Failure::Unauthorized)) => return Err(failure),
        Err(Failure::Protocol(cause)) => cause,
    };
    tracing::debug!(endpoint = %url, transport = order[0].name(), error = %first, "MCP transport failed; trying the other one");
    match open(http, url, headers, order[1]).await {
        Ok(session) => Ok((session, order[1])),
        Err(Failure::Protocol(second)) => Err(Failure::Protocol(format!(
            "{}: {first}; {}: {second}",
            order[0].name(),
            order[1].name()
        ))),
        Err(other) => Err(other),
    }
}

fn classify_init(error: &ClientInitializeError) -> Failure {
    match error {
        // The transport error is a field, not the error's source: walk from it.
        ClientInitializeError::TransportError { error, context } => match classify(&*error.error) {
            Failure::Protocol(cause) => Failure::Protocol(format!("{cause} (when {context})")),
            other => other,
        },
        other if other.is_authorization_required() => Failure::Unauthorized,
        other => Failure::Protocol(other.to_string()),
    }
}

/// Classifies an error after the session was opened (`tools/list`, `tools/call`).
pub(crate) fn classify_service(error: &ServiceError) -> Failure {
    match error {
        ServiceError::TransportSend(error) => classify(&*error.error),
        other => Failure::Protocol(other.to_string()),
    }
}

fn classify(error: &(dyn StdError + 'static)) -> Failure {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(failure) = classify_one(error) {
            return failure;
        }
        current = error.source();
    }
    Failure::Protocol(error.to_string())
}

fn classify_one(error: &(dyn StdError + 'static)) -> Option<Failure> {
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        return classify_reqwest(e);
    }
    if error.downcast_ref::<AuthRequiredError>().is_some() {
        return Some(Failure::Unauthorized);
    }
    if let Some(e) = error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
        return match e {
            // The client error is a field, not the error's source.
            StreamableHttpError::Client(e) => classify_reqwest(e),
            StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => {
                Some(Failure::Unauthorized)
            }
            _ => None,
        };
    }
    if let Some(e) = error.downcast_ref::<SseTransportError>() {
        return match e {
            SseTransportError::Request(e) => classify_reqwest(e),
            SseTransportError::Status(StatusCode::UNAUTHORIZED) => Some(Failure::Unauthorized),
            _ => None,
        };
    }
    None
}

fn classify_reqwest(error: &reqwest::Error) -> Option<Failure> {
    if error.is_connect() {
        let mut cause = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            cause = inner.to_string();
            source = inner.source();
        }
        return Some(Failure::Unreachable(cause));
    }
    if error.status() == Some(StatusCode::UNAUTHORIZED) {
        return Some(Failure::Unauthorized);
    }
    None
}
