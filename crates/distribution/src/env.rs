//! Environment substitution in run.yaml values.
//!
//! Every string value of the configuration may reference environment variables:
//!
//! * `${env.NAME}`: required; an unset or empty `NAME` is an error naming the variable and the
//!   YAML path that needs it.
//! * `${env.NAME:=default}`: `NAME`, or `default` when `NAME` is unset or empty (`${env.NAME:=}`
//!   gives the empty string).
//! * `${env.NAME:+value}`: `value` when `NAME` is set and non-empty, otherwise the empty string.
//!
//! A string that contained a reference is then converted as a whole: `""` becomes null,
//! `true`/`false` (any case) a boolean, then an integer, then a float, otherwise it stays a
//! string. Strings without a reference keep the type YAML gave them, so a quoted `'0123'` stays a
//! string. A leading `~` (alone or followed by `/`) is replaced by `$HOME` in every string.
//!
//! The functions here are pure: they read the variables from the map they are given. Use
//! [`process_env`] to build that map from the process environment plus `--env` overrides.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Environment variables by name.
pub type EnvMap = BTreeMap<String, String>;

/// One substitution failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvError {
    /// YAML path of the value that holds the reference, e.g. `providers.inference[0].config.url`.
    pub path: String,
    /// The variable concerned.
    pub variable: String,
    pub message: String,
}

/// `${env.NAME}`, `${env.NAME:=default}` and `${env.NAME:+value}`.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{env\.([A-Z0-9_]+)(?::([=+])([^}]*))?\}").expect("valid regex")
});

/// Anything that starts like a reference, to catch the forms the strict pattern rejects.
static LOOSE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{env\.([^}]*)\}?").expect("valid regex"));

/// The process environment (variables that are valid UTF-8) with `overrides` on top.
pub fn process_env(overrides: &EnvMap) -> EnvMap {
    let mut env: EnvMap = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    env.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Parses one `--env KEY=VALUE` argument.
pub fn parse_env_override(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("`{arg}` is not of the form KEY=VALUE")),
    }
}

/// Substitutes every string of `value`, returning the new value and every error found.
///
/// A failed reference is replaced by the empty string so that the rest of the document can
/// still be checked; callers must treat the result as unusable when errors are returned.
pub fn substitute(value: &Value, env: &EnvMap) -> (Value, Vec<EnvError>) {
    let mut errors = Vec::new();
    let out = substitute_at(value, env, "", &mut errors);
    (out, errors)
}

fn substitute_at(value: &Value, env: &EnvMap, path: &str, errors: &mut Vec<EnvError>) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_at(v, env, &join_key(path, k), errors)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| substitute_at(v, env, &format!("{path}[{i}]"), errors))
                .collect(),
        ),
        Value::String(s) => match substitute_str(s, env) {
            Ok(Substituted::Literal(text)) => Value::String(expand_home(&text, env)),
            Ok(Substituted::Interpolated(text)) => convert_scalar(&expand_home(&text, env)),
            Err(failures) => {
                errors.extend(failures.into_iter().map(|(variable, message)| EnvError {
                    path: path.to_string(),
                    variable,
                    message,
                }));
                Value::Null
            }
        },
        other => other.clone(),
    }
}

/// Appends a mapping key to a YAML path.
pub(crate) fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The result of substituting one string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Substituted {
    /// The string held no reference and is unchanged.
    Literal(String),
    /// At least one reference was replaced; the text is subject to type conversion.
    Interpolated(String),
}

/// Replaces the references in one string. Errors are `(variable, message)` pairs, one per bad
/// reference.
pub fn substitute_str(input: &str, env: &EnvMap) -> Result<Substituted, Vec<(String, String)>> {
    if !input.contains("${env.") {
        return Ok(Substituted::Literal(input.to_string()));
    }
    let mut errors = Vec::new();
    let mut out = String::with_capacity(input.len());
    let mut last = 0;
    for caps in REFERENCE.captures_iter(input) {
        let whole = caps.get(0).expect("group 0 always matches");
        check_malformed(&input[last..whole.start()], &mut errors);
        out.push_str(&input[last..whole.start()]);
        last = whole.end();

        let name = &caps[1];
        let set_value = env.get(name).filter(|v| !v.is_empty());
        match (caps.get(2).map(|m| m.as_str()), set_value) {
            (None, Some(v)) => out.push_str(v),
            (None, None) => errors.push((
                name.to_string(),
                format!(
                    "environment variable `{name}` is not set or is empty; set it (or pass \
                     `--env {name}=<value>`), or give a default with `${{env.{name}:=<default>}}`"
                ),
            )),
            (Some("="), Some(v)) => out.push_str(v),
            (Some("="), None) => out.push_str(&caps[3]),
            (Some(_), Some(_)) => out.push_str(&caps[3]),
            (Some(_), None) => {}
        }
    }
    check_malformed(&input[last..], &mut errors);
    out.push_str(&input[last..]);
    if errors.is_empty() {
        Ok(Substituted::Interpolated(out))
    } else {
        Err(errors)
    }
}

/// Reports `${env.` references that the strict pattern did not accept.
fn check_malformed(text: &str, errors: &mut Vec<(String, String)>) {
    for caps in LOOSE_REFERENCE.captures_iter(text) {
        let whole = &caps[0];
        let body = &caps[1];
        let (name, rest) = match body.find([':', '+', '=']) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        let message = if !whole.ends_with('}') {
            format!("`{whole}` is missing its closing `}}`")
        } else if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            format!(
                "`{whole}`: environment variable names may only use upper-case letters, digits \
                 and `_`"
            )
        } else if let Some(default) = rest.strip_prefix(':') {
            format!(
                "`{whole}` uses the old default syntax; write `${{env.{name}:={default}}}` instead"
            )
        } else if let Some(value) = rest.strip_prefix('+') {
            format!(
                "`{whole}` uses the old conditional syntax; write `${{env.{name}:+{value}}}` \
                 instead"
            )
        } else {
            format!(
                "`{whole}` is not a valid reference; use `${{env.NAME}}`, `${{env.NAME:=default}}` \
                 or `${{env.NAME:+value}}`"
            )
        };
        errors.push((name.to_string(), message));
    }
}

/// Converts a substituted string to the value it spells.
pub fn convert_scalar(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if text.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if text.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::from(u);
    }
    if let Ok(f) = text.parse::<f64>()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(text.to_string())
}

/// Replaces a leading `~` (alone or before `/`) with `HOME` from `env`, when it is set.
pub fn expand_home(text: &str, env: &EnvMap) -> String {
    let rest = match text.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
        _ => return text.to_string(),
    };
    match env.get("HOME").filter(|h| !h.is_empty()) {
        Some(home) => format!("{}{rest}", home.trim_end_matches('/')),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> EnvMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(text: &str, vars: &[(&str, &str)]) -> Result<Value, Vec<EnvError>> {
        let (value, errors) = substitute(&json!({ "key": text }), &env(vars));
        if errors.is_empty() {
            Ok(value["key"].clone())
        } else {
            Err(errors)
        }
    }

    #[test]
    fn required_variable_is_replaced() {
        assert_eq!(
            one("${env.URL}", &[("URL", "http://h:1")]).unwrap(),
            "http://h:1"
        );
        assert_eq!(
            one("pre-${env.A}-${env.B}-post", &[("A", "x"), ("B", "y")]).unwrap(),
            "pre-x-y-post"
        );
    }

    #[test]
    fn required_variable_missing_or_empty_names_variable_and_path() {
        let doc = json!({"providers": {"inference": [{"config": {"url": "${env.OLLAMA_URL}"}}]}});
        for vars in [env(&[]), env(&[("OLLAMA_URL", "")])] {
            let (_, errors) = substitute(&doc, &vars);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].variable, "OLLAMA_URL");
            assert_eq!(errors[0].path, "providers.inference[0].config.url");
            assert!(
                errors[0].message.contains("OLLAMA_URL"),
                "{}",
                errors[0].message
            );
        }
    }

    #[test]
    fn every_failure_is_collected() {
        let doc = json!({"a": "${env.ONE}", "b": ["${env.TWO} ${env.THREE}"]});
        let (_, errors) = substitute(&doc, &env(&[]));
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.path.as_str(), e.variable.as_str()))
            .collect();
        assert_eq!(got, [("a", "ONE"), ("b[0]", "TWO"), ("b[0]", "THREE")]);
    }

    #[test]
    fn default_form() {
        assert_eq!(one("${env.P:=8321}", &[]).unwrap(), json!(8321));
        assert_eq!(one("${env.P:=8321}", &[("P", "")]).unwrap(), json!(8321));
        assert_eq!(
            one("${env.P:=8321}", &[("P", "9000")]).unwrap(),
            json!(9000)
        );
        assert_eq!(
            one("${env.U:=http://x:1/v1}", &[]).unwrap(),
            "http://x:1/v1"
        );
    }

    #[test]
    fn empty_default_gives_null() {
        assert_eq!(one("${env.KEY:=}", &[]).unwrap(), Value::Null);
    }

    #[test]
    fn conditional_form() {
        assert_eq!(
            one("${env.URL:+ollama}", &[("URL", "u")]).unwrap(),
            "ollama"
        );
        assert_eq!(one("${env.URL:+ollama}", &[]).unwrap(), Value::Null);
        assert_eq!(
            one("${env.URL:+ollama}", &[("URL", "")]).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn interpolated_strings_are_type_converted() {
        assert_eq!(one("${env.X}", &[("X", "true")]).unwrap(), json!(true));
        assert_eq!(one("${env.X}", &[("X", "FALSE")]).unwrap(), json!(false));
        assert_eq!(one("${env.X}", &[("X", "-12")]).unwrap(), json!(-12));
        assert_eq!(one("${env.X}", &[("X", "0.5")]).unwrap(), json!(0.5));
        assert_eq!(one("${env.X}", &[("X", "1e3")]).unwrap(), json!(1000.0));
        assert_eq!(one("${env.X}", &[("X", "nan")]).unwrap(), json!("nan"));
        assert_eq!(one("${env.X}", &[("X", "llama")]).unwrap(), json!("llama"));
        assert_eq!(one("v${env.X}", &[("X", "1")]).unwrap(), json!("v1"));
    }

    #[test]
    fn literal_strings_keep_their_type() {
        assert_eq!(one("0123", &[]).unwrap(), json!("0123"));
        assert_eq!(one("true", &[]).unwrap(), json!("true"));
        assert_eq!(one("", &[]).unwrap(), json!(""));
        let (v, errors) = substitute(&json!({"n": 3, "b": false, "z": null}), &env(&[]));
        assert!(errors.is_empty());
        assert_eq!(v, json!({"n": 3, "b": false, "z": null}));
    }

    #[test]
    fn home_is_expanded() {
        let vars = [("HOME", "/home/u"), ("D", "~/.llama/d")];
        assert_eq!(one("~/.llama", &vars).unwrap(), "/home/u/.llama");
        assert_eq!(one("~", &vars).unwrap(), "/home/u");
        assert_eq!(
            one("${env.D}/x.db", &vars).unwrap(),
            "/home/u/.llama/d/x.db"
        );
        assert_eq!(
            one("${env.NOPE:=~/s}/r.db", &vars).unwrap(),
            "/home/u/s/r.db"
        );
        assert_eq!(one("~user/x", &vars).unwrap(), "~user/x");
        assert_eq!(one("a/~/b", &vars).unwrap(), "a/~/b");
    }

    #[test]
    fn old_and_malformed_forms_are_errors() {
        let err = one("${env.URL:http://x}", &[]).unwrap_err();
        assert!(err[0].message.contains("${env.URL:=http://x}"), "{err:?}");
        let err = one("${env.URL+ollama}", &[]).unwrap_err();
        assert!(err[0].message.contains("${env.URL:+ollama}"), "{err:?}");
        let err = one("${env.lower}", &[("lower", "x")]).unwrap_err();
        assert!(err[0].message.contains("upper-case"), "{err:?}");
        let err = one("${env.URL", &[]).unwrap_err();
        assert!(err[0].message.contains("closing"), "{err:?}");
    }

    #[test]
    fn mapping_keys_are_not_substituted() {
        let (v, errors) = substitute(&json!({"${env.K}": 1}), &env(&[]));
        assert!(errors.is_empty());
        assert_eq!(v, json!({"${env.K}": 1}));
    }

    #[test]
    fn overrides_win_over_process_env() {
        let overrides = env(&[("PATH", "overridden"), ("LLAMA_STACK_TEST_ONLY", "1")]);
        let merged = process_env(&overrides);
        assert_eq!(merged["PATH"], "overridden");
        assert_eq!(merged["LLAMA_STACK_TEST_ONLY"], "1");
    }

    #[test]
    fn parses_cli_overrides() {
        assert_eq!(
            parse_env_override("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert_eq!(
            parse_env_override("A=").unwrap(),
            ("A".to_string(), String::new())
        );
        assert!(parse_env_override("A").is_err());
        assert!(parse_env_override("=x").is_err());
    }
}
