//! `server.auth`, as upstream writes it (`provider_config`, `access_policy`, `route_policy`),
//! plus the built-in `api_keys` provider and a token cache. Every problem is reported with its
//! YAML path before anything is built.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use llama_stack_core::ConfigIssue;
use llama_stack_core::access::{AccessPolicy, RoutePolicy};
use serde::Deserialize;
use serde_json::Value;

/// How long a token check is trusted before the provider is asked again, by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// `server.auth`, checked.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Who callers are. `None`: callers stay anonymous and only `route_policy` applies.
    pub provider: Option<ProviderConfig>,
    pub access_policy: AccessPolicy,
    pub route_policy: RoutePolicy,
    /// `cache_ttl_seconds`: how long a valid token is remembered (0 turns the cache off).
    pub cache_ttl: Duration,
}

/// `server.auth.provider_config`, by `type`.
#[derive(Clone)]
pub enum ProviderConfig {
    ApiKeys(Vec<ApiKey>),
    OAuth2Token(Box<OAuth2Config>),
    Custom {
        endpoint: String,
    },
    GitHubToken {
        github_api_base_url: String,
        claims_mapping: BTreeMap<String, String>,
    },
    Kubernetes {
        api_server_url: String,
        tls: TlsSettings,
        claims_mapping: BTreeMap<String, String>,
    },
    UpstreamHeader {
        principal_header: String,
        attributes_header: Option<String>,
        trusted_sources: Vec<IpNet>,
    },
}

impl ProviderConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderConfig::ApiKeys(_) => "api_keys",
            ProviderConfig::OAuth2Token(_) => "oauth2_token",
            ProviderConfig::Custom { .. } => "custom",
            ProviderConfig::GitHubToken { .. } => "github_token",
            ProviderConfig::Kubernetes { .. } => "kubernetes",
            ProviderConfig::UpstreamHeader { .. } => "upstream_header",
        }
    }
}

// Keys, secrets and tokens never reach a log line.
impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderConfig({})", self.type_name())
    }
}

/// One key of the `api_keys` provider: only its SHA-256 is kept.
#[derive(Clone)]
pub struct ApiKey {
    pub sha256: [u8; 32],
    pub principal: String,
    pub attributes: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub verify_tls: bool,
    pub tls_cafile: Option<String>,
}

#[derive(Clone)]
pub struct OAuth2Config {
    pub audience: String,
    pub issuer: Option<String>,
    pub tls: TlsSettings,
    pub claims_mapping: BTreeMap<String, String>,
    pub jwks: Option<JwksConfig>,
    pub introspection: Option<IntrospectionConfig>,
    /// Signature algorithms accepted; `none` never is.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

#[derive(Clone)]
pub struct JwksConfig {
    pub uri: String,
    pub token: Option<String>,
    pub key_recheck_period: Duration,
    /// Shortest wait between fetches made for unknown `kid`s.
    pub min_refresh: Duration,
}

#[derive(Clone)]
pub struct IntrospectionConfig {
    pub url: String,
    pub client_id: String,
    pub client_secret: String,
    pub send_secret_in_body: bool,
}

const AUTH_KEYS: &[&str] = &[
    "provider_config",
    "access_policy",
    "route_policy",
    "cache_ttl_seconds",
    // The 0.2-era spelling: `provider_type` beside `config`.
    "provider_type",
    "config",
];

/// Parses `server.auth` at `path`, pushing every problem to `issues`.
pub fn parse(value: &Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<AuthSettings> {
    let Some(map) = value.as_object() else {
        issues.push(ConfigIssue::new(
            path,
            format!("must be a mapping, got {value}"),
        ));
        return None;
    };
    for key in map.keys() {
        if !AUTH_KEYS.contains(&key.as_str()) {
            issues.push(ConfigIssue::new(
                format!("{path}.{key}"),
                "unknown field; known: provider_config, access_policy, route_policy, cache_ttl_seconds",
            ));
        }
    }
    let before = issues.len();
    let provider = match (map.get("provider_config"), map.get("provider_type")) {
        (Some(Value::Null) | None, None) => None,
        (Some(config), None) => provider(config, &format!("{path}.provider_config"), issues),
        (None, Some(Value::String(kind))) => {
            // `{provider_type: custom, config: {endpoint: ...}}` reads as `provider_config`.
            let mut config = map
                .get("config")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            config.insert("type".into(), Value::String(kind.clone()));
            provider(&Value::Object(config), &format!("{path}.config"), issues)
        }
        (_, Some(_)) => {
            issues.push(ConfigIssue::new(
                format!("{path}.provider_type"),
                "give either provider_config (with its type) or the older provider_type with config, not both",
            ));
            None
        }
    };
    let access_policy = AccessPolicy::parse(
        map.get("access_policy"),
        &format!("{path}.access_policy"),
        issues,
    );
    let route_policy = RoutePolicy::parse(
        map.get("route_policy"),
        &format!("{path}.route_policy"),
        issues,
    );
    let cache_ttl = match map.get("cache_ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_CACHE_TTL,
        Some(v) => match v.as_u64() {
            Some(secs) => Duration::from_secs(secs),
            None => {
                issues.push(ConfigIssue::new(
                    format!("{path}.cache_ttl_seconds"),
                    format!("must be a whole number of seconds, got {v}"),
                ));
                DEFAULT_CACHE_TTL
            }
        },
    };
    if provider.is_none() && route_policy.is_empty() && issues.len() == before {
        issues.push(ConfigIssue::new(
            format!("{path}.provider_config"),
            "server.auth needs a provider_config (api_keys, oauth2_token, custom, github_token, kubernetes or upstream_header), or a route_policy; remove the block to serve without authentication",
        ));
    }
    (issues.len() == before).then_some(AuthSettings {
        provider,
        access_policy,
        route_policy,
        cache_ttl,
    })
}

fn typed<T: for<'de> Deserialize<'de>>(
    value: &Value,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let inner = err.path().to_string();
            let at = if inner == "." {
                path.to_string()
            } else {
                format!("{path}.{inner}")
            };
            issues.push(ConfigIssue::new(at, err.into_inner().to_string()));
            None
        }
    }
}

fn provider(value: &Value, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<ProviderConfig> {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "api_keys" => api_keys(typed(value, path, issues)?, path, issues),
        "oauth2_token" => oauth2(typed(value, path, issues)?, path, issues),
        "custom" => {
            let raw: RawCustom = typed(value, path, issues)?;
            check_url(&raw.endpoint, &format!("{path}.endpoint"), issues)?;
            Some(ProviderConfig::Custom {
                endpoint: raw.endpoint,
            })
        }
        "github_token" => {
            let raw: RawGitHub = typed(value, path, issues)?;
            check_url(
                &raw.github_api_base_url,
                &format!("{path}.github_api_base_url"),
                issues,
            )?;
            Some(ProviderConfig::GitHubToken {
                github_api_base_url: raw.github_api_base_url.trim_end_matches('/').to_string(),
                claims_mapping: check_mapping(raw.claims_mapping, path, issues)?,
            })
        }
        "kubernetes" => {
            let raw: RawKubernetes = typed(value, path, issues)?;
            check_url(
                &raw.api_server_url,
                &format!("{path}.api_server_url"),
                issues,
            )?;
            Some(ProviderConfig::Kubernetes {
                api_server_url: raw.api_server_url.trim_end_matches('/').to_string(),
                tls: TlsSettings {
                    verify_tls: raw.verify_tls,
                    tls_cafile: raw.tls_cafile,
                },
                claims_mapping: check_mapping(raw.claims_mapping, path, issues)?,
            })
        }
        "upstream_header" => {
            let raw: RawUpstreamHeader = typed(value, path, issues)?;
            let mut sources = Vec::new();
            for (i, s) in raw.trusted_sources.iter().enumerate() {
                let parsed = s
                    .parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from));
                match parsed {
                    Ok(net) => sources.push(net),
                    Err(_) => issues.push(ConfigIssue::new(
                        format!("{path}.trusted_sources[{i}]"),
                        format!("'{s}' is not an address or CIDR range such as 10.0.0.0/8"),
                    )),
                }
            }
            Some(ProviderConfig::UpstreamHeader {
                principal_header: raw.principal_header.to_ascii_lowercase(),
                attributes_header: raw.attributes_header.map(|h| h.to_ascii_lowercase()),
                trusted_sources: sources,
            })
        }
        other => {
            issues.push(ConfigIssue::new(
                format!("{path}.type"),
                format!(
                    "unknown authentication provider type '{other}'; known: api_keys, oauth2_token, custom, github_token, kubernetes, upstream_header"
                ),
            ));
            None
        }
    }
}

fn check_url(url: &str, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<()> {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(()),
        _ => {
            issues.push(ConfigIssue::new(
                path,
                format!("'{url}' is not an http(s) URL"),
            ));
            None
        }
    }
}

fn check_mapping(
    mapping: BTreeMap<String, String>,
    path: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<BTreeMap<String, String>> {
    let mut ok = true;
    for (claim, attribute) in &mapping {
        if attribute.is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}.claims_mapping.{claim}"),
                "must name an attribute such as roles, teams, projects or namespaces",
            ));
            ok = false;
        }
    }
    ok.then_some(mapping)
}

fn api_keys(raw: RawApiKeys, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<ProviderConfig> {
    use sha2::Digest;
    let before = issues.len();
    let mut keys = Vec::new();
    if raw.keys.is_empty() {
        issues.push(ConfigIssue::new(
            format!("{path}.keys"),
            "list at least one key: {principal, sha256: <hex SHA-256 of the key>} or {principal, key: ${env.VAR}}",
        ));
    }
    for (i, key) in raw.keys.into_iter().enumerate() {
        let at = format!("{path}.keys[{i}]");
        let sha256 = match (&key.sha256, &key.key) {
            (Some(hex_digest), None) => match hex::decode(hex_digest.trim()) {
                Ok(bytes) if bytes.len() == 32 => bytes.try_into().ok(),
                _ => {
                    issues.push(ConfigIssue::new(
                        format!("{at}.sha256"),
                        "must be 64 hex digits (`llama-stack hash-key` prints them)",
                    ));
                    None
                }
            },
            (None, Some(plain)) if plain.len() >= 16 => {
                Some(sha2::Sha256::digest(plain.as_bytes()).into())
            }
            (None, Some(_)) => {
                issues.push(ConfigIssue::new(
                    format!("{at}.key"),
                    "is shorter than 16 characters; use a long random key",
                ));
                None
            }
            _ => {
                issues.push(ConfigIssue::new(
                    at.clone(),
                    "give exactly one of sha256 (hex SHA-256 of the key) or key (e.g. ${env.VAR})",
                ));
                None
            }
        };
        if key.principal.trim().is_empty() {
            issues.push(ConfigIssue::new(
                format!("{at}.principal"),
                "must not be empty",
            ));
        }
        if let Some(sha256) = sha256 {
            if keys.iter().any(|k: &ApiKey| k.sha256 == sha256) {
                issues.push(ConfigIssue::new(at, "the same key is listed twice"));
                continue;
            }
            keys.push(ApiKey {
                sha256,
                principal: key.principal,
                attributes: key.attributes,
            });
        }
    }
    (issues.len() == before).then_some(ProviderConfig::ApiKeys(keys))
}

fn oauth2(raw: RawOAuth2, path: &str, issues: &mut Vec<ConfigIssue>) -> Option<ProviderConfig> {
    let before = issues.len();
    match (&raw.jwks, &raw.introspection) {
        (None, None) => issues.push(ConfigIssue::new(
            path,
            "one of jwks (with uri) or introspection (with url, client_id, client_secret) is required",
        )),
        (Some(_), Some(_)) => issues.push(ConfigIssue::new(
            path,
            "give only one of jwks or introspection",
        )),
        _ => {}
    }
    if let Some(jwks) = &raw.jwks {
        check_url(&jwks.uri, &format!("{path}.jwks.uri"), issues);
    }
    if let Some(intro) = &raw.introspection {
        check_url(&intro.url, &format!("{path}.introspection.url"), issues);
    }
    let mut algorithms = Vec::new();
    for (i, name) in raw.algorithms.iter().enumerate() {
        match name.parse::<jsonwebtoken::Algorithm>() {
            Ok(alg) => algorithms.push(alg),
            Err(_) => issues.push(ConfigIssue::new(
                format!("{path}.algorithms[{i}]"),
                format!("'{name}' is not a signature algorithm; known: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384, HS512 (`none` is never accepted)"),
            )),
        }
    }
    let claims_mapping = check_mapping(raw.claims_mapping, path, issues);
    if issues.len() != before {
        return None;
    }
    Some(ProviderConfig::OAuth2Token(Box::new(OAuth2Config {
        audience: raw.audience,
        issuer: raw.issuer,
        tls: TlsSettings {
            verify_tls: raw.verify_tls,
            tls_cafile: raw.tls_cafile,
        },
        claims_mapping: claims_mapping?,
        jwks: raw.jwks.map(|j| JwksConfig {
            uri: j.uri,
            token: j.token,
            key_recheck_period: Duration::from_secs(j.key_recheck_period),
            min_refresh: Duration::from_secs(j.refresh_min_interval_seconds),
        }),
        introspection: raw.introspection.map(|i| IntrospectionConfig {
            url: i.url,
            client_id: i.client_id,
            client_secret: i.client_secret,
            send_secret_in_body: i.send_secret_in_body,
        }),
        algorithms,
        leeway: Duration::from_secs(raw.leeway_seconds),
    })))
}

fn yes() -> bool {
    true
}

fn default_audience() -> String {
    "llama-stack".into()
}

fn default_algorithms() -> Vec<String> {
    [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ]
    .map(String::from)
    .to_vec()
}

fn mapping(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn oauth2_claims() -> BTreeMap<String, String> {
    mapping(&[
        ("sub", "roles"),
        ("username", "roles"),
        ("groups", "teams"),
        ("team", "teams"),
        ("project", "projects"),
        ("tenant", "namespaces"),
        ("namespace", "namespaces"),
    ])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[allow(dead_code)]
    r#type: String,
    #[serde(default)]
    keys: Vec<RawApiKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    principal: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth2 {
    #[allow(dead_code)]
    r#type: String,
    #[serde(default = "default_audience")]
    audience: String,
    #[serde(default = "yes")]
    verify_tls: bool,
    #[serde(default)]
    tls_cafile: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default = "oauth2_claims")]
    claims_mapping: BTreeMap<String, String>,
    #[serde(default)]
    jwks: Option<RawJwks>,
    #[serde(default)]
    introspection: Option<RawIntrospection>,
    #[serde(default = "default_algorithms")]
    algorithms: Vec<String>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

fn default_recheck() -> u64 {
    3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwks {
    uri: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default = "default_recheck")]
    key_recheck_period: u64,
    #[serde(default = "default_min_refresh")]
    refresh_min_interval_seconds: u64,
}

fn default_min_refresh() -> u64 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrospection {
    url: String,
    client_id: String,
    client_secret: String,
    #[serde(default)]
    send_secret_in_body: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCustom {
    #[allow(dead_code)]
    r#type: String,
    endpoint: String,
}

fn github_base() -> String {
    "https://api.github.com".into()
}

fn github_claims() -> BTreeMap<String, String> {
    mapping(&[("login", "roles"), ("organizations", "teams")])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGitHub {
    #[allow(dead_code)]
    r#type: String,
    #[serde(default = "github_base")]
    github_api_base_url: String,
    #[serde(default = "github_claims")]
    claims_mapping: BTreeMap<String, String>,
}

fn kubernetes_base() -> String {
    "https://kubernetes.default.svc".into()
}

fn kubernetes_claims() -> BTreeMap<String, String> {
    mapping(&[("username", "roles"), ("groups", "roles")])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKubernetes {
    #[allow(dead_code)]
    r#type: String,
    #[serde(default = "kubernetes_base")]
    api_server_url: String,
    #[serde(default = "yes")]
    verify_tls: bool,
    #[serde(default)]
    tls_cafile: Option<String>,
    #[serde(default = "kubernetes_claims")]
    claims_mapping: BTreeMap<String, String>,
}

fn loopback() -> Vec<String> {
    vec!["127.0.0.0/8".into(), "::1/128".into()]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamHeader {
    #[allow(dead_code)]
    r#type: String,
    principal_header: String,
    #[serde(default)]
    attributes_header: Option<String>,
    /// Addresses of the gateways allowed to set the headers (default: loopback only).
    #[serde(default = "loopback")]
    trusted_sources: Vec<String>,
}
