//! The shared client core: JSON and server-sent-event requests to an OpenAI-compatible base
//! URL, with the API key chosen per request and upstream failures turned into domain errors
//! that name the provider and keep the upstream's status class.
//!
//! It makes one attempt per call: timeouts, retries and the circuit breaker are the
//! resilience layer's job. It only marks which failures are worth retrying.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use llama_stack_core::request_context::provider_data_string;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_inference::JsonStream;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::config::{Secret, Settings, TlsVerify};
use crate::flavor::Flavor;

/// Time allowed to open a connection; a dead host fails fast instead of waiting for the
/// request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an upstream error body is quoted to the client.
const MAX_QUOTED: usize = 500;

/// Requests to one upstream.
pub struct Client {
    http: reqwest::Client,
    flavor: &'static Flavor,
    provider_id: String,
    base_url: String,
    api_key: Option<Secret>,
}

impl Client {
    pub fn new(flavor: &'static Flavor, provider_id: &str, settings: &Settings) -> Result<Self> {
        // reqwest is built without a default crypto provider (see the workspace manifest);
        // installing ring fails harmlessly when some provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("llama-stack-rs/", env!("CARGO_PKG_VERSION")));
        match &settings.tls_verify {
            TlsVerify::Enabled(true) => {}
            TlsVerify::Enabled(false) => builder = builder.tls_danger_accept_invalid_certs(true),
            TlsVerify::CaFile(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    Error::invalid(format!("tls_verify: cannot read CA bundle {path}: {e}"))
                })?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::invalid(format!("tls_verify: {path} is not a PEM CA bundle: {e}"))
                })?;
                builder = builder.tls_certs_merge(certs);
            }
        }
        let http = builder.build().map_err(|e| {
            Error::internal(format!("cannot build the HTTP client: {}", root_cause(&e)))
        })?;
        Ok(Client {
            http,
            flavor,
            provider_id: provider_id.to_string(),
            base_url: settings.base_url.clone(),
            api_key: settings.api_key.clone(),
        })
    }

    /// How messages name this provider: its id, type and upstream.
    pub fn label(&self) -> String {
        format!(
            "provider '{}' ({} at {})",
            self.provider_id, self.flavor.provider_type, self.base_url
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }

    /// `path` at the server's root: the base URL without a trailing `/v1`, for the routes
    /// servers keep beside their OpenAI-compatible ones (vLLM's `/rerank`).
    pub fn root_url(&self, path: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        let root = base.strip_suffix("/v1").unwrap_or(base);
        format!("{root}/{}", path.trim_start_matches('/'))
    }

    /// The key for this request: the request's provider data, then the config, then the
    /// server's environment.
    fn api_key(&self) -> Result<Option<String>> {
        let from_request = self.flavor.provider_data_key.and_then(provider_data_string);
        let key = from_request
            .or_else(|| self.api_key.as_ref().map(|k| k.expose().to_string()))
            .or_else(|| {
                self.flavor
                    .api_key_env
                    .and_then(|name| std::env::var(name).ok())
                    .filter(|v| !v.trim().is_empty())
            });
        if key.is_none() && self.flavor.requires_api_key {
            let mut sources = vec!["`api_key` in its config".to_string()];
            if let Some(env) = self.flavor.api_key_env {
                sources.push(format!("{env} in the server's environment"));
            }
            if let Some(field) = self.flavor.provider_data_key {
                sources.push(format!(
                    "the request header X-LlamaStack-Provider-Data: {{\"{field}\": \"...\"}}"
                ));
            }
            return Err(Error::new(
                ErrorKind::Unauthorized,
                format!(
                    "{} has no API key: set {}",
                    self.label(),
                    sources.join(", or ")
                ),
            ));
        }
        Ok(key)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> Result<reqwest::RequestBuilder> {
        let mut request = self.http.request(method, url);
        // Joins the caller's trace: the upstream's own tracing then links to this request.
        if let Some(traceparent) = llama_stack_core::trace::outgoing_traceparent() {
            request = request.header(llama_stack_core::trace::TRACEPARENT_HEADER, traceparent);
        }
        if let Some(key) = self.api_key()? {
            request = request.bearer_auth(key);
        }
        Ok(request)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(status_error(&self.label(), status, &headers, &body))
    }

    /// `POST <base>/<path>` with a JSON body; the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let request = self
            .request(reqwest::Method::POST, &self.url(path))?
            .json(body);
        let response = self.send(request).await?;
        self.read_json(response).await
    }

    /// `POST` of a JSON body to an absolute URL; the JSON answer.
    pub async fn post_json_to(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let request = self.request(reqwest::Method::POST, url)?.json(body);
        let response = self.send(request).await?;
        self.read_json(response).await
    }

    /// `GET` of an absolute URL (the model lists); the JSON answer.
    pub async fn get_json(&self, url: &str) -> Result<serde_json::Value> {
        let response = self.send(self.request(reqwest::Method::GET, url)?).await?;
        self.read_json(response).await
    }

    async fn read_json(&self, response: reqwest::Response) -> Result<serde_json::Value> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                ErrorKind::Upstream,
                format!(
                    "{} answered something that is not JSON ({e}): {}",
                    self.label(),
                    quoted(&String::from_utf8_lossy(&bytes))
                ),
            )
        })
    }

    /// `POST <base>/<path>` with `"stream": true` in the body: the objects of the event stream,
    /// without the closing `[DONE]`. Returns once the response headers have arrived.
    pub async fn post_stream(&self, path: &str, body: &serde_json::Value) -> Result<JsonStream> {
        let request = self
            .request(reqwest::Method::POST, &self.url(path))?
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(body);
        let response = self.send(request).await?;
        let label = self.label();
        let events = response.bytes_stream().eventsource();
        let stream = events
            .filter_map(move |event| {
                let label = label.clone();
                async move {
                    match event {
                        Err(err) => Some(Err(Error::new(
                            ErrorKind::Upstream,
                            format!("the event stream from {label} broke off: {err}"),
                        ))),
                        Ok(event) => stream_item(&label, &event.data),
                    }
                }
            })
            // `[DONE]` ends the stream; nothing after it matters.
            .take_while(|item| std::future::ready(!matches!(item, Ok(None))))
            .filter_map(|item| std::future::ready(item.transpose()));
        Ok(stream.boxed())
    }

    fn transport_error(&self, err: &reqwest::Error) -> Error {
        let cause = root_cause(err);
        if err.is_connect() {
            // Nothing reached the upstream, so trying again is always safe.
            Error::new(
                ErrorKind::Upstream,
                format!("cannot reach {}: {cause}", self.label()),
            )
            .set_temporary(true)
        } else if err.is_timeout() {
            Error::new(
                ErrorKind::Timeout,
                format!("{} timed out: {cause}", self.label()),
            )
        } else {
            Error::new(
                ErrorKind::Upstream,
                format!("the request to {} failed: {cause}", self.label()),
            )
        }
    }
}

/// One event's data: `Ok(Some(object))`, `Ok(None)` for `[DONE]`, `None` for blank keep-alive
/// data, or the upstream's error.
fn stream_item(label: &str, data: &str) -> Option<Result<Option<serde_json::Value>>> {
    let data = data.trim();
    if data.is_empty() {
        return None;
    }
    if data == "[DONE]" {
        return Some(Ok(None));
    }
    Some(match serde_json::from_str::<serde_json::Value>(data) {
        Ok(value) if value.get("error").is_some() && value.get("choices").is_none() => {
            Err(Error::new(
                ErrorKind::Upstream,
                format!("{label} failed mid-stream: {}", error_detail(&value)),
            ))
        }
        Ok(value) => Ok(Some(value)),
        Err(e) => Err(Error::new(
            ErrorKind::Upstream,
            format!(
                "{label} sent an event that is not JSON ({e}): {}",
                quoted(data)
            ),
        )),
    })
}

/// The innermost error message ("Connection refused (os error 111)"), which says more than
/// reqwest's outer "error sending request".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn quoted(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// The message in an upstream error body, whichever convention it follows: OpenAI and
/// llama.cpp (`error.message`), Llama Stack (`error.detail`), vLLM (`message`), FastAPI
/// (`detail`); else the body itself.
pub fn error_detail(body: &serde_json::Value) -> String {
    let pick = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    };
    let error = body.get("error");
    error
        .and_then(|e| e.get("message"))
        .and_then(pick)
        .or_else(|| error.and_then(|e| e.get("detail")).and_then(pick))
        .or_else(|| error.filter(|e| e.is_string()).and_then(pick))
        .or_else(|| body.get("message").and_then(pick))
        .or_else(|| body.get("detail").and_then(pick))
        .map(|m| quoted(&m))
        .unwrap_or_else(|| quoted(&body.to_string()))
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)))
}

/// An upstream's non-2xx answer as a domain error with the same status class: its 4xx stay
/// the client's problem, its failures are a gateway's (502/503/504), never a bare 500.
pub fn status_error(label: &str, status: StatusCode, headers: &HeaderMap, body: &str) -> Error {
    let detail = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => error_detail(&value),
        Err(_) if body.trim().is_empty() => "(no body)".to_string(),
        Err(_) => quoted(body),
    };
    let message = format!("{label} answered {status}: {detail}");
    let kind = match status.as_u16() {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        408 | 504 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        501 => ErrorKind::Unsupported,
        503 => ErrorKind::Overloaded,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Upstream,
    };
    // 502, 503 and 504 are the answers of a proxy or server that may recover; 429 asks for
    // a later retry. Other failures (500 included) would likely fail again the same way.
    let temporary = matches!(status.as_u16(), 429 | 502 | 503 | 504);
    let mut error = Error::new(kind, message).set_temporary(temporary);
    if let Some(after) = retry_after(headers).filter(|_| temporary) {
        error = error.with_retry_after(after);
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(r) = retry {
            h.insert(RETRY_AFTER, r.parse().unwrap());
        }
        h
    }

    #[test]
    fn statuses_keep_their_class_and_name_the_provider() {
        let cases = [
            (400, ErrorKind::InvalidRequest, false),
            (401, ErrorKind::Unauthorized, false),
            (404, ErrorKind::NotFound, false),
            (422, ErrorKind::InvalidRequest, false),
            (429, ErrorKind::RateLimited, true),
            (500, ErrorKind::Upstream, false),
            (502, ErrorKind::Upstream, true),
            (503, ErrorKind::Overloaded, true),
            (504, ErrorKind::Timeout, true),
        ];
        for (code, kind, temporary) in cases {
            let err = status_error(
                "provider 'p' (remote::vllm at http://h/v1)",
                StatusCode::from_u16(code).unwrap(),
                &headers(None),
                r#"{"error": {"message": "went wrong"}}"#,
            );
            assert_eq!(err.kind(), kind, "{code}");
            assert_eq!(err.is_temporary(), temporary, "{code}");
            assert!(err.message().contains("provider 'p'"), "{err}");
            assert!(err.message().contains("went wrong"), "{err}");
            assert!(err.message().contains(&code.to_string()), "{err}");
        }
    }

    #[test]
    fn retry_after_is_read_for_temporary_answers_only() {
        let err = status_error("p", StatusCode::TOO_MANY_REQUESTS, &headers(Some("2")), "");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert!(err.message().contains("(no body)"));
        let err = status_error("p", StatusCode::BAD_REQUEST, &headers(Some("2")), "");
        assert_eq!(err.retry_after(), None);
        let err = status_error(
            "p",
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            "",
        );
        assert_eq!(err.retry_after(), None);
        assert!(err.is_temporary());
    }

    #[test]
    fn error_messages_from_every_convention() {
        let cases = [
            (r#"{"error": {"message": "m1", "type": "x"}}"#, "m1"),
            (r#"{"error": {"detail": "m2"}}"#, "m2"),
            (r#"{"object": "error", "message": "m3"}"#, "m3"),
            (r#"{"detail": "m4"}"#, "m4"),
            (r#"{"error": "m5"}"#, "m5"),
        ];
        for (body, expected) in cases {
            let value: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(error_detail(&value), expected);
        }
        let long = "x".repeat(2000);
        let err = status_error(
            "p",
            StatusCode::INTERNAL_SERVER_ERROR,
            &headers(None),
            &long,
        );
        assert!(err.message().len() < 700);
    }

    #[test]
    fn stream_items() {
        assert!(stream_item("p", "").is_none());
        assert!(matches!(stream_item("p", "[DONE]"), Some(Ok(None))));
        assert!(matches!(
            stream_item("p", r#"{"choices": []}"#),
            Some(Ok(Some(_)))
        ));
        let err = stream_item("p", r#"{"error": {"message": "boom"}}"#)
            .unwrap()
            .unwrap_err();
        assert!(err.message().contains("boom"));
        assert!(stream_item("p", "{not json").unwrap().is_err());
    }
}
