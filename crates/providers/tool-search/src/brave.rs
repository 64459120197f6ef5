//! `remote::brave-search`: the `web_search` tool over the Brave Search API. A Llama model
//! calls it as its builtin `brave_search`.

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
use serde_json::{Map, Value};

use crate::common::{self, Secret, Service, Upstream};

pub const PROVIDER_TYPE: &str = "remote::brave-search";
pub const TOOL_NAME: &str = "web_search";

static SERVICE: Service = Service {
    provider_type: PROVIDER_TYPE,
    name: "Brave Search",
    provider_data_key: "brave_search_api_key",
};

/// `providers.tool_runtime[].config` of `remote::brave-search`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BraveSearchConfig {
    /// The Brave Search subscription token. Empty or absent means none: each request must
    /// then send `{"brave_search_api_key": "<key>"}` in its `X-LlamaStack-Provider-Data`
    /// header, which also takes precedence over this key when both are given.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Most results returned per search (default 3): the first entries of Brave's mixed
    /// ranking.
    #[serde(default = "common::default_max_results")]
    pub max_results: u32,
    /// Where the Brave Search API is (default `https://api.search.brave.com`); set it to
    /// reach Brave through a proxy, or a test server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Time allowed for one search, in seconds (default 30).
    #[serde(default = "common::default_timeout_seconds")]
    pub timeout_seconds: f64,
}

fn default_base_url() -> String {
    "https://api.search.brave.com".into()
}

pub const SAMPLE_CONFIG: &str =
    "api_key: ${env.BRAVE_SEARCH_API_KEY:=}\nmax_results: 3\ntimeout_seconds: 30\n";

impl CheckedConfig for BraveSearchConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        common::check_max_results(self.max_results, None, &mut issues);
        common::check_base_url(&self.base_url, &mut issues);
        common::check_timeout(self.timeout_seconds, &mut issues);
        issues
    }
}

fn build(value: Value, context: ProviderContext) -> BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<BraveSearchConfig>(&value, PROVIDER_TYPE)?;
        let upstream = Upstream::new(
            &SERVICE,
            &context.provider_id,
            &config.base_url,
            config.api_key,
            Duration::from_secs_f64(config.timeout_seconds),
        )?;
        let provider = BraveSearch {
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
        description: "Brave web search (the web_search tool, Llama's builtin brave_search)",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<BraveSearchConfig>,
        build,
    });
}

struct BraveSearch {
    upstream: Upstream,
    max_results: usize,
}

#[async_trait]
impl ToolRuntimeProvider for BraveSearch {
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
            .get(self.upstream.url("/res/v1/web/search", &[("q", &query)])?)
            .header("X-Subscription-Token", &key)
            .header("Accept", "application/json");
        match self.upstream.fetch_json(request, &key).await {
            Ok(answer) => Ok(common::success(clean(&answer, self.max_results))),
            Err(failed) => Ok(failed),
        }
    }
}

/// The fields kept for each kind of result Brave ranks, and whether the ranking entry points
/// at one result of that kind (`index`) or at all of them.
fn kept_fields(kind: &str) -> Option<(&'static [&'static str], bool)> {
    Some(match kind {
        "web" => (
            &[
                "type",
                "title",
                "url",
                "description",
                "date",
                "extra_snippets",
            ],
            true,
        ),
        "faq" => (&["type", "question", "answer", "title", "url"], false),
        "infobox" => (&["type", "title", "url", "description", "long_desc"], true),
        "videos" => (&["type", "url", "title", "description", "date"], false),
        "locations" => (
            &[
                "type",
                "title",
                "url",
                "description",
                "coordinates",
                "postal_address",
                "contact",
                "rating",
                "distance",
                "zoom_level",
            ],
            false,
        ),
        "news" => (&["type", "title", "url", "description"], false),
        _ => return None,
    })
}

/// Upstream's cleaning: follow the first `max_results` entries of Brave's mixed ranking
/// (`mixed.main`), keep a few fields of what each points at, one line per entry. Each line is
/// JSON where upstream writes Python's repr; entries of unknown kinds, or pointing at nothing,
/// are left out rather than written as empty lines.
fn clean(answer: &Value, max_results: usize) -> String {
    let Some(ranking) = answer.pointer("/mixed/main").and_then(Value::as_array) else {
        return String::new();
    };
    ranking
        .iter()
        .take(max_results)
        .filter_map(|entry| clean_entry(answer, entry))
        .map(|cleaned| common::python_json(&cleaned))
        .collect::<Vec<_>>()
        .join("\n")
}

fn clean_entry(answer: &Value, entry: &Value) -> Option<Value> {
    let kind = entry.get("type")?.as_str()?;
    let (fields, indexed) = kept_fields(kind)?;
    let results = answer.get(kind)?.get("results")?.as_array()?;
    let keep = |item: &Map<String, Value>| {
        Value::Object(
            item.iter()
                .filter(|(k, _)| fields.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    if indexed {
        let index = usize::try_from(entry.get("index")?.as_u64()?).ok()?;
        Some(keep(results.get(index)?.as_object()?))
    } else {
        Some(Value::Array(
            results
                .iter()
                .filter_map(Value::as_object)
                .map(keep)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sample_and_empty_configs_validate() {
        let sample: Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        assert!(validate_config::<BraveSearchConfig>(&sample).is_empty());
        assert!(validate_config::<BraveSearchConfig>(&Value::Null).is_empty());
        let config: BraveSearchConfig = llama_stack_core::parse_config(&json!({})).unwrap();
        assert_eq!(config.base_url, "https://api.search.brave.com");
    }

    #[test]
    fn the_ranking_picks_results_and_fields() {
        let answer = json!({
            "mixed": {"main": [
                {"type": "web", "index": 1, "all": false},
                {"type": "faq", "all": true},
                {"type": "web", "index": 9},
                {"type": "discussions", "index": 0},
                {"type": "web", "index": 0}]},
            "web": {"results": [
                {"type": "search_result", "title": "zero", "url": "u0", "profile": {"x": 1}},
                {"title": "one", "url": "u1", "description": "d", "language": "en",
                 "extra_snippets": ["s"]}]},
            "faq": {"results": [{"question": "q?", "answer": "a", "meta_url": {}}]},
        });
        assert_eq!(
            clean(&answer, 3),
            "{\"title\": \"one\", \"url\": \"u1\", \"description\": \"d\", \"extra_snippets\": [\"s\"]}\n\
             [{\"question\": \"q?\", \"answer\": \"a\"}]"
        );
        assert_eq!(clean(&answer, 1).lines().count(), 1);
        assert_eq!(clean(&answer, 10).lines().count(), 3);
        assert_eq!(clean(&json!({"web": {}}), 3), "");
    }
}
