//! Provider registration: how a provider crate tells the stack what it is and how to build it.
//!
//! Each provider crate exports `register(&mut ProviderRegistry)`; the distribution assembler
//! calls one such line per provider. There is no central `match` over provider names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::api::Api;
use crate::error::Result;
use crate::files::FilesProvider;
use crate::inference::InferenceProvider;
use crate::safety::SafetyProvider;
use crate::store::RegistryStore;
use crate::tool_runtime::ToolRuntime;
use crate::vector_io::VectorIoProvider;

/// One problem found while validating configuration, with the YAML path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted YAML path, e.g. `providers.inference[0].config.model_path`.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// A built provider, typed by the API it serves.
#[derive(Clone)]
pub enum ProviderInstance {
    Inference(Arc<dyn InferenceProvider>),
    Safety(Arc<dyn SafetyProvider>),
    VectorIo(Arc<dyn VectorIoProvider>),
    Files(Arc<dyn FilesProvider>),
    ToolRuntime(ToolRuntime),
    /// The agents API; the turn loop itself lives in the stack.
    Agents,
}

/// What a provider may use while it is built.
#[derive(Clone, Default)]
pub struct ProviderContext {
    /// The `provider_id` this instance was configured under.
    pub provider_id: String,
    /// The distribution's store directory, for providers that keep files.
    pub store_dir: Option<std::path::PathBuf>,
    /// The distribution's SQL store (`metadata_store`), for providers that keep records.
    pub registry: Option<Arc<dyn RegistryStore>>,
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("provider_id", &self.provider_id)
            .field("store_dir", &self.store_dir)
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

pub type ValidateFn = fn(&serde_json::Value) -> Vec<ConfigIssue>;
pub type BuildFn =
    fn(serde_json::Value, ProviderContext) -> BoxFuture<'static, Result<ProviderInstance>>;

/// Everything the stack knows about one `provider_type`.
#[derive(Clone)]
pub struct ProviderSpec {
    pub api: Api,
    pub provider_type: &'static str,
    /// Other names accepted in run.yaml for compatibility with upstream files.
    pub aliases: &'static [&'static str],
    pub description: &'static str,
    /// A sample `config:` block in YAML; a test checks that it validates.
    pub sample_config: &'static str,
    /// Checks a config block, returning every problem with a path relative to the block.
    pub validate: ValidateFn,
    /// Builds the provider from a config block that `validate` accepted.
    pub build: BuildFn,
}

/// All provider types this binary can build.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    specs: BTreeMap<String, ProviderSpec>,
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, spec: ProviderSpec) {
        self.specs.insert(spec.provider_type.to_string(), spec);
    }

    /// Looks a provider type up by its name or one of its aliases.
    pub fn get(&self, provider_type: &str) -> Option<&ProviderSpec> {
        self.specs.get(provider_type).or_else(|| {
            self.specs
                .values()
                .find(|s| s.aliases.contains(&provider_type))
        })
    }

    /// Looks a provider type up for one API: a provider of that API named so or aliased so
    /// (upstream reuses names such as `inline::meta-reference` across APIs), else a provider
    /// of another API with that name, so the caller can say it is in the wrong place. An API
    /// with no providers at all in this build finds nothing.
    pub fn get_for(&self, api: Api, provider_type: &str) -> Option<&ProviderSpec> {
        let same_api = self.specs.values().find(|s| {
            s.api == api && (s.provider_type == provider_type || s.aliases.contains(&provider_type))
        });
        same_api.or_else(|| {
            let api_known = self.specs.values().any(|s| s.api == api);
            api_known.then(|| self.specs.get(provider_type)).flatten()
        })
    }

    pub fn specs(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.specs.values()
    }

    /// The provider types registered for `api`, for "known types are ..." messages.
    pub fn known_types(&self, api: Api) -> Vec<&'static str> {
        self.specs
            .values()
            .filter(|s| s.api == api)
            .map(|s| s.provider_type)
            .collect()
    }
}

/// Deserializes a provider config, reporting every unknown or mistyped field with its path.
///
/// serde stops at the first error, so each failing field is reported, removed, and parsing
/// retried; this yields all problems in one pass over a typical config.
pub fn parse_config<C: DeserializeOwned>(value: &serde_json::Value) -> Result<C, Vec<ConfigIssue>> {
    let mut value = value.clone();
    if value.is_null() {
        value = serde_json::Value::Object(Default::default());
    }
    let mut issues = Vec::new();
    for _ in 0..32 {
        match serde_path_to_error::deserialize::<_, C>(value.clone()) {
            Ok(config) if issues.is_empty() => return Ok(config),
            Ok(_) => return Err(issues),
            Err(err) => {
                let path = err.path().to_string();
                let message = err.inner().to_string();
                let missing = message.starts_with("missing field");
                let field = if missing {
                    message.split('`').nth(1).map(str::to_string)
                } else {
                    None
                };
                // serde_path_to_error already ends the path with an unknown field's name; a
                // missing field is reported at its parent, so name it.
                let shown_path = match (&field, path.as_str(), missing) {
                    (Some(f), "." | "", true) => f.clone(),
                    (Some(f), p, true) => format!("{p}.{f}"),
                    (_, p, _) => p.to_string(),
                };
                issues.push(ConfigIssue::new(
                    shown_path.trim_start_matches('.'),
                    message,
                ));
                if missing {
                    return Err(issues);
                }
                let removed = remove_at(&mut value, &path);
                if !removed {
                    return Err(issues);
                }
            }
        }
    }
    Err(issues)
}

/// A provider config whose fields are checked beyond their types (ranges, URLs, files).
pub trait CheckedConfig: DeserializeOwned {
    /// Every problem with the parsed values; empty when the config is usable.
    fn issues(&self) -> Vec<ConfigIssue>;
}

/// A [`ProviderSpec::validate`] for a [`CheckedConfig`]: the parse problems, or else the
/// config's own.
pub fn validate_config<C: CheckedConfig>(value: &serde_json::Value) -> Vec<ConfigIssue> {
    match parse_config::<C>(value) {
        Ok(config) => config.issues(),
        Err(issues) => issues,
    }
}

/// Parses and checks a config when its provider is built. Validation has normally refused a
/// bad config before this, so the error is for configs built without it (tests, embedders);
/// it lists every problem.
pub fn load_config<C: CheckedConfig>(value: &serde_json::Value, provider_type: &str) -> Result<C> {
    let issues = match parse_config::<C>(value) {
        Ok(config) => {
            let issues = config.issues();
            if issues.is_empty() {
                return Ok(config);
            }
            issues
        }
        Err(issues) => issues,
    };
    let listed: Vec<String> = issues
        .iter()
        .map(|i| format!("{}: {}", i.path, i.message))
        .collect();
    Err(crate::error::Error::invalid(format!(
        "invalid {provider_type} config: {}",
        listed.join("; ")
    )))
}

/// Removes the value at a serde path (`a.b[0].c`).
fn remove_at(root: &mut serde_json::Value, path: &str) -> bool {
    let segments: Vec<&str> = if path == "." || path.is_empty() {
        vec![]
    } else {
        path.split('.').collect()
    };
    let Some((last, parent_segments)) = segments.split_last() else {
        return false;
    };
    let mut cursor = root;
    for seg in parent_segments {
        let (key, index) = split_index(seg);
        cursor = match cursor.get_mut(key) {
            Some(v) => v,
            None => return false,
        };
        if let Some(i) = index {
            cursor = match cursor.get_mut(i) {
                Some(v) => v,
                None => return false,
            };
        }
    }
    let (key, index) = split_index(last);
    match index {
        None => cursor
            .as_object_mut()
            .map(|o| o.remove(key).is_some())
            .unwrap_or(false),
        Some(i) => match cursor.get_mut(key).and_then(|v| v.as_array_mut()) {
            Some(arr) if i < arr.len() => {
                arr.remove(i);
                true
            }
            _ => false,
        },
    }
}

fn split_index(seg: &str) -> (&str, Option<usize>) {
    match seg.find('[') {
        Some(pos) => (
            &seg[..pos],
            seg[pos + 1..].trim_end_matches(']').parse().ok(),
        ),
        None => (seg, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        url: String,
        #[serde(default)]
        retries: u32,
    }

    impl CheckedConfig for Sample {
        fn issues(&self) -> Vec<ConfigIssue> {
            let mut issues = Vec::new();
            if !self.url.starts_with("http") {
                issues.push(ConfigIssue::new("url", "must be an http(s) URL"));
            }
            if self.retries > 5 {
                issues.push(ConfigIssue::new("retries", "must be at most 5"));
            }
            issues
        }
    }

    #[test]
    fn checked_configs_report_parse_problems_first_then_their_own() {
        let parse = validate_config::<Sample>(&serde_json::json!({"url": 1, "extra": true}));
        assert!(
            parse.iter().any(|i| i.path == "url") && parse.iter().any(|i| i.path == "extra"),
            "{parse:?}"
        );
        let own = validate_config::<Sample>(&serde_json::json!({"url": "ftp://x", "retries": 9}));
        assert_eq!(
            own.iter().map(|i| i.path.as_str()).collect::<Vec<_>>(),
            ["url", "retries"]
        );
        let err = load_config::<Sample>(
            &serde_json::json!({"url": "ftp://x", "retries": 9}),
            "remote::x",
        )
        .unwrap_err();
        assert_eq!(
            err.message(),
            "invalid remote::x config: url: must be an http(s) URL; retries: must be at most 5"
        );
        let ok =
            load_config::<Sample>(&serde_json::json!({"url": "http://x"}), "remote::x").unwrap();
        assert_eq!(ok.retries, 0);
    }

    #[test]
    fn parse_config_reports_every_problem() {
        let v = serde_json::json!({"url": "x", "retries": "many", "colour": 1});
        let issues = parse_config::<Sample>(&v).unwrap_err();
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert!(paths.contains(&"retries"), "{issues:?}");
        assert!(paths.contains(&"colour"), "{issues:?}");
    }

    #[test]
    fn parse_config_accepts_null_as_empty() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {
            #[serde(default)]
            _x: Option<u32>,
        }
        assert!(parse_config::<Empty>(&serde_json::Value::Null).is_ok());
    }
}
