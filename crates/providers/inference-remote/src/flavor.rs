//! The provider types and their quirks: everything that differs between upstreams that speak
//! the OpenAI protocol, so the client core and the translation stay shared.
//!
//! The table at the end of this file is the one list of the types: each entry gives its type's
//! config struct, flavor and registration, so none of them can be left out of one place.

use llama_stack_core::CheckedConfig;
use llama_stack_core::ConfigIssue;
use llama_stack_inference::resilience::ResilienceConfig;
use serde::Deserialize;

use crate::config::{RemoteConfig, Secret, Settings, TlsVerify, check_url, common_issues, hosted};

/// One provider type.
#[derive(Debug)]
pub struct Flavor {
    pub provider_type: &'static str,
    pub description: &'static str,
    pub sample_config: &'static str,
    /// The `X-LlamaStack-Provider-Data` key that carries a per-request API key, named as
    /// upstream names it.
    pub provider_data_key: Option<&'static str>,
    /// The server environment variable read when neither the request nor the config has a key.
    pub api_key_env: Option<&'static str>,
    /// Whether requests fail (401) without a key rather than go out without one.
    pub requires_api_key: bool,
    /// Whether the upstream accepts `top_k` and `repetition_penalty` beside the OpenAI
    /// sampling fields (OpenAI itself refuses unknown fields).
    pub extra_sampling: bool,
    /// Where the upstream serves reranking in the Jina/Cohere shape (`{model, query,
    /// documents, top_n}` answered with `results: [{index, relevance_score}]`), if it does.
    pub rerank: RerankRoute,
}

/// Where an upstream's rerank route is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankRoute {
    /// The upstream has none: reranking is refused as unsupported.
    None,
    /// This path at the server's root: the base URL without its trailing `/v1`.
    ServerRoot(&'static str),
    /// This path under the base URL, like the OpenAI routes.
    BaseUrl(&'static str),
}

/// A config type together with the provider type it configures.
pub trait Flavored: RemoteConfig {
    const FLAVOR: &'static Flavor;
}

/// Expands the table: per entry, the config struct with its defaults, the [`Flavor`] static,
/// the [`Flavored`] and [`CheckedConfig`] impls and, for `settings: hosted(url_field, suffix)`,
/// the [`RemoteConfig`] impl of a service that takes a URL and a key and nothing else
/// (`settings: by_hand` types implement it in `config.rs`). [`TYPES`] lists them all.
///
/// Defaults sit on the struct (`#[serde(default)]` with `Default`), so an entry states each
/// field's default beside its type, and a missing field reads as that default.
macro_rules! remote_types {
    (@settings $config:ident by_hand) => {};
    (@settings $config:ident hosted($url:ident, $suffix:expr)) => {
        impl RemoteConfig for $config {
            fn issues(&self) -> Vec<ConfigIssue> {
                let mut issues = Vec::new();
                check_url(stringify!($url), &self.$url, &mut issues);
                common_issues(&self.resilience, &mut issues);
                issues
            }

            fn into_settings(self) -> Settings {
                hosted(
                    &self.$url,
                    $suffix,
                    self.api_key,
                    self.refresh_models,
                    self.resilience,
                )
            }
        }
    };
    ($(
        $(#[$doc:meta])*
        $config:ident => $flavor:ident { $($flavor_field:ident: $flavor_value:expr),* $(,)? }
        settings: $settings:ident $(($($settings_args:tt)*))? {
            $($(#[$field_doc:meta])* $field:ident: $field_ty:ty = $default:expr),* $(,)?
        }
    )*) => {
        pub(crate) mod configs {
            use super::*;

            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Deserialize)]
                #[serde(deny_unknown_fields, default)]
                pub struct $config {
                    $($(#[$field_doc])* pub $field: $field_ty,)*
                }

                impl Default for $config {
                    fn default() -> Self {
                        $config { $($field: $default,)* }
                    }
                }

                impl CheckedConfig for $config {
                    fn issues(&self) -> Vec<ConfigIssue> {
                        RemoteConfig::issues(self)
                    }
                }

                impl Flavored for $config {
                    const FLAVOR: &'static Flavor = &super::$flavor;
                }

                remote_types!(@settings $config $settings $(($($settings_args)*))?);
            )*
        }

        $(pub static $flavor: Flavor = Flavor { $($flavor_field: $flavor_value),* };)*

        /// Every provider type, as the registry spec of each.
        pub(crate) static TYPES: &[fn() -> crate::ProviderSpec] =
            &[$(crate::spec::<configs::$config>),*];
    };
}

remote_types! {
    /// `remote::openai`: OpenAI's API.
    OpenAiConfig => OPENAI {
        provider_type: "remote::openai",
        description: "OpenAI's API (chat, completions, embeddings)",
        sample_config: "api_key: ${env.OPENAI_API_KEY:=}\nbase_url: ${env.OPENAI_BASE_URL:=https://api.openai.com/v1}\n",
        provider_data_key: Some("openai_api_key"),
        api_key_env: Some("OPENAI_API_KEY"),
        requires_api_key: true,
        extra_sampling: false,
        rerank: RerankRoute::None,
    }
    settings: hosted(base_url, "") {
        /// The OpenAI API key; without it, `OPENAI_API_KEY` or the request's provider data
        /// (`openai_api_key`) supply it.
        api_key: Option<Secret> = None,
        /// The API's base URL.
        base_url: String = "https://api.openai.com/v1".into(),
        /// List the upstream's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::vllm`: a vLLM server's OpenAI-compatible API.
    VllmConfig => VLLM {
        provider_type: "remote::vllm",
        description: "A vLLM server through its OpenAI-compatible API",
        sample_config: "url: ${env.VLLM_URL:=http://localhost:8000/v1}\nmax_tokens: ${env.VLLM_MAX_TOKENS:=4096}\napi_token: ${env.VLLM_API_TOKEN:=fake}\ntls_verify: ${env.VLLM_TLS_VERIFY:=true}\nresilience:\n  timeout_s: 120\n  max_retries: 2\n",
        provider_data_key: Some("vllm_api_token"),
        api_key_env: Some("VLLM_API_TOKEN"),
        requires_api_key: false,
        extra_sampling: true,
        // vLLM serves `/rerank` beside `/v1`, as upstream calls it.
        rerank: RerankRoute::ServerRoot("rerank"),
    }
    settings: by_hand {
        /// The server's OpenAI-compatible base URL, e.g. `http://localhost:8000/v1`.
        url: Option<String> = None,
        /// Tokens generated when a request does not say (`max_tokens` unset or 0).
        max_tokens: u32 = 4096,
        /// The server's API token (`vllm serve --api-key`); without it, `VLLM_API_TOKEN` or the
        /// request's provider data (`vllm_api_token`) supply it. Servers without a key need none.
        api_token: Option<Secret> = None,
        /// Check the server's TLS certificate (`true`), skip the check (`false`), or check it
        /// against this PEM CA bundle as well as the system's roots.
        tls_verify: TlsVerify = TlsVerify::default(),
        /// List the server's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::ollama`: an Ollama server, through its OpenAI-compatible endpoint (`<url>/v1`).
    OllamaConfig => OLLAMA {
        provider_type: "remote::ollama",
        description: "An Ollama server through its OpenAI-compatible endpoint; lists its pulled models",
        sample_config: "url: ${env.OLLAMA_URL:=http://localhost:11434}\nrefresh_models: true\n",
        provider_data_key: None,
        api_key_env: None,
        requires_api_key: false,
        extra_sampling: true,
        rerank: RerankRoute::None,
    }
    settings: by_hand {
        /// The Ollama server, e.g. `http://localhost:11434` (without `/v1`).
        url: String = "http://localhost:11434".into(),
        /// List the models pulled into Ollama (its `/api/tags`) at start-up (and every few
        /// minutes) as `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::together`: Together AI.
    TogetherConfig => TOGETHER {
        provider_type: "remote::together",
        description: "Together AI",
        sample_config: "url: https://api.together.xyz/v1\napi_key: ${env.TOGETHER_API_KEY:=}\n",
        provider_data_key: Some("together_api_key"),
        api_key_env: Some("TOGETHER_API_KEY"),
        requires_api_key: true,
        extra_sampling: true,
        rerank: RerankRoute::None,
    }
    settings: hosted(url, "") {
        /// The service's OpenAI-compatible base URL.
        url: String = "https://api.together.xyz/v1".into(),
        /// The Together AI API key; without it, `TOGETHER_API_KEY` or the request's provider
        /// data (`together_api_key`) supply it.
        api_key: Option<Secret> = None,
        /// List the service's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::fireworks`: Fireworks AI.
    FireworksConfig => FIREWORKS {
        provider_type: "remote::fireworks",
        description: "Fireworks AI",
        sample_config: "url: https://api.fireworks.ai/inference/v1\napi_key: ${env.FIREWORKS_API_KEY:=}\n",
        provider_data_key: Some("fireworks_api_key"),
        api_key_env: Some("FIREWORKS_API_KEY"),
        requires_api_key: true,
        extra_sampling: true,
        rerank: RerankRoute::None,
    }
    settings: hosted(url, "") {
        /// The service's OpenAI-compatible base URL.
        url: String = "https://api.fireworks.ai/inference/v1".into(),
        /// The Fireworks AI API key; without it, `FIREWORKS_API_KEY` or the request's provider
        /// data (`fireworks_api_key`) supply it.
        api_key: Option<Secret> = None,
        /// List the service's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::groq`: Groq, through its OpenAI-compatible endpoint (`<url>/openai/v1`).
    GroqConfig => GROQ {
        provider_type: "remote::groq",
        description: "Groq through its OpenAI-compatible endpoint",
        sample_config: "url: https://api.groq.com\napi_key: ${env.GROQ_API_KEY:=}\n",
        provider_data_key: Some("groq_api_key"),
        api_key_env: Some("GROQ_API_KEY"),
        requires_api_key: true,
        extra_sampling: false,
        rerank: RerankRoute::None,
    }
    settings: hosted(url, "/openai/v1") {
        /// The Groq server, without the `/openai/v1` of its OpenAI-compatible endpoint.
        url: String = "https://api.groq.com".into(),
        /// The Groq API key; without it, `GROQ_API_KEY` or the request's provider data
        /// (`groq_api_key`) supply it.
        api_key: Option<Secret> = None,
        /// List the service's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::llama-openai-compat`: Meta's Llama API, through its OpenAI-compatible endpoint.
    LlamaApiConfig => LLAMA_API {
        provider_type: "remote::llama-openai-compat",
        description: "Meta's Llama API through its OpenAI-compatible endpoint",
        sample_config: "openai_compat_api_base: https://api.llama.com/compat/v1/\napi_key: ${env.LLAMA_API_KEY:=}\n",
        provider_data_key: Some("llama_api_key"),
        api_key_env: Some("LLAMA_API_KEY"),
        requires_api_key: true,
        extra_sampling: false,
        rerank: RerankRoute::None,
    }
    settings: hosted(openai_compat_api_base, "") {
        /// The Llama API's OpenAI-compatible base URL.
        openai_compat_api_base: String = "https://api.llama.com/compat/v1/".into(),
        /// The Llama API key; without it, `LLAMA_API_KEY` or the request's provider data
        /// (`llama_api_key`) supply it.
        api_key: Option<Secret> = None,
        /// List the service's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::llama-cpp-server`: a llama.cpp `llama-server`.
    LlamaCppServerConfig => LLAMA_CPP_SERVER {
        provider_type: "remote::llama-cpp-server",
        description: "A llama.cpp llama-server through its OpenAI-compatible API",
        sample_config: "openai_compat_api_base: ${env.LLAMACPP_URL:=http://localhost:8080}\napi_key: ${env.LLAMACPP_API_KEY:=}\n",
        provider_data_key: Some("llamacpp_api_key"),
        api_key_env: Some("LLAMACPP_API_KEY"),
        requires_api_key: false,
        extra_sampling: true,
        // llama-server started with `--reranking`.
        rerank: RerankRoute::BaseUrl("rerank"),
    }
    // llama-server answers the OpenAI chat and model routes with and without `/v1`, but
    // `/embeddings` without it is its own native format: always use `/v1`.
    settings: hosted(openai_compat_api_base, "/v1") {
        /// The server's URL, e.g. `http://localhost:8080`; requests go to its `/v1` routes (a
        /// URL already ending in `/v1` is taken as it is).
        openai_compat_api_base: String = "http://localhost:8080".into(),
        /// The server's API key (`llama-server --api-key`); without it, `LLAMACPP_API_KEY` or
        /// the request's provider data (`llamacpp_api_key`) supply it. Servers without a key
        /// need none.
        api_key: Option<Secret> = None,
        /// List the service's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }

    /// `remote::openai-compat`: any server speaking the OpenAI API (another Llama Stack, LM
    /// Studio, LiteLLM, a gateway, ...).
    OpenAiCompatConfig => OPENAI_COMPAT {
        provider_type: "remote::openai-compat",
        description: "Any OpenAI-compatible server at a configured base URL (another Llama Stack, a gateway, ...)",
        sample_config: "url: ${env.OPENAI_COMPAT_URL:=http://localhost:8321/v1}\napi_key: ${env.OPENAI_COMPAT_API_KEY:=}\nrefresh_models: false\nresilience:\n  timeout_s: 120\n  stream_idle_timeout_s: 120\n  max_retries: 2\n  initial_backoff_s: 0.5\n  max_backoff_s: 8\n  max_retry_after_s: 30\n  circuit_breaker_failures: 5\n  circuit_breaker_cooldown_s: 30\n",
        provider_data_key: Some("openai_compat_api_key"),
        api_key_env: None,
        requires_api_key: false,
        // Unknown upstream: stick to the fields every OpenAI-compatible server accepts.
        extra_sampling: false,
        // Gateways such as LiteLLM serve the Cohere shape at `<base>/rerank`.
        rerank: RerankRoute::BaseUrl("rerank"),
    }
    settings: by_hand {
        /// The server's OpenAI-compatible base URL: requests go to `<url>/chat/completions`,
        /// `<url>/completions`, `<url>/embeddings` and `<url>/models`. For a Llama Stack
        /// server that is `http://host:8321/v1` (or `/v1/openai/v1`).
        url: Option<String> = None,
        /// The server's API key, if it needs one; without it, the request's provider data
        /// (`openai_compat_api_key`) may supply it.
        api_key: Option<Secret> = None,
        /// Check the server's TLS certificate (`true`), skip the check (`false`), or check it
        /// against this PEM CA bundle as well as the system's roots.
        tls_verify: TlsVerify = TlsVerify::default(),
        /// List the server's models at start-up (and every few minutes) as
        /// `<provider_id>/<model>`.
        refresh_models: bool = false,
        /// Timeouts, retries and circuit breaker.
        resilience: ResilienceConfig = ResilienceConfig::default(),
    }
}
