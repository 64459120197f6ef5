//! What the three runtimes share: the API key (config or request), config checks, the tool
//! call's `query`, and one HTTP exchange whose failures become error results the model reads.

use std::fmt;
use std::io;
use std::time::Duration;

use llama_stack_core::request_context::provider_data_string;
use llama_stack_core::{ConfigIssue, Error, Result};
use llama_stack_types::{ToolDef, ToolGroup, ToolInvocationResult, ToolParameter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Time allowed to open a connection: a dead host fails fast rather than at the request
/// timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an upstream error body is quoted in the error result.
const MAX_QUOTED_CHARS: usize = 300;

/// `error_code` of a result whose upstream did not answer in time.
pub const CODE_TIMEOUT: i64 = 504;
/// `error_code` of a result whose upstream could not be reached or answered nonsense.
pub const CODE_BAD_GATEWAY: i64 = 502;

/// An API key: deserialized from the config, never shown by `Debug`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

pub fn default_max_results() -> u32 {
    3
}

pub fn default_timeout_seconds() -> f64 {
    30.0
}

/// Checks that `value` is an absolute http(s) URL.
pub fn check_base_url(value: &str, issues: &mut Vec<ConfigIssue>) {
    match reqwest::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(_) => issues.push(ConfigIssue::new(
            "base_url",
            format!("must be an http:// or https:// URL, got '{value}'"),
        )),
        Err(err) => issues.push(ConfigIssue::new(
            "base_url",
            format!("'{value}' is not a URL: {err}"),
        )),
    }
}

pub fn check_timeout(value: f64, issues: &mut Vec<ConfigIssue>) {
    if !(value > 0.0 && value.is_finite()) {
        issues.push(ConfigIssue::new(
            "timeout_seconds",
            format!("must be a positive number of seconds, got {value}"),
        ));
    }
}

pub fn check_max_results(value: u32, most: Option<u32>, issues: &mut Vec<ConfigIssue>) {
    match most {
        Some(most) if !(1..=most).contains(&value) => issues.push(ConfigIssue::new(
            "max_results",
            format!("must be between 1 and {most}, got {value}"),
        )),
        None if value == 0 => {
            issues.push(ConfigIssue::new("max_results", "must be at least 1, got 0"))
        }
        _ => {}
    }
}

/// The one-tool definition each runtime lists.
pub fn tool_def(name: &str, description: &str, query_description: &str) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: description.into(),
        parameters: vec![ToolParameter {
            name: "query".into(),
            parameter_type: "string".into(),
            description: query_description.into(),
            required: true,
            default: None,
        }],
        metadata: None,
    }
}

/// These runtimes call a fixed API; an `mcp_endpoint` means the group was meant for an MCP
/// runtime, and silently ignoring it would hide that mistake.
pub fn refuse_mcp_endpoint(group: &ToolGroup, provider_type: &str) -> Result<()> {
    if group.mcp_endpoint.is_some() {
        return Err(Error::invalid(format!(
            "Provider '{}' is {provider_type}, which takes no mcp_endpoint; register MCP tool groups with a remote::model-context-protocol provider",
            group.provider_id
        ))
        .with_location(vec!["body".into(), "mcp_endpoint".into()]));
    }
    Ok(())
}

pub fn check_tool_name(tool: &str, expected: &str, provider_type: &str) -> Result<()> {
    if tool != expected {
        return Err(Error::not_found(format!(
            "Tool '{tool}' is not offered by {provider_type}; its only tool is '{expected}'"
        )));
    }
    Ok(())
}

/// The call's `query`. Other keys (`session_id`, the group's args) are not this tool's.
pub fn query(kwargs: &Map<String, Value>) -> Result<String> {
    let location = || vec!["body".into(), "kwargs".into(), "query".into()];
    match kwargs.get("query") {
        Some(Value::String(q)) if !q.trim().is_empty() => Ok(q.clone()),
        Some(Value::String(_)) => {
            Err(Error::invalid("kwargs.query must not be empty").with_location(location()))
        }
        None | Some(Value::Null) => Err(Error::invalid(
            "kwargs.query is required: the text to search for",
        )
        .with_location(location())),
        Some(other) => Err(
            Error::invalid(format!("kwargs.query must be a string, got {other}"))
                .with_location(location()),
        ),
    }
}

/// A result that tells the model the tool failed, so it can say so or try again.
pub fn failure(code: i64, message: String) -> ToolInvocationResult {
    ToolInvocationResult {
        content: None,
        error_message: Some(message),
        error_code: Some(code),
        metadata: None,
    }
}

pub fn success(content: String) -> ToolInvocationResult {
    ToolInvocationResult {
        content: Some(Value::String(content)),
        error_message: None,
        error_code: None,
        metadata: None,
    }
}

/// Fixed facts about one runtime's upstream.
pub struct Service {
    pub provider_type: &'static str,
    /// How messages name the API ("Tavily").
    pub name: &'static str,
    /// The `X-LlamaStack-Provider-Data` key carrying a per-request API key.
    pub provider_data_key: &'static str,
}

/// Requests to one upstream, with the settings of one configured provider.
pub struct Upstream {
    http: reqwest::Client,
    service: &'static Service,
    provider_id: String,
    base_url: String,
    api_key: Option<Secret>,
}

impl Upstream {
    pub fn new(
        service: &'static Service,
        provider_id: &str,
        base_url: &str,
        api_key: Option<Secret>,
        timeout: Duration,
    ) -> Result<Self> {
        // reqwest is built without a default crypto provider (see the workspace manifest);
        // installing ring fails harmlessly when a provider is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .user_agent(concat!("llama-stack-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::internal(format!(
                    "cannot build the HTTP client: {}",
                    root_cause(&e.without_url())
                ))
            })?;
        Ok(Upstream {
            http,
            service,
            provider_id: provider_id.to_string(),
            base_url: base_url.trim().trim_end_matches('/').to_string(),
            // `${env.X:=}` leaves an empty key when the variable is unset: that is no key.
            api_key: api_key.filter(|k| !k.expose().trim().is_empty()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `{base_url}{path}` with `query` appended, encoded.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Url> {
        let url = format!("{}{path}", self.base_url);
        let parsed = if query.is_empty() {
            // `parse_with_params` with no pairs still leaves a bare `?` behind.
            reqwest::Url::parse(&url)
        } else {
            reqwest::Url::parse_with_params(&url, query)
        };
        parsed.map_err(|e| Error::internal(format!("cannot build the URL {url}: {e}")))
    }

    /// The key for this call: the request's provider data wins over the config, so one
    /// server can serve clients that bring their own keys.
    pub fn api_key(&self) -> Result<String> {
        provider_data_string(self.service.provider_data_key)
            .or_else(|| self.api_key.as_ref().map(|k| k.expose().to_string()))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Provider '{}' ({}) has no {} API key: set api_key in the provider config, or pass {{\"{}\": \"<key>\"}} in the X-LlamaStack-Provider-Data header",
                    self.provider_id,
                    self.service.provider_type,
                    self.service.name,
                    self.service.provider_data_key
                ))
            })
    }

    /// Sends `request` and reads a JSON body. `Err` holds the error result to hand back:
    /// the upstream's status and an excerpt of its body, or why no answer came. `key` is
    /// masked out of anything quoted, since some APIs echo what they were sent.
    pub async fn fetch_json(
        &self,
        request: reqwest::RequestBuilder,
        key: &str,
    ) -> std::result::Result<Value, ToolInvocationResult> {
        let name = self.service.name;
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        }
        .await;
        let (status, body) = match outcome {
            Ok(answer) => answer,
            Err(err) => {
                let (code, message) = if err.is_timeout() {
                    (
                        CODE_TIMEOUT,
                        format!("{name} did not answer in time ({})", self.base_url),
                    )
                } else {
                    (
                        CODE_BAD_GATEWAY,
                        format!(
                            "could not reach {name} at {}: {}",
                            self.base_url,
                            // The URL may carry the key (Wolfram Alpha's appid).
                            mask(&root_cause(&err.without_url()), key)
                        ),
                    )
                };
                return Err(self.fail(code, message));
            }
        };
        if !status.is_success() {
            let message = format!(
                "{name} answered HTTP {status}: {}",
                mask(&excerpt(&body), key)
            );
            return Err(self.fail(i64::from(status.as_u16()), message));
        }
        serde_json::from_str(&body).map_err(|_| {
            let message = format!(
                "{name} answered with a body that is not JSON: {}",
                mask(&excerpt(&body), key)
            );
            self.fail(CODE_BAD_GATEWAY, message)
        })
    }

    pub fn fail(&self, code: i64, message: String) -> ToolInvocationResult {
        tracing::warn!(
            provider_id = %self.provider_id,
            provider_type = self.service.provider_type,
            code,
            error = %message,
            "Tool call to upstream failed"
        );
        failure(code, message)
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

fn mask(text: &str, key: &str) -> String {
    if key.is_empty() {
        text.to_string()
    } else {
        text.replace(key, "********")
    }
}

/// JSON as Python's `json.dumps` lays it out (`", "` and `": "`), so results read as
/// upstream's do. Non-ASCII text stays as it is rather than `\u` escapes: a model reads it
/// more easily.
pub fn python_json(value: &Value) -> String {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonLayout);
    match value.serialize(&mut serializer) {
        Ok(()) => String::from_utf8(out).unwrap_or_else(|_| value.to_string()),
        Err(_) => value.to_string(),
    }
}

struct PythonLayout;

impl serde_json::ser::Formatter for PythonLayout {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_layout_spaces_separators_only() {
        let value = json!({"query": "a, b: c", "top_k": [1, {"x": null}], "e": []});
        assert_eq!(
            python_json(&value),
            r#"{"query": "a, b: c", "top_k": [1, {"x": null}], "e": []}"#
        );
    }

    #[test]
    fn query_must_be_a_non_empty_string() {
        let kwargs = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            query(&kwargs(json!({"query": "rust", "session_id": "s"}))).unwrap(),
            "rust"
        );
        for bad in [json!({}), json!({"query": 3}), json!({"query": " "})] {
            let err = query(&kwargs(bad)).unwrap_err();
            assert!(err.message().contains("kwargs.query"), "{}", err.message());
            assert_eq!(err.location().unwrap().len(), 3);
        }
    }

    #[test]
    fn excerpts_are_short_and_keys_masked() {
        assert_eq!(excerpt(&"é".repeat(400)).chars().count(), 303);
        assert_eq!(mask("bad appid k123", "k123"), "bad appid ********");
        assert_eq!(format!("{:?}", Secret::new("k")), "********");
    }

    #[test]
    fn max_results_bounds() {
        let mut issues = Vec::new();
        check_max_results(0, None, &mut issues);
        check_max_results(21, Some(20), &mut issues);
        check_max_results(20, Some(20), &mut issues);
        check_max_results(1, None, &mut issues);
        assert_eq!(issues.len(), 2);
    }
}
