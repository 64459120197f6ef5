//! Authentication for `server.auth`: who is calling. Both transports hand a request's bearer
//! token, path, headers and peer address to [`Authenticator::authenticate`], then ask
//! [`Authenticator::route_allowed`]; what the caller may do to resources is the access
//! policy's business (`llama_stack_core::access`).
//!
//! Tokens and secrets never reach a log line. Results of remote checks are cached for
//! `cache_ttl_seconds`, keyed by the token's SHA-256.

pub mod config;
mod jwt;
mod remote;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use llama_stack_core::Error;
use llama_stack_core::access::User;
use sha2::Digest;

pub use config::{AuthSettings, ProviderConfig, parse};

/// The hex SHA-256 of an API key, as the `api_keys` provider's `sha256` field takes it.
pub fn hash_key(key: &str) -> String {
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// Routes served without a principal: load balancers and monitors call them.
pub fn is_public(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/v1/health"
            | "/v1/ready"
            | "/v1/version"
            | "/metrics"
            | "/grpc.health.v1.Health/Check"
            | "/grpc.health.v1.Health/Watch"
    ) || path.starts_with("/grpc.reflection.")
}

/// What a transport knows about a request.
pub struct Credentials<'a> {
    /// The bearer token: `Authorization: Bearer` on HTTP, `authorization` metadata on gRPC.
    pub token: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// Lower-cased header names and values, `authorization` excluded.
    pub headers: &'a [(String, String)],
    pub peer: Option<IpAddr>,
}

impl Credentials<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Most token checks remembered at once; beyond it the cache starts over.
const CACHE_ENTRIES: usize = 10_000;

pub struct Authenticator {
    settings: AuthSettings,
    jwt: Option<jwt::JwtVerifier>,
    http: Option<reqwest::Client>,
    cache: Mutex<HashMap<[u8; 32], (User, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("provider", &self.settings.provider)
            .finish()
    }
}

impl Authenticator {
    /// Builds the provider's clients; fails when a CA file cannot be read.
    pub fn new(settings: AuthSettings) -> Result<Self, Error> {
        let (jwt, http) = match &settings.provider {
            Some(ProviderConfig::OAuth2Token(cfg)) => {
                let http = remote::client(&cfg.tls)?;
                let verifier = cfg
                    .jwks
                    .as_ref()
                    .map(|_| jwt::JwtVerifier::new((**cfg).clone(), http.clone()));
                (verifier, Some(http))
            }
            Some(ProviderConfig::Kubernetes { tls, .. }) => (None, Some(remote::client(tls)?)),
            Some(ProviderConfig::Custom { .. } | ProviderConfig::GitHubToken { .. }) => {
                (None, Some(remote::client(&Default::default())?))
            }
            _ => (None, None),
        };
        Ok(Authenticator {
            settings,
            jwt,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Whether callers are authenticated at all (else only `route_policy` applies).
    pub fn authenticates(&self) -> bool {
        self.settings.provider.is_some()
    }

    /// The caller, `None` when no provider is configured (anonymous), or a 401.
    pub async fn authenticate(&self, request: &Credentials<'_>) -> Result<Option<User>, Error> {
        let Some(provider) = &self.settings.provider else {
            return Ok(None);
        };
        if let ProviderConfig::UpstreamHeader {
            principal_header,
            attributes_header,
            trusted_sources,
        } = provider
        {
            return remote::upstream_header(
                request,
                principal_header,
                attributes_header.as_deref(),
                trusted_sources,
            )
            .map(Some);
        }
        let token = match request.token {
            Some(t) if !t.is_empty() => t,
            _ => return Err(Error::unauthorized(missing_token_message(provider))),
        };
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let ProviderConfig::ApiKeys(keys) = provider {
            // Every key is compared, so timing tells nothing about which one nearly matched.
            let mut found = None;
            for key in keys {
                let same = key
                    .sha256
                    .iter()
                    .zip(digest.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
                if same {
                    found = Some(key);
                }
            }
            return match found {
                Some(key) => Ok(Some(User {
                    principal: key.principal.clone(),
                    attributes: key.attributes.clone(),
                })),
                None => Err(Error::unauthorized("Invalid API key")),
            };
        }
        if let (ProviderConfig::OAuth2Token(_), Some(jwt)) = (provider, &self.jwt) {
            // Local signature checks are cheap, and skipping the cache honours `exp` exactly.
            return jwt.verify(token).await.map(Some);
        }
        if let Some(user) = self.cached(&digest) {
            return Ok(Some(user));
        }
        let http = self
            .http
            .as_ref()
            .ok_or_else(|| Error::internal("no HTTP client for authentication"))?;
        let user = match provider {
            ProviderConfig::OAuth2Token(cfg) => remote::introspect(http, cfg, token).await?,
            ProviderConfig::Custom { endpoint } => {
                remote::custom(http, endpoint, token, request).await?
            }
            ProviderConfig::GitHubToken {
                github_api_base_url,
                claims_mapping,
            } => remote::github(http, github_api_base_url, claims_mapping, token).await?,
            ProviderConfig::Kubernetes {
                api_server_url,
                claims_mapping,
                ..
            } => remote::kubernetes(http, api_server_url, claims_mapping, token).await?,
            ProviderConfig::ApiKeys(_) | ProviderConfig::UpstreamHeader { .. } => {
                unreachable!("answered above")
            }
        };
        self.remember(digest, &user);
        Ok(Some(user))
    }

    /// Whether `route_policy` lets the caller call `path`.
    pub fn route_allowed(&self, path: &str, user: Option<&User>) -> bool {
        self.settings.route_policy.allows(path, user)
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<User> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(digest)
            .filter(|(_, at)| at.elapsed() < self.settings.cache_ttl)
            .map(|(user, _)| user.clone())
    }

    fn remember(&self, digest: [u8; 32], user: &User) {
        if self.settings.cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            let ttl = self.settings.cache_ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, (user.clone(), Instant::now()));
    }
}

fn missing_token_message(provider: &ProviderConfig) -> String {
    match provider {
        ProviderConfig::ApiKeys(_) => "Authentication required. Please provide your API key as a Bearer token in the Authorization header".into(),
        ProviderConfig::OAuth2Token(cfg) => match &cfg.issuer {
            Some(issuer) => format!("Authentication required. Please provide a valid OAuth2 Bearer token from {issuer}"),
            None => "Authentication required. Please provide a valid OAuth2 Bearer token in the Authorization header".into(),
        },
        ProviderConfig::Custom { endpoint } => {
            let host = url::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
            format!("Authentication required. Please provide your API key as a Bearer token (validated by {host})")
        }
        ProviderConfig::GitHubToken { .. } => "Authentication required. Please provide a valid GitHub access token in the Authorization header (Bearer <token>)".into(),
        _ => "Authentication required".into(),
    }
}

/// Attributes from token claims through `claims_mapping`: a dotted key walks nested objects
/// (`resource_access.app.roles`), a string value is split on spaces (`scope`), a list is
/// taken as it is.
pub(crate) fn attributes_from_claims(
    claims: &serde_json::Value,
    mapping: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (claim, attribute) in mapping {
        let nested = claim
            .split('.')
            .try_fold(claims, |value, key| value.get(key));
        let Some(value) = nested.or_else(|| claims.get(claim)) else {
            continue;
        };
        let values: Vec<String> = match value {
            serde_json::Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        out.entry(attribute.clone()).or_default().extend(values);
    }
    out
}

#[cfg(test)]
mod tests;
