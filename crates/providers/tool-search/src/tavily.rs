//! `remote::tavily-search`: the `web_search` tool over Tavily's search API.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use llama_stack_core::config::{CheckedConfig, load_config, validate_config};
use llama_stack_core::{Api, ConfigIssue, Result};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};
use llama_stack_tools::ToolRuntimeProvider;
use llama_stack_types::{ToolDef, ToolGroup, ToolInvocationResult};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::common::{self, CODE_BAD_GATEWAY, Secret, Service, Upstream};

pub const PROVIDER_TYPE: &str = "remote::tavily-search";
pub const TOOL_NAME: &str = "web_search";
/// Tavily's own limit on `max_results`.
const MOST_RESULTS: u32 = 20;

static SERVICE: Service = Service {
    provider_type: PROVIDER_TYPE,
    name: "Tavily",
    provider_data_key: "tavily_search_api_key",
};

/// `providers.tool_runtime[].config` of `remote::tavily-search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TavilySearchConfig {
    /// The Tavily API key. Empty or absent means none: each request must then send
    /// `{"tavily_search_api_key": "<key>"}` in its `X-LlamaStack-Provider-Data` header, which
    /// also takes precedence over this key when both are given.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Most results returned per search, 1 to 20 (default 3).
    #[serde(default = "common::default_max_results")]
    pub max_results: u32,
    /// Where the Tavily API is (default `https://api.tavily.com`); set it to reach Tavily
    /// through a proxy, or a test server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Time allowed for one search, in seconds (default 30).
    #[serde(default = "common::default_timeout_seconds")]
    pub timeout_seconds: f64,
}

fn default_base_url() -> String {
    "https://api.tavily.com".into()
}

pub const SAMPLE_CONFIG: &str =
    "api_key: ${env.TAVILY_SEARCH_API_KEY:=}\nmax_results: 3\ntimeout_seconds: 30\n";

impl CheckedConfig for TavilySearchConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        common::check_max_results(self.max_results, Some(MOST_RESULTS), &mut issues);
        common::check_base_url(&self.base_url, &mut issues);
        common::check_timeout(self.timeout_seconds, &mut issues);
        issues
    }
}

fn build(value: Value, context: ProviderContext) -> BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<TavilySearchConfig>(&value, PROVIDER_TYPE)?;
        let upstream = Upstream::new(
            &SERVICE,
            &context.provider_id,
            &config.base_url,
            config.api_key,
            Duration::from_secs_f64(config.timeout_seconds),
        )?;
        let provider = TavilySearch {
            upstream,
            max_results: config.max_results as usize,
        };
        Ok(ProviderInstance::ToolRuntime(Arc::new(provider)))
    }
    .boxed()
}

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::ToolRuntime,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Tavily web search (the web_search tool), with results built for models",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<TavilySearchConfig>,
        build,
    });
}

struct TavilySearch {
    upstream: Upstream,
    max_results: usize,
}

#[async_trait]
impl ToolRuntimeProvider for TavilySearch {
    fn check_group(&self, group: &ToolGroup) -> Result<()> {
        common::refuse_mcp_endpoint(group, PROVIDER_TYPE)
    }

    async fn list_tools(&self, _group: &ToolGroup) -> Result<Vec<ToolDef>> {
        Ok(vec![common::tool_def(
            TOOL_NAME,
            "Search the web for information",
            "The query to search for",
        )])
    }

    async fn invoke(
        &self,
        _group: &ToolGroup,
        tool: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        common::check_tool_name(tool, TOOL_NAME, PROVIDER_TYPE)?;
        let query = common::query(kwargs)?;
        let key = self.upstream.api_key()?;
        let request = self
            .upstream
            .http()
            .post(self.upstream.url("/search", &[])?)
            .json(&json!({"api_key": key, "query": query, "max_results": self.max_results}));
        match self.upstream.fetch_json(request, &key).await {
            Ok(answer) => Ok(match clean(&answer, &query, self.max_results) {
                Some(cleaned) => common::success(common::python_json(&cleaned)),
                None => self.upstream.fail(
                    CODE_BAD_GATEWAY,
                    "Tavily answered without a results list".into(),
                ),
            }),
            Err(failed) => Ok(failed),
        }
    }
}

/// Upstream's result: `{"query": ..., "top_k": [results as Tavily sent them]}`, cut to
/// `max_results` in case the API sends more than asked.
fn clean(answer: &Value, asked: &str, max_results: usize) -> Option<Value> {
    let results = answer.get("results")?.as_array()?;
    let query = answer
        .get("query")
        .cloned()
        .unwrap_or_else(|| Value::String(asked.to_string()));
    let top: Vec<Value> = results.iter().take(max_results).cloned().collect();
    Some(json!({"query": query, "top_k": top}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_and_empty_configs_validate() {
        let sample: Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        assert!(validate_config::<TavilySearchConfig>(&sample).is_empty());
        assert!(validate_config::<TavilySearchConfig>(&Value::Null).is_empty());
        let config: TavilySearchConfig =
            llama_stack_core::parse_config(&json!({"api_key": ""})).unwrap();
        assert_eq!(config.max_results, 3);
        assert_eq!(config.base_url, "https://api.tavily.com");
        assert_eq!(config.timeout_seconds, 30.0);
    }

    #[test]
    fn results_are_cut_and_keep_their_fields() {
        let answer = json!({"query": "q", "answer": null, "results": [
            {"title": "a", "url": "u1", "content": "c", "score": 0.9},
            {"title": "b"}, {"title": "c"}, {"title": "d"}]});
        let cleaned = clean(&answer, "q", 2).unwrap();
        assert_eq!(
            cleaned,
            json!({"query": "q", "top_k": [
                {"title": "a", "url": "u1", "content": "c", "score": 0.9}, {"title": "b"}]})
        );
        assert_eq!(
            clean(&json!({"results": []}), "asked", 3).unwrap()["query"],
            "asked"
        );
        assert!(clean(&json!({"detail": "x"}), "q", 3).is_none());
    }
}
