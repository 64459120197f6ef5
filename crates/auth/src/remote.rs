//! Providers that ask another service who a token belongs to: OAuth2 introspection, a custom
//! endpoint, GitHub and Kubernetes; and `upstream_header`, which trusts a gateway in front.
//! Failures answer 401 with a reason that never quotes the token or the service's body.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use llama_stack_core::Error;
use llama_stack_core::access::User;
use serde_json::{Value, json};

use crate::Credentials;
use crate::config::{OAuth2Config, TlsSettings};

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn client(tls: &TlsSettings) -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .user_agent(concat!("llama-stack-rs/", env!("CARGO_PKG_VERSION")));
    if !tls.verify_tls {
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else if let Some(path) = &tls.tls_cafile {
        let pem = std::fs::read(path).map_err(|e| {
            Error::invalid(format!("server.auth: cannot read tls_cafile {path}: {e}"))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid(format!("server.auth: {path} is not a PEM CA bundle: {e}"))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::internal(format!("cannot build the authentication HTTP client: {e}")))
}

fn service_error(service: &str, err: reqwest::Error) -> Error {
    let why = if err.is_timeout() { "timeout" } else { "error" };
    tracing::warn!(service, error = %err, "Authentication service unreachable");
    Error::unauthorized(format!("Authentication service {why}"))
}

pub async fn introspect(
    http: &reqwest::Client,
    cfg: &OAuth2Config,
    token: &str,
) -> Result<User, Error> {
    let intro = cfg
        .introspection
        .as_ref()
        .ok_or_else(|| Error::internal("no introspection configured"))?;
    // Built in a block: the serializer is not `Send` and must not live across an await.
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        if intro.send_secret_in_body {
            form.append_pair("client_id", &intro.client_id);
            form.append_pair("client_secret", &intro.client_secret);
        }
        form.finish()
    };
    let mut request = http
        .post(&intro.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if !intro.send_secret_in_body {
        request = request.basic_auth(&intro.client_id, Some(&intro.client_secret));
    }
    let response = request
        .send()
        .await
        .map_err(|e| service_error("introspection", e))?;
    if !response.status().is_success() {
        return Err(Error::unauthorized(format!(
            "Token introspection failed: {}",
            response.status().as_u16()
        )));
    }
    let fields: Value = response
        .json()
        .await
        .map_err(|_| Error::unauthorized("Token introspection error"))?;
    if fields.get("active") != Some(&Value::Bool(true)) {
        return Err(Error::unauthorized("Token not active"));
    }
    let principal = ["sub", "username"]
        .iter()
        .find_map(|k| {
            fields
                .get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| Error::unauthorized("Token introspection error: no sub or username"))?;
    Ok(User {
        principal: principal.to_string(),
        attributes: Some(crate::attributes_from_claims(&fields, &cfg.claims_mapping)),
    })
}

/// POSTs `{"api_key", "request": {path, headers, params}}` to the endpoint; a 200 with a
/// `principal` (and `attributes`, or the 0.2-era `access_attributes`) admits the caller.
pub async fn custom(
    http: &reqwest::Client,
    endpoint: &str,
    token: &str,
    request: &Credentials<'_>,
) -> Result<User, Error> {
    let headers: serde_json::Map<String, Value> = request
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(request.query.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_default()
            .push(v.into_owned());
    }
    let body = json!({
        "api_key": token,
        "request": {"path": request.path, "headers": headers, "params": params},
    });
    let response = http
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| service_error("custom", e))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(Error::unauthorized(format!(
            "Authentication failed: {}",
            response.status().as_u16()
        )));
    }
    let answer: Value = response
        .json()
        .await
        .map_err(|_| Error::unauthorized("Invalid authentication response format"))?;
    let principal = answer
        .get("principal")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::unauthorized("Invalid authentication response format: no principal")
        })?;
    let attributes = answer
        .get("attributes")
        .or_else(|| answer.get("access_attributes"))
        .filter(|a| !a.is_null())
        .map(|a| serde_json::from_value::<BTreeMap<String, Vec<String>>>(a.clone()))
        .transpose()
        .map_err(|_| Error::unauthorized("Invalid authentication response format: attributes must map names to lists of strings"))?;
    Ok(User {
        principal: principal.to_string(),
        attributes,
    })
}

pub async fn github(
    http: &reqwest::Client,
    base: &str,
    mapping: &BTreeMap<String, String>,
    token: &str,
) -> Result<User, Error> {
    let get = |path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth(token)
            .header("accept", "application/vnd.github.v3+json")
            .send()
    };
    let response = get("/user").await.map_err(|e| service_error("github", e))?;
    if !response.status().is_success() {
        return Err(Error::unauthorized(
            "GitHub token validation failed. Please check your token and try again.",
        ));
    }
    let user: Value = response
        .json()
        .await
        .map_err(|_| Error::unauthorized("GitHub token validation failed: unreadable answer"))?;
    let login = user
        .get("login")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::unauthorized("GitHub token validation failed: no login"))?;
    // Organizations are best effort: a token without `read:org` still identifies its user.
    let organizations: Vec<Value> = match get("/user/orgs").await {
        Ok(r) if r.status().is_success() => r
            .json::<Vec<Value>>()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| o.get("login").cloned())
            .collect(),
        _ => Vec::new(),
    };
    let data = json!({
        "login": login,
        "id": user.get("id").map(|v| v.to_string()).unwrap_or_default(),
        "organizations": organizations,
    });
    Ok(User {
        principal: login.to_string(),
        attributes: Some(crate::attributes_from_claims(&data, mapping)),
    })
}

/// A `SelfSubjectReview` made with the caller's own token, as upstream does.
pub async fn kubernetes(
    http: &reqwest::Client,
    api_server_url: &str,
    mapping: &BTreeMap<String, String>,
    token: &str,
) -> Result<User, Error> {
    let response = http
        .post(format!(
            "{api_server_url}/apis/authentication.k8s.io/v1/selfsubjectreviews"
        ))
        .bearer_auth(token)
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .map_err(|e| service_error("kubernetes", e))?;
    match response.status().as_u16() {
        201 | 200 => {}
        401 => return Err(Error::unauthorized("Invalid token")),
        other => {
            return Err(Error::unauthorized(format!(
                "Token validation failed: {other}"
            )));
        }
    }
    let review: Value = response
        .json()
        .await
        .map_err(|_| Error::unauthorized("Token validation error: unreadable SelfSubjectReview"))?;
    let info = review
        .pointer("/status/userInfo")
        .ok_or_else(|| Error::unauthorized("Token validation error: no userInfo in the review"))?;
    let username = info
        .get("username")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::unauthorized("Token validation error: no username in the review"))?;
    Ok(User {
        principal: username.to_string(),
        attributes: Some(crate::attributes_from_claims(info, mapping)),
    })
}

pub fn upstream_header(
    request: &Credentials<'_>,
    principal_header: &str,
    attributes_header: Option<&str>,
    trusted: &[IpNet],
) -> Result<User, Error> {
    let peer_trusted = request
        .peer
        .map(|ip| match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(Into::into).unwrap_or(ip),
            v4 => v4,
        })
        .is_some_and(|ip| trusted.iter().any(|net| net.contains(&ip)));
    if !peer_trusted {
        return Err(Error::unauthorized(
            "Identity headers are accepted only from the gateways in server.auth.provider_config.trusted_sources",
        ));
    }
    let principal = request
        .header(principal_header)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Error::unauthorized(format!(
                "Missing required authentication header: {principal_header}"
            ))
        })?;
    let attributes = match attributes_header.and_then(|h| request.header(h)) {
        None => None,
        Some(raw) => {
            let parsed: serde_json::Map<String, Value> =
                serde_json::from_str(raw).map_err(|_| {
                    Error::unauthorized(
                        "Failed to parse authentication attributes header: expected a JSON object",
                    )
                })?;
            Some(
                parsed
                    .into_iter()
                    .map(|(k, v)| {
                        let values = match v {
                            Value::Array(items) => items
                                .into_iter()
                                .map(|i| {
                                    i.as_str()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| i.to_string())
                                })
                                .collect(),
                            Value::String(s) => vec![s],
                            other => vec![other.to_string()],
                        };
                        (k, values)
                    })
                    .collect(),
            )
        }
    };
    Ok(User {
        principal: principal.to_string(),
        attributes,
    })
}
