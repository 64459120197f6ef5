//! `remote::wolfram-alpha`: the `wolfram_alpha` tool over the Wolfram|Alpha Full Results API.

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

use crate::common::{self, CODE_BAD_GATEWAY, Secret, Service, Upstream};

pub const PROVIDER_TYPE: &str = "remote::wolfram-alpha";
pub const TOOL_NAME: &str = "wolfram_alpha";

static SERVICE: Service = Service {
    provider_type: PROVIDER_TYPE,
    name: "Wolfram Alpha",
    provider_data_key: "wolfram_alpha_api_key",
};

/// `providers.tool_runtime[].config` of `remote::wolfram-alpha`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WolframAlphaConfig {
    /// The Wolfram|Alpha AppID. Empty or absent means none: each request must then send
    /// `{"wolfram_alpha_api_key": "<key>"}` in its `X-LlamaStack-Provider-Data` header, which
    /// also takes precedence over this key when both are given.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// Where the Wolfram|Alpha API is (default `https://api.wolframalpha.com`); set it to
    /// reach Wolfram|Alpha through a proxy, or a test server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Time allowed for one query, in seconds (default 30).
    #[serde(default = "common::default_timeout_seconds")]
    pub timeout_seconds: f64,
}

fn default_base_url() -> String {
    "https://api.wolframalpha.com".into()
}

pub const SAMPLE_CONFIG: &str = "api_key: ${env.WOLFRAM_ALPHA_API_KEY:=}\ntimeout_seconds: 30\n";

impl CheckedConfig for WolframAlphaConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        common::check_base_url(&self.base_url, &mut issues);
        common::check_timeout(self.timeout_seconds, &mut issues);
        issues
    }
}

fn build(value: Value, context: ProviderContext) -> BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<WolframAlphaConfig>(&value, PROVIDER_TYPE)?;
        let upstream = Upstream::new(
            &SERVICE,
            &context.provider_id,
            &config.base_url,
            config.api_key,
            Duration::from_secs_f64(config.timeout_seconds),
        )?;
        Ok(ProviderInstance::ToolRuntime(Arc::new(WolframAlpha {
            upstream,
        })))
    }
    .boxed()
}

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::ToolRuntime,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "Wolfram|Alpha computation (the wolfram_alpha tool, also a Llama builtin)",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<WolframAlphaConfig>,
        build,
    });
}

struct WolframAlpha {
    upstream: Upstream,
}

#[async_trait]
impl ToolRuntimeProvider for WolframAlpha {
    fn check_group(&self, group: &ToolGroup) -> Result<()> {
        common::refuse_mcp_endpoint(group, PROVIDER_TYPE)
    }

    async fn list_tools(&self, _group: &ToolGroup) -> Result<Vec<ToolDef>> {
        Ok(vec![common::tool_def(
            TOOL_NAME,
            "Query WolframAlpha for computational knowledge",
            "The query to compute",
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
        let url = self.upstream.url(
            "/v2/query",
            &[
                ("input", &query),
                ("appid", &key),
                ("format", "plaintext"),
                ("output", "json"),
            ],
        )?;
        match self
            .upstream
            .fetch_json(self.upstream.http().get(url), &key)
            .await
        {
            Ok(answer) => Ok(match reported_error(&answer) {
                Some(message) => self.upstream.fail(
                    CODE_BAD_GATEWAY,
                    format!("Wolfram Alpha refused the query: {message}"),
                ),
                None => common::success(common::python_json(&clean(answer))),
            }),
            Err(failed) => Ok(failed),
        }
    }
}

/// Wolfram|Alpha answers an unusable request (a wrong AppID) with HTTP 200 and
/// `queryresult.error: {"code", "msg"}`. Upstream strips `error` and hands back a bare
/// `success: false`; the message is kept here so the cause is visible.
fn reported_error(answer: &Value) -> Option<String> {
    let error = answer.pointer("/queryresult/error")?.as_object()?;
    let message = error
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or("no message");
    Some(match error.get("code") {
        Some(Value::String(code)) => format!("{message} (code {code})"),
        Some(Value::Number(code)) => format!("{message} (code {code})"),
        _ => message.to_string(),
    })
}

/// Bookkeeping fields of `queryresult` a model has no use for.
const DROPPED_RESULT_FIELDS: &[&str] = &[
    "datatypes",
    "error",
    "timedout",
    "timedoutpods",
    "numpods",
    "timing",
    "parsetiming",
    "parsetimedout",
    "recalculate",
    "id",
    "host",
    "server",
    "related",
    "version",
    "assumptions",
];

/// Bookkeeping fields of each pod.
const DROPPED_POD_FIELDS: &[&str] = &[
    "scanner",
    "id",
    "error",
    "expressiontypes",
    "states",
    "infos",
    "position",
    "numsubpods",
];

/// Upstream's cleaning: drop bookkeeping fields, and the pods after the one titled
/// "Result" (the answer; later pods are side notes). Everything else stays in order.
fn clean(mut answer: Value) -> Value {
    let Some(result) = answer.get_mut("queryresult").and_then(Value::as_object_mut) else {
        return answer;
    };
    result.retain(|k, _| !DROPPED_RESULT_FIELDS.contains(&k.as_str()));
    if let Some(pods) = result.get_mut("pods").and_then(Value::as_array_mut) {
        let answer_pod = pods
            .iter()
            .position(|pod| pod.get("title").and_then(Value::as_str) == Some("Result"));
        if let Some(at) = answer_pod {
            pods.truncate(at + 1);
        }
        for pod in pods.iter_mut().filter_map(Value::as_object_mut) {
            pod.retain(|k, _| !DROPPED_POD_FIELDS.contains(&k.as_str()));
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sample_and_empty_configs_validate() {
        let sample: Value = serde_norway::from_str(SAMPLE_CONFIG).unwrap();
        assert!(validate_config::<WolframAlphaConfig>(&sample).is_empty());
        assert!(validate_config::<WolframAlphaConfig>(&Value::Null).is_empty());
        let issues = validate_config::<WolframAlphaConfig>(&json!({"max_results": 3}));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path, "max_results");
    }

    #[test]
    fn bookkeeping_and_pods_after_the_result_are_dropped() {
        let answer = json!({"queryresult": {
            "success": true, "error": false, "numpods": 3, "timing": 0.5, "id": "x",
            "inputstring": "2+2", "assumptions": {"type": "Clash"},
            "pods": [
                {"title": "Input", "scanner": "Identity", "id": "Input", "position": 100,
                 "numsubpods": 1, "subpods": [{"title": "", "plaintext": "2+2"}]},
                {"title": "Result", "scanner": "Simplification", "states": [],
                 "subpods": [{"title": "", "plaintext": "4"}]},
                {"title": "Number name", "subpods": [{"plaintext": "four"}]}]}});
        assert_eq!(
            clean(answer),
            json!({"queryresult": {"success": true, "inputstring": "2+2", "pods": [
                {"title": "Input", "subpods": [{"title": "", "plaintext": "2+2"}]},
                {"title": "Result", "subpods": [{"title": "", "plaintext": "4"}]}]}})
        );
        assert_eq!(clean(json!({"other": 1})), json!({"other": 1}));
    }

    #[test]
    fn an_error_object_is_reported_and_false_is_not() {
        let refused = json!({"queryresult": {"success": false,
                              "error": {"code": "1", "msg": "Invalid appid"}}});
        assert_eq!(reported_error(&refused).unwrap(), "Invalid appid (code 1)");
        assert!(
            reported_error(&json!({"queryresult": {"success": false, "error": false}})).is_none()
        );
    }
}
