//! Provider configuration checks: every `config:` block is parsed and checked before anything
//! is built, and every problem is reported with its path.

use serde::de::DeserializeOwned;

use crate::error::Result;

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
