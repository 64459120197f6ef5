//! The `config:` blocks of the remote provider types. Field names follow upstream Llama Stack
//! (0.2.x) for each type, so a run.yaml written for the Python server keeps working; the
//! `refresh_models` and `resilience` fields are shared by all of them.
//!
//! Each block is read into its own struct and turned into [`Settings`], the one shape the
//! shared client core works from.

use std::fmt;
use std::path::Path;

use llama_stack_core::ConfigIssue;
use llama_stack_core::resilience::ResilienceConfig;
use serde::Deserialize;

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
fn check_url(field: &str, value: &str, issues: &mut Vec<ConfigIssue>) {
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

fn common_issues(resilience: &ResilienceConfig, issues: &mut Vec<ConfigIssue>) {
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

fn default_true_tls() -> TlsVerify {
    TlsVerify::default()
}

/// `remote::openai`: OpenAI's API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The OpenAI API key; without it, `OPENAI_API_KEY` or the request's provider data
    /// (`openai_api_key`) supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// The API's base URL.
    #[serde(default = "default_openai_url")]
    pub base_url: String,
    /// List the upstream's models at start-up (and every few minutes) as `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_openai_url() -> String {
    "https://api.openai.com/v1".into()
}

impl RemoteConfig for OpenAiConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url("base_url", &self.base_url, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        Settings {
            base_url: joined(&self.base_url, ""),
            api_key: present(self.api_key),
            default_max_tokens: None,
            tls_verify: TlsVerify::default(),
            refresh_models: self.refresh_models,
            listing: ModelListing::OpenAi,
            resilience: self.resilience,
        }
    }
}

/// `remote::vllm`: a vLLM server's OpenAI-compatible API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VllmConfig {
    /// The server's OpenAI-compatible base URL, e.g. `http://localhost:8000/v1`.
    #[serde(default)]
    pub url: Option<String>,
    /// Tokens generated when a request does not say (`max_tokens` unset or 0).
    #[serde(default = "default_vllm_max_tokens")]
    pub max_tokens: u32,
    /// The server's API token (`vllm serve --api-key`); without it, `VLLM_API_TOKEN` or the
    /// request's provider data (`vllm_api_token`) supply it. Servers without a key need none.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// Check the server's TLS certificate (`true`), skip the check (`false`), or check it
    /// against this PEM CA bundle as well as the system's roots.
    #[serde(default = "default_true_tls")]
    pub tls_verify: TlsVerify,
    /// List the server's models at start-up (and every few minutes) as `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_vllm_max_tokens() -> u32 {
    4096
}

impl RemoteConfig for VllmConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match &self.url {
            Some(url) if !url.trim().is_empty() => check_url("url", url, &mut issues),
            _ => issues.push(ConfigIssue::new(
                "url",
                "is required: the vLLM server's base URL, e.g. http://localhost:8000/v1",
            )),
        }
        if self.max_tokens == 0 {
            issues.push(ConfigIssue::new("max_tokens", "must be at least 1"));
        }
        check_tls(&self.tls_verify, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        Settings {
            base_url: joined(self.url.as_deref().unwrap_or_default(), ""),
            api_key: present(self.api_token),
            default_max_tokens: Some(self.max_tokens),
            tls_verify: self.tls_verify,
            refresh_models: self.refresh_models,
            listing: ModelListing::OpenAi,
            resilience: self.resilience,
        }
    }
}

/// `remote::ollama`: an Ollama server, through its OpenAI-compatible endpoint (`<url>/v1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaConfig {
    /// The Ollama server, e.g. `http://localhost:11434` (without `/v1`).
    #[serde(default = "default_ollama_url")]
    pub url: String,
    /// List the models pulled into Ollama (its `/api/tags`) at start-up (and every few
    /// minutes) as `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_ollama_url() -> String {
    "http://localhost:11434".into()
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

/// Settings of the hosted services that take a URL and a key and nothing else.
fn hosted(
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

/// `remote::together`: Together AI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TogetherConfig {
    /// The service's OpenAI-compatible base URL.
    #[serde(default = "default_together_url")]
    pub url: String,
    /// The Together AI API key; without it, `TOGETHER_API_KEY` or the request's provider data
    /// (`together_api_key`) supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// List the service's models at start-up (and every few minutes) as
    /// `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_together_url() -> String {
    "https://api.together.xyz/v1".into()
}

impl RemoteConfig for TogetherConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url("url", &self.url, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        hosted(
            &self.url,
            "",
            self.api_key,
            self.refresh_models,
            self.resilience,
        )
    }
}

/// `remote::fireworks`: Fireworks AI.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FireworksConfig {
    /// The service's OpenAI-compatible base URL.
    #[serde(default = "default_fireworks_url")]
    pub url: String,
    /// The Fireworks AI API key; without it, `FIREWORKS_API_KEY` or the request's provider data
    /// (`fireworks_api_key`) supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// List the service's models at start-up (and every few minutes) as
    /// `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_fireworks_url() -> String {
    "https://api.fireworks.ai/inference/v1".into()
}

impl RemoteConfig for FireworksConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url("url", &self.url, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        hosted(
            &self.url,
            "",
            self.api_key,
            self.refresh_models,
            self.resilience,
        )
    }
}

/// `remote::groq`: Groq, through its OpenAI-compatible endpoint (`<url>/openai/v1`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroqConfig {
    /// The Groq server, without the `/openai/v1` of its OpenAI-compatible endpoint.
    #[serde(default = "default_groq_url")]
    pub url: String,
    /// The Groq API key; without it, `GROQ_API_KEY` or the request's provider data
    /// (`groq_api_key`) supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// List the service's models at start-up (and every few minutes) as
    /// `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_groq_url() -> String {
    "https://api.groq.com".into()
}

impl RemoteConfig for GroqConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url("url", &self.url, &mut issues);
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        hosted(
            &self.url,
            "/openai/v1",
            self.api_key,
            self.refresh_models,
            self.resilience,
        )
    }
}

/// `remote::llama-openai-compat`: Meta's Llama API, through its OpenAI-compatible endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaApiConfig {
    /// The Llama API's OpenAI-compatible base URL.
    #[serde(default = "default_llama_api_url")]
    pub openai_compat_api_base: String,
    /// The Llama API key; without it, `LLAMA_API_KEY` or the request's provider data
    /// (`llama_api_key`) supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// List the service's models at start-up (and every few minutes) as
    /// `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_llama_api_url() -> String {
    "https://api.llama.com/compat/v1/".into()
}

impl RemoteConfig for LlamaApiConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url(
            "openai_compat_api_base",
            &self.openai_compat_api_base,
            &mut issues,
        );
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        hosted(
            &self.openai_compat_api_base,
            "",
            self.api_key,
            self.refresh_models,
            self.resilience,
        )
    }
}

/// `remote::llama-cpp-server`: a llama.cpp `llama-server`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlamaCppServerConfig {
    /// The server's URL, e.g. `http://localhost:8080`; requests go to its `/v1` routes (a URL
    /// already ending in `/v1` is taken as it is).
    #[serde(default = "default_llama_cpp_url")]
    pub openai_compat_api_base: String,
    /// The server's API key (`llama-server --api-key`); without it, `LLAMACPP_API_KEY` or the
    /// request's provider data (`llamacpp_api_key`) supply it. Servers without a key need none.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// List the service's models at start-up (and every few minutes) as
    /// `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

fn default_llama_cpp_url() -> String {
    "http://localhost:8080".into()
}

impl RemoteConfig for LlamaCppServerConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        check_url(
            "openai_compat_api_base",
            &self.openai_compat_api_base,
            &mut issues,
        );
        common_issues(&self.resilience, &mut issues);
        issues
    }

    fn into_settings(self) -> Settings {
        hosted(
            &self.openai_compat_api_base,
            // llama-server answers the OpenAI chat and model routes with and without `/v1`,
            // but `/embeddings` without it is its own native format: always use `/v1`.
            "/v1",
            self.api_key,
            self.refresh_models,
            self.resilience,
        )
    }
}

/// `remote::openai-compat`: any server speaking the OpenAI API (another Llama Stack, LM
/// Studio, LiteLLM, a gateway, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiCompatConfig {
    /// The server's OpenAI-compatible base URL: requests go to `<url>/chat/completions`,
    /// `<url>/completions`, `<url>/embeddings` and `<url>/models`. For a Llama Stack server
    /// that is `http://host:8321/v1` (or `/v1/openai/v1`).
    #[serde(default)]
    pub url: Option<String>,
    /// The server's API key, if it needs one; without it, the request's provider data
    /// (`openai_compat_api_key`) may supply it.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Check the server's TLS certificate (`true`), skip the check (`false`), or check it
    /// against this PEM CA bundle as well as the system's roots.
    #[serde(default = "default_true_tls")]
    pub tls_verify: TlsVerify,
    /// List the server's models at start-up (and every few minutes) as `<provider_id>/<model>`.
    #[serde(default)]
    pub refresh_models: bool,
    /// Timeouts, retries and circuit breaker.
    #[serde(default)]
    pub resilience: ResilienceConfig,
}

impl RemoteConfig for OpenAiCompatConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        match &self.url {
            Some(url) if !url.trim().is_empty() => check_url("url", url, &mut issues),
            _ => issues.push(ConfigIssue::new(
                "url",
                "is required: the server's OpenAI-compatible base URL, e.g. http://localhost:8321/v1",
            )),
        }
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
    use llama_stack_core::provider::parse_config;

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
