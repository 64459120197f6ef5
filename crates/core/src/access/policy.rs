//! `server.auth.access_policy` and `server.auth.route_policy` in upstream's rule syntax: rules
//! tried in order, the first whose scope and condition match decides, and no match denies.

use regex::Regex;
use serde_json::Value;

use crate::ConfigIssue;
use llama_stack_types::User;

/// What a caller does to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Read,
    Update,
    Delete,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Create, Action::Read, Action::Update, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Read => "read",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }

    fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// A `when` / `unless` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    UserIsOwner,
    UserIsNotOwner,
    /// `user in owners <attr>`: the user shares a value of `attr` with the owner.
    UserInOwners(String),
    UserNotInOwners(String),
    /// `user with <value> in <attr>`.
    UserWith {
        value: String,
        attribute: String,
    },
    UserWithout {
        value: String,
        attribute: String,
    },
    ResourceIsUnowned,
}

impl Condition {
    pub fn parse(text: &str) -> Option<Condition> {
        let words: Vec<&str> = text.split_whitespace().collect();
        Some(match words.as_slice() {
            ["user", "is", "owner"] => Condition::UserIsOwner,
            ["user", "is", "not", "owner"] => Condition::UserIsNotOwner,
            ["user", "in", "owners", name] => Condition::UserInOwners(name.to_string()),
            ["user", "not", "in", "owners", name] => Condition::UserNotInOwners(name.to_string()),
            ["user", "with", value, "in", name] => Condition::UserWith {
                value: value.to_string(),
                attribute: name.to_string(),
            },
            ["user", "with", value, "not", "in", name] => Condition::UserWithout {
                value: value.to_string(),
                attribute: name.to_string(),
            },
            ["resource", "is", "unowned"] => Condition::ResourceIsUnowned,
            _ => return None,
        })
    }

    fn matches(&self, owner: Option<&User>, user: &User) -> bool {
        let shares = |name: &str| {
            let mine = user.attribute(name);
            owner.is_some_and(|o| o.attribute(name).iter().any(|v| mine.contains(v)))
        };
        let has = |value: &str, name: &str| user.attribute(name).iter().any(|v| v == value);
        match self {
            Condition::UserIsOwner => owner.is_some_and(|o| o.principal == user.principal),
            Condition::UserIsNotOwner => owner.is_none_or(|o| o.principal != user.principal),
            Condition::UserInOwners(name) => shares(name),
            Condition::UserNotInOwners(name) => !shares(name),
            Condition::UserWith { value, attribute } => has(value, attribute),
            Condition::UserWithout { value, attribute } => !has(value, attribute),
            Condition::ResourceIsUnowned => owner.is_none(),
        }
    }
}

/// `when` (all must hold) or `unless` (the rule applies when not all hold), as upstream reads
/// a list of conditions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Guard {
    #[default]
    Always,
    When(Vec<Condition>),
    Unless(Vec<Condition>),
}

impl Guard {
    fn holds(&self, owner: Option<&User>, user: &User) -> bool {
        match self {
            Guard::Always => true,
            Guard::When(all) => all.iter().all(|c| c.matches(owner, user)),
            Guard::Unless(all) => !all.iter().all(|c| c.matches(owner, user)),
        }
    }
}

/// A resource pattern: `model::id`, `model::*` or `regex:...` (anchored at the start, as
/// Python's `re.match`).
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl Pattern {
    fn parse(text: &str, star_is_prefix: bool) -> Result<Pattern, String> {
        if let Some(re) = text.strip_prefix("regex:") {
            return Regex::new(&format!("^(?:{re})"))
                .map(Pattern::Regex)
                .map_err(|e| format!("invalid regex '{re}': {e}"));
        }
        match text.strip_suffix('*') {
            Some(prefix) if star_is_prefix || prefix.ends_with("::") => {
                Ok(Pattern::Prefix(prefix.to_string()))
            }
            _ => Ok(Pattern::Exact(text.to_string())),
        }
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == text,
            Pattern::Prefix(p) => text.starts_with(p.as_str()),
            Pattern::Regex(re) => re.is_match(text),
        }
    }
}

#[derive(Debug, Clone)]
struct AccessRule {
    permit: bool,
    principal: Option<String>,
    actions: Vec<Action>,
    resource: Option<Pattern>,
    guard: Guard,
}

/// Rules for resources. Empty means upstream's default policy: full access when the user shares
/// an attribute value with the owner, is the owner, or the resource has no owner.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    rules: Vec<AccessRule>,
}

impl AccessPolicy {
    pub fn default_rules() -> AccessPolicy {
        let all = |guard| AccessRule {
            permit: true,
            principal: None,
            actions: Action::ALL.to_vec(),
            resource: None,
            guard,
        };
        let mut rules: Vec<AccessRule> = ["roles", "teams", "projects", "namespaces"]
            .into_iter()
            .map(|name| all(Guard::When(vec![Condition::UserInOwners(name.into())])))
            .collect();
        rules.push(all(Guard::When(vec![Condition::UserIsOwner])));
        rules.push(all(Guard::When(vec![Condition::ResourceIsUnowned])));
        AccessPolicy { rules }
    }

    /// Parses `access_policy`, reporting every bad rule under `path`. Empty gives the default.
    pub fn parse(value: Option<&Value>, path: &str, issues: &mut Vec<ConfigIssue>) -> Self {
        let rules = parse_rules(value, path, issues, |scope, at, issues| {
            let principal = match scope.get("principal") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    issues.push(ConfigIssue::new(
                        format!("{at}.principal"),
                        format!("must be a string, got {other}"),
                    ));
                    None
                }
            };
            let actions = parse_actions(scope.get("actions"), &format!("{at}.actions"), issues);
            let resource = match scope.get("resource") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Pattern::parse(s, false)
                    .map_err(|e| issues.push(ConfigIssue::new(format!("{at}.resource"), e)))
                    .ok(),
                Some(other) => {
                    issues.push(ConfigIssue::new(
                        format!("{at}.resource"),
                        format!("must be a string such as model::* or regex:..., got {other}"),
                    ));
                    None
                }
            };
            for key in scope.keys() {
                if !["principal", "actions", "resource"].contains(&key.as_str()) {
                    issues.push(ConfigIssue::new(
                        format!("{at}.{key}"),
                        "unknown field; known: principal, actions, resource",
                    ));
                }
            }
            (principal, actions, resource)
        });
        let rules: Vec<AccessRule> = rules
            .into_iter()
            .map(
                |(permit, (principal, actions, resource), guard)| AccessRule {
                    permit,
                    principal,
                    actions,
                    resource,
                    guard,
                },
            )
            .collect();
        if rules.is_empty() {
            AccessPolicy::default_rules()
        } else {
            AccessPolicy { rules }
        }
    }

    /// Whether `user` may do `action` to `resource_type::id`, owned by `owner`.
    pub fn allows(
        &self,
        action: Action,
        resource_type: &str,
        id: &str,
        owner: Option<&User>,
        user: &User,
    ) -> bool {
        let mut qualified: Option<String> = None;
        for rule in &self.rules {
            if !rule.actions.contains(&action) {
                continue;
            }
            if rule
                .principal
                .as_ref()
                .is_some_and(|p| *p != user.principal)
            {
                continue;
            }
            if let Some(pattern) = &rule.resource {
                let q = qualified.get_or_insert_with(|| format!("{resource_type}::{id}"));
                if !pattern.matches(q) {
                    continue;
                }
            }
            if rule.guard.holds(owner, user) {
                return rule.permit;
            }
        }
        false
    }
}

#[derive(Debug, Clone)]
struct RouteRule {
    permit: bool,
    paths: Vec<Pattern>,
    guard: Guard,
}

/// `route_policy`: which routes a caller may call, tried before any resource check. Empty
/// allows every route.
#[derive(Debug, Clone, Default)]
pub struct RoutePolicy {
    rules: Vec<RouteRule>,
}

impl RoutePolicy {
    pub fn parse(value: Option<&Value>, path: &str, issues: &mut Vec<ConfigIssue>) -> Self {
        let rules = parse_rules(value, path, issues, |scope, at, issues| {
            let paths: Vec<&Value> = match scope.get("paths") {
                Some(Value::String(_)) => vec![&scope["paths"]],
                Some(Value::Array(items)) => items.iter().collect(),
                _ => {
                    issues.push(ConfigIssue::new(
                        format!("{at}.paths"),
                        "required: a path, a list of paths, a prefix ending in *, * or regex:...",
                    ));
                    Vec::new()
                }
            };
            let mut patterns = Vec::new();
            for (i, p) in paths.into_iter().enumerate() {
                match p.as_str().map(|s| Pattern::parse(s, true)) {
                    Some(Ok(pattern)) => patterns.push(pattern),
                    Some(Err(e)) => issues.push(ConfigIssue::new(format!("{at}.paths[{i}]"), e)),
                    None => issues.push(ConfigIssue::new(
                        format!("{at}.paths[{i}]"),
                        format!("must be a string, got {p}"),
                    )),
                }
            }
            patterns
        });
        RoutePolicy {
            rules: rules
                .into_iter()
                .map(|(permit, paths, guard)| RouteRule {
                    permit,
                    paths,
                    guard,
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether the route at `path` may be called; `user` is `None` for an anonymous caller,
    /// which no conditional rule matches.
    pub fn allows(&self, path: &str, user: Option<&User>) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        for rule in &self.rules {
            if !rule.paths.iter().any(|p| p.matches(path)) {
                continue;
            }
            let applies = match (&rule.guard, user) {
                (Guard::Always, _) => true,
                (_, None) => false,
                (guard, Some(user)) => guard.holds(None, user),
            };
            if applies {
                return rule.permit;
            }
        }
        false
    }
}

/// The shape both policies share: a list of `{permit|forbid: scope, when|unless, description}`.
fn parse_rules<S>(
    value: Option<&Value>,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
    mut scope: impl FnMut(&serde_json::Map<String, Value>, &str, &mut Vec<ConfigIssue>) -> S,
) -> Vec<(bool, S, Guard)> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            issues.push(ConfigIssue::new(
                path,
                format!("must be a list of rules, got {other}"),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(rule) = item.as_object() else {
            issues.push(ConfigIssue::new(
                at,
                "must be a mapping with permit or forbid",
            ));
            continue;
        };
        for key in rule.keys() {
            if !["permit", "forbid", "when", "unless", "description"].contains(&key.as_str()) {
                issues.push(ConfigIssue::new(
                    format!("{at}.{key}"),
                    "unknown field; known: permit, forbid, when, unless, description",
                ));
            }
        }
        let (permit, body) = match (rule.get("permit"), rule.get("forbid")) {
            (Some(p), None) => (true, p),
            (None, Some(f)) => (false, f),
            (Some(_), Some(_)) => {
                issues.push(ConfigIssue::new(
                    at,
                    "permit and forbid are mutually exclusive",
                ));
                continue;
            }
            (None, None) => {
                issues.push(ConfigIssue::new(at, "one of permit or forbid is required"));
                continue;
            }
        };
        let key = if permit { "permit" } else { "forbid" };
        let Some(body) = body.as_object() else {
            issues.push(ConfigIssue::new(format!("{at}.{key}"), "must be a mapping"));
            continue;
        };
        let parsed = scope(body, &format!("{at}.{key}"), issues);
        let guard = match (rule.get("when"), rule.get("unless")) {
            (Some(_), Some(_)) => {
                issues.push(ConfigIssue::new(
                    at,
                    "when and unless are mutually exclusive",
                ));
                continue;
            }
            (Some(w), None) => Guard::When(parse_conditions(w, &format!("{at}.when"), issues)),
            (None, Some(u)) => Guard::Unless(parse_conditions(u, &format!("{at}.unless"), issues)),
            (None, None) => Guard::Always,
        };
        out.push((permit, parsed, guard));
    }
    out
}

fn parse_conditions(value: &Value, at: &str, issues: &mut Vec<ConfigIssue>) -> Vec<Condition> {
    let texts: Vec<(String, &Value)> = match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}[{i}]"), v))
            .collect(),
        other => vec![(at.to_string(), other)],
    };
    let mut out = Vec::new();
    for (path, text) in texts {
        match text.as_str().and_then(Condition::parse) {
            Some(c) => out.push(c),
            None => issues.push(ConfigIssue::new(
                path,
                format!(
                    "unknown condition {text}; known: 'user is owner', 'user is not owner', \
                     'user in owners <attr>', 'user not in owners <attr>', \
                     'user with <value> in <attr>', 'user with <value> not in <attr>', \
                     'resource is unowned'"
                ),
            )),
        }
    }
    out
}

fn parse_actions(value: Option<&Value>, at: &str, issues: &mut Vec<ConfigIssue>) -> Vec<Action> {
    let names: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v @ Value::String(_)) => vec![v],
        _ => {
            issues.push(ConfigIssue::new(
                at,
                "required: a list of create, read, update, delete",
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        match name.as_str().and_then(Action::parse) {
            Some(a) => out.push(a),
            None => issues.push(ConfigIssue::new(
                format!("{at}[{i}]"),
                format!("unknown action {name}; known: create, read, update, delete"),
            )),
        }
    }
    out
}
