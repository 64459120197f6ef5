//! The `config:` blocks of the remote provider types. Field names follow upstream Llama Stack
//! (0.2.x) for each type, so a run.yaml written for the Python server keeps working; the
//! `refresh_models` and `resilience` fields are shared by all of them.
//!
//! Each block is read into its own struct (declared by its type's entry in [`crate::flavor`])
//! and turned into [`Settings`], the one shape the shared client core works from. The types
//! whose block is more than a URL and a key convert it here.

use std::fmt;
use std::path::Path;

use llama_stack_core::ConfigIssue;
use llama_stack_inference::resilience::ResilienceConfig;
use serde::Deserialize;

pub use crate::flavor::configs::*;

/// An API key or token. Shown as `********` in debug output, so a config dump never carries it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("********")
    }
}

/// `tls_verify`: whether to check the server's certificate, or a CA bundle (PEM) to check it
/// against in addition to the system's roots.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TlsVerify {
    Enabled(bool),
    CaFile(String),
}

impl Default for TlsVerify {
    fn default() -> Self {
        TlsVerify::Enabled(true)
    }
}

/// Which list says what models an upstream serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelListing {
    /// `GET <base>/models`, the OpenAI list.
    OpenAi,
    /// Ollama's own list of pulled models, `GET <server>/api/tags`, at this URL.
    OllamaTags(String),
}

/// What the client core needs, whatever the provider type.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The OpenAI-compatible base URL, without a trailing slash: requests go to
    /// `<base_url>/chat/completions` and so on.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// `max_tokens` sent when a classic request leaves it unset (or 0).
    pub default_max_tokens: Option<u32>,
    pub tls_verify: TlsVerify,
    pub refresh_models: bool,
    pub listing: ModelListing,
    pub resilience: ResilienceConfig,
}

/// One provider type's config block.
pub trait RemoteConfig: serde::de::DeserializeOwned + fmt::Debug + Send + 'static {
    /// Problems serde cannot see (URLs, files, ranges), with paths relative to the block.
    fn issues(&self) -> Vec<ConfigIssue>;
    fn into_settings(self) -> Settings;
}

/// Checks that `value` is an absolute http(s) URL.
pub(crate) fn check_url(field: &str, value: &str, issues: &mut Vec<ConfigIssue>) {
    match reqwest::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
        Ok(url) => issues.push(ConfigIssue::new(
            field,
            format!(
                "`{value}` is not an http(s) URL (scheme `{}`); write it as http://host:port/...",
                url.scheme()
            ),
        )),
        Err(err) => issues.push(ConfigIssue::new(
            field,
            format!("`{value}` is not a URL ({err}); write it as http://host:port/..."),
        )),
    }
}

fn check_tls(tls: &TlsVerify, issues: &mut Vec<ConfigIssue>) {
    if let TlsVerify::CaFile(path) = tls
        && !Path::new(path).is_file()
    {
        issues.push(ConfigIssue::new(
            "tls_verify",
            format!("`{path}` is not a file; give true, false or the path of a PEM CA bundle"),
        ));
    }
}

pub(crate) fn common_issues(resilience: &ResilienceConfig, issues: &mut Vec<ConfigIssue>) {
    issues.extend(resilience.issues("resilience"));
}

/// The URL without trailing slashes, with `suffix` appended unless it already ends with it.
fn joined(url: &str, suffix: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    if suffix.is_empty() || url.ends_with(suffix) {
        url.to_string()
    } else {
        format!("{url}{suffix}")
    }
}

/// An empty key from `${env.X:=}` means "no key".
fn present(key: Option<Secret>) -> Option<Secret> {
    key.filter(|k| !k.is_empty())
}

/// Settings of the hosted services that take a URL and a key and nothing else.
pub(crate) fn hosted(
    url: &str,
    suffix: &str,
    api_key: Option<Secret>,
    refresh_models: bool,
    resilience: ResilienceConfig,
) -> Settings {
    Settings {
        base_url: joined(url, suffix),
        api_key: present(api_key),
        default_max_tokens: None,
        tls_verify: TlsVerify::default(),
        refresh_models,
        listing: ModelListing::OpenAi,
        resilience,
    }
}

/// `url` when it is set, else the issue that says it is required.
fn required_url(url: &Option<String>, missing: &str, issues: &mut Vec<ConfigIssue>) {
    match url {
        Some(url) if !url.trim().is_empty() => check_url("url", url, issues),
        _ => issues.push(ConfigIssue::new("url", missing)),
    }
}

impl RemoteConfig for VllmConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        required_url(
            &self.url,
            "is required: the vLLM server's base URL, e.g. http://localhost:8000/v1",
            &mut issues,
        );
        if self.max_tokens == 0 {
            issues.push(ConfigIssue::new("max_tokens", "must be at least 1"));
        }
        check_tls(&self.tls_verify, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        Settings {
            default_max_tokens: Some(self.max_tokens),
            tls_verify: self.tls_verify,
            ..hosted(
                self.url.as_deref().unwrap_or_default(),
                "",
                self.api_token,
                self.refresh_models,
                self.resilience,
            )
        }
    }
}

impl RemoteConfig for OllamaConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url("url", &self.url, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        // Tolerate a URL given with `/v1`, as the OpenAI endpoint is often written.
        let server = joined(&self.url, "");
        let server = server.strip_suffix("/v1").unwrap_or(&server).to_string();
        Settings {
            base_url: format!("{server}/v1"),
            api_key: None,
            default_max_tokens: None,
            tls_verify: TlsVerify::default(),
            refresh_models: self.refresh_models,
            listing: ModelListing::OllamaTags(format!("{server}/api/tags")),
            resilience: self.resilience,
        }
    }
}

impl RemoteConfig for OpenAiCompatConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        required_url(
            &self.url,
            "is required: the server's OpenAI-compatible base URL, e.g. http://localhost:8321/v1",
            &mut issues,
        );
        check_tls(&self.tls_verify, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        Settings {
            tls_verify: self.tls_verify,
            ..hosted(
                self.url.as_deref().unwrap_or_default(),
                "",
                self.api_key,
                self.refresh_models,
                self.resilience,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use llama_stack_core::parse_config;

    use super::*;

    fn issues<C: RemoteConfig>(json: serde_json::Value) -> Vec<String> {
        match parse_config::<C>(&json) {
            Ok(config) => config.issues().into_iter().map(|i| i.path).collect(),
            Err(issues) => issues.into_iter().map(|i| i.path).collect(),
        }
    }

    #[test]
    fn base_urls_per_type() {
        let s = parse_config::<OllamaConfig>(&serde_json::json!({"url": "http://h:11434/"}))
            .unwrap()
            .into_settings();
        assert_eq!(s.base_url, "http://h:11434/v1");
        assert_eq!(
            s.listing,
            ModelListing::OllamaTags("http://h:11434/api/tags".into())
        );
        let s = parse_config::<OllamaConfig>(&serde_json::json!({"url": "http://h:11434/v1"}))
            .unwrap()
            .into_settings();
        assert_eq!(s.base_url, "http://h:11434/v1");
        let s = parse_config::<GroqConfig>(&serde_json::Value::Null)
            .unwrap()
            .into_settings();
        assert_eq!(s.base_url, "https://api.groq.com/openai/v1");
        let s = parse_config::<LlamaApiConfig>(&serde_json::Value::Null)
            .unwrap()
            .into_settings();
        assert_eq!(s.base_url, "https://api.llama.com/compat/v1");
        let s = parse_config::<VllmConfig>(&serde_json::json!({"url": "http://v:8000/v1"}))
            .unwrap()
            .into_settings();
        assert_eq!(s.default_max_tokens, Some(4096));
        let s = parse_config::<LlamaCppServerConfig>(&serde_json::Value::Null)
            .unwrap()
            .into_settings();
        assert_eq!(s.base_url, "http://localhost:8080/v1");
        let s = parse_config::<LlamaCppServerConfig>(
            &serde_json::json!({"openai_compat_api_base": "http://h:1/v1/"}),
        )
        .unwrap()
        .into_settings();
        assert_eq!(s.base_url, "http://h:1/v1");
    }

    #[test]
    fn every_problem_is_named() {
        assert_eq!(issues::<VllmConfig>(serde_json::json!({})), ["url"]);
        assert_eq!(
            issues::<VllmConfig>(serde_json::json!({"url": "localhost:8000", "max_tokens": 0})),
            ["url", "max_tokens"]
        );
        assert_eq!(
            issues::<OpenAiCompatConfig>(
                serde_json::json!({"url": "http://x/v1", "tls_verify": "/no/such/ca.pem",
                                   "resilience": {"max_retries": 50}})
            ),
            ["tls_verify", "resilience.max_retries"]
        );
        assert_eq!(
            issues::<TogetherConfig>(serde_json::json!({"api_key": "k", "colour": "red"})),
            ["colour"]
        );
        assert_eq!(
            issues::<OpenAiConfig>(serde_json::json!({"resilience": {"retries": 1}})),
            ["resilience.retries"]
        );
    }

    #[test]
    fn keys_never_show_in_debug_output_and_empty_keys_are_none() {
        let config =
            parse_config::<TogetherConfig>(&serde_json::json!({"api_key": "sk-very-secret"}))
                .unwrap();
        assert!(!format!("{config:?}").contains("sk-very-secret"));
        let settings = parse_config::<TogetherConfig>(&serde_json::json!({"api_key": ""}))
            .unwrap()
            .into_settings();
        assert!(settings.api_key.is_none());
    }
}
