//! Tool runtimes that call a public API: `remote::tavily-search` and `remote::brave-search`
//! (the `web_search` tool) and `remote::wolfram-alpha` (the `wolfram_alpha` tool).
//!
//! Each lists one tool and runs it with one HTTP request. The API key comes from the request's
//! `X-LlamaStack-Provider-Data` or the provider config. A failing upstream is answered with a
//! result carrying `error_message` and `error_code`, so an agent's model reads what went wrong
//! instead of the turn ending.
//!
//! Depends on `llama-stack-core` and `llama-stack-types` only: never on another provider or a
//! transport.

mod common;

pub mod brave;
pub mod tavily;
pub mod wolfram;

pub use common::Secret;

/// Adds the three runtimes to the registry.
pub fn register(registry: &mut llama_stack_stack::ProviderRegistry) {
    tavily::register(registry);
    brave::register(registry);
    wolfram::register(registry);
}
