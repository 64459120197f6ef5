//! The legacy HTTP+SSE client transport (MCP 2024-11-05), which rmcp no longer ships: llama-stack
//! 0.2 servers and examples serve MCP at `http://host:port/sse`.
//!
//! The client holds one `GET` event stream open. Its first `endpoint` event names the URL that
//! takes the client's JSON-RPC messages by `POST`; the server answers them as `message` events
//! on the stream.

use std::borrow::Cow;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use rmcp::RoleClient;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SseTransportError {
    #[error("{0}")]
    Request(#[source] reqwest::Error),
    #[error("HTTP {0}")]
    Status(StatusCode),
    #[error("the server did not answer with an event stream (content type {0:?})")]
    NotAnEventStream(Option<String>),
    #[error("the event stream ended before the server named its message endpoint")]
    NoEndpoint,
    #[error("the server's message endpoint {0:?} is not a URL on the same origin")]
    BadEndpoint(String),
    #[error("event stream: {0}")]
    Stream(String),
}

type Events = BoxStream<'static, Result<eventsource_stream::Event, String>>;

pub(crate) struct SseTransport {
    http: reqwest::Client,
    post_url: Url,
    headers: HeaderMap,
    events: Events,
}

impl SseTransport {
    /// Opens the event stream at `url` and waits for the message endpoint.
    pub(crate) async fn connect(
        http: reqwest::Client,
        url: Url,
        headers: HeaderMap,
    ) -> Result<Self, SseTransportError> {
        let response = http
            .get(url.clone())
            .headers(headers.clone())
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .send()
            .await
            .map_err(SseTransportError::Request)?;
        if !response.status().is_success() {
            return Err(SseTransportError::Status(response.status()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/event-stream"))
        {
            return Err(SseTransportError::NotAnEventStream(content_type));
        }
        let mut events: Events = response
            .bytes_stream()
            .eventsource()
            .map(|event| event.map_err(|e| e.to_string()))
            .boxed();
        let post_url = loop {
            match events.next().await {
                Some(Ok(event)) if event.event == "endpoint" => {
                    let endpoint = event.data.trim();
                    // Messages carry the caller's headers (credentials): they go only where the
                    // stream came from.
                    match url.join(endpoint) {
                        Ok(joined) if joined.origin() == url.origin() => break joined,
                        _ => return Err(SseTransportError::BadEndpoint(endpoint.to_string())),
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(SseTransportError::Stream(e)),
                None => return Err(SseTransportError::NoEndpoint),
            }
        };
        Ok(SseTransport {
            http,
            post_url,
            headers,
            events,
        })
    }
}

impl Transport<RoleClient> for SseTransport {
    type Error = SseTransportError;

    fn name() -> Cow<'static, str> {
        "legacy-sse".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let request = self
            .http
            .post(self.post_url.clone())
            .headers(self.headers.clone())
            .json(&item);
        async move {
            let response = request.send().await.map_err(SseTransportError::Request)?;
            // The answer arrives on the event stream; the POST itself is only accepted (202).
            if response.status().is_success() {
                Ok(())
            } else {
                Err(SseTransportError::Status(response.status()))
            }
        }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            match self.events.next().await? {
                Ok(event) if event.event == "message" => match serde_json::from_str(&event.data) {
                    Ok(message) => return Some(message),
                    Err(error) => {
                        tracing::warn!(error = %error, "Skipping an MCP message that is not JSON-RPC");
                    }
                },
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "MCP event stream failed");
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.events = futures::stream::empty().boxed();
        Ok(())
    }
}
