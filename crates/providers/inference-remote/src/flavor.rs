//! The provider types and their quirks: everything that differs between upstreams that speak
//! the OpenAI protocol, so the client core and the translation stay shared.

use crate::config::{
    FireworksConfig, GroqConfig, LlamaApiConfig, LlamaCppServerConfig, OllamaConfig,
    OpenAiCompatConfig, OpenAiConfig, RemoteConfig, TogetherConfig, VllmConfig,
};

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
}

/// A config type together with the provider type it configures.
pub trait Flavored: RemoteConfig {
    const FLAVOR: &'static Flavor;
}

macro_rules! flavored {
    ($config:ty, $flavor:ident) => {
        impl Flavored for $config {
            const FLAVOR: &'static Flavor = &$flavor;
        }
    };
}

pub static OPENAI: Flavor = Flavor {
    provider_type: "remote::openai",
    description: "OpenAI's API (chat, completions, embeddings)",
    sample_config: "api_key: ${env.OPENAI_API_KEY:=}\nbase_url: ${env.OPENAI_BASE_URL:=https://api.openai.com/v1}\n",
    provider_data_key: Some("openai_api_key"),
    api_key_env: Some("OPENAI_API_KEY"),
    requires_api_key: true,
    extra_sampling: false,
};

pub static VLLM: Flavor = Flavor {
    provider_type: "remote::vllm",
    description: "A vLLM server through its OpenAI-compatible API",
    sample_config: "url: ${env.VLLM_URL:=http://localhost:8000/v1}\nmax_tokens: ${env.VLLM_MAX_TOKENS:=4096}\napi_token: ${env.VLLM_API_TOKEN:=fake}\ntls_verify: ${env.VLLM_TLS_VERIFY:=true}\nresilience:\n  timeout_s: 120\n  max_retries: 2\n",
    provider_data_key: Some("vllm_api_token"),
    api_key_env: Some("VLLM_API_TOKEN"),
    requires_api_key: false,
    extra_sampling: true,
};

pub static OLLAMA: Flavor = Flavor {
    provider_type: "remote::ollama",
    description: "An Ollama server through its OpenAI-compatible endpoint; lists its pulled models",
    sample_config: "url: ${env.OLLAMA_URL:=http://localhost:11434}\nrefresh_models: true\n",
    provider_data_key: None,
    api_key_env: None,
    requires_api_key: false,
    extra_sampling: true,
};

pub static TOGETHER: Flavor = Flavor {
    provider_type: "remote::together",
    description: "Together AI",
    sample_config: "url: https://api.together.xyz/v1\napi_key: ${env.TOGETHER_API_KEY:=}\n",
    provider_data_key: Some("together_api_key"),
    api_key_env: Some("TOGETHER_API_KEY"),
    requires_api_key: true,
    extra_sampling: true,
};

pub static FIREWORKS: Flavor = Flavor {
    provider_type: "remote::fireworks",
    description: "Fireworks AI",
    sample_config: "url: https://api.fireworks.ai/inference/v1\napi_key: ${env.FIREWORKS_API_KEY:=}\n",
    provider_data_key: Some("fireworks_api_key"),
    api_key_env: Some("FIREWORKS_API_KEY"),
    requires_api_key: true,
    extra_sampling: true,
};

pub static GROQ: Flavor = Flavor {
    provider_type: "remote::groq",
    description: "Groq through its OpenAI-compatible endpoint",
    sample_config: "url: https://api.groq.com\napi_key: ${env.GROQ_API_KEY:=}\n",
    provider_data_key: Some("groq_api_key"),
    api_key_env: Some("GROQ_API_KEY"),
    requires_api_key: true,
    extra_sampling: false,
};

pub static LLAMA_API: Flavor = Flavor {
    provider_type: "remote::llama-openai-compat",
    description: "Meta's Llama API through its OpenAI-compatible endpoint",
    sample_config: "openai_compat_api_base: https://api.llama.com/compat/v1/\napi_key: ${env.LLAMA_API_KEY:=}\n",
    provider_data_key: Some("llama_api_key"),
    api_key_env: Some("LLAMA_API_KEY"),
    requires_api_key: true,
    extra_sampling: false,
};

pub static LLAMA_CPP_SERVER: Flavor = Flavor {
    provider_type: "remote::llama-cpp-server",
    description: "A llama.cpp llama-server through its OpenAI-compatible API",
    sample_config: "openai_compat_api_base: ${env.LLAMACPP_URL:=http://localhost:8080}\napi_key: ${env.LLAMACPP_API_KEY:=}\n",
    provider_data_key: Some("llamacpp_api_key"),
    api_key_env: Some("LLAMACPP_API_KEY"),
    requires_api_key: false,
    extra_sampling: true,
};

pub static OPENAI_COMPAT: Flavor = Flavor {
    provider_type: "remote::openai-compat",
    description: "Any OpenAI-compatible server at a configured base URL (another Llama Stack, a gateway, ...)",
    sample_config: "url: ${env.OPENAI_COMPAT_URL:=http://localhost:8321/v1}\napi_key: ${env.OPENAI_COMPAT_API_KEY:=}\nrefresh_models: false\nresilience:\n  timeout_s: 120\n  stream_idle_timeout_s: 120\n  max_retries: 2\n  initial_backoff_s: 0.5\n  max_backoff_s: 8\n  max_retry_after_s: 30\n  circuit_breaker_failures: 5\n  circuit_breaker_cooldown_s: 30\n",
    provider_data_key: Some("openai_compat_api_key"),
    api_key_env: None,
    requires_api_key: false,
    // Unknown upstream: stick to the fields every OpenAI-compatible server accepts.
    extra_sampling: false,
};

flavored!(OpenAiConfig, OPENAI);
flavored!(VllmConfig, VLLM);
flavored!(OllamaConfig, OLLAMA);
flavored!(TogetherConfig, TOGETHER);
flavored!(FireworksConfig, FIREWORKS);
flavored!(GroqConfig, GROQ);
flavored!(LlamaApiConfig, LLAMA_API);
flavored!(LlamaCppServerConfig, LLAMA_CPP_SERVER);
flavored!(OpenAiCompatConfig, OPENAI_COMPAT);
