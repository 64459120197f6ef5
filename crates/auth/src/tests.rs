use std::sync::{Arc, Mutex as StdMutex};

use base64::Engine;
use serde_json::{Value, json};

use super::*;

fn settings(value: Value) -> AuthSettings {
    let mut issues = Vec::new();
    let s = parse(&value, "server.auth", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    s.unwrap()
}

fn creds(token: Option<&str>) -> Credentials<'_> {
    Credentials {
        token,
        path: "/v1/models",
        query: None,
        headers: &[],
        peer: Some("127.0.0.1".parse().unwrap()),
    }
}

#[test]
fn config_problems_are_all_reported_with_paths() {
    let mut issues = Vec::new();
    let out = parse(
        &json!({
            "provider_config": {"type": "api_keys", "keys": [
                {"principal": "a", "sha256": "zz"},
                {"principal": "", "key": "short"},
            ]},
            "access_policy": [{"permit": {"actions": ["read"]}, "when": "user is root"}],
            "colour": "blue",
        }),
        "server.auth",
        &mut issues,
    );
    assert!(out.is_none());
    let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
    for expected in [
        "server.auth.colour",
        "server.auth.provider_config.keys[0].sha256",
        "server.auth.provider_config.keys[1].key",
        "server.auth.provider_config.keys[1].principal",
        "server.auth.access_policy[0].when",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    let mut issues = Vec::new();
    parse(
        &json!({"provider_config": {"type": "oauth2_token", "audience": "x"}}),
        "server.auth",
        &mut issues,
    );
    assert!(issues[0].message.contains("jwks"), "{issues:?}");
    let mut issues = Vec::new();
    parse(
        &json!({"provider_config": {"type": "saml"}}),
        "server.auth",
        &mut issues,
    );
    assert_eq!(issues[0].path, "server.auth.provider_config.type");
    let mut issues = Vec::new();
    parse(
        &json!({"provider_config": {"type": "oauth2_token", "jwks": {"uri": "http://x/jwks"}, "algorithms": ["none"]}}),
        "server.auth",
        &mut issues,
    );
    assert_eq!(issues[0].path, "server.auth.provider_config.algorithms[0]");
}

#[tokio::test]
async fn api_keys_admit_listed_keys_only() {
    use sha2::Digest;
    let hashed = hex::encode(sha2::Sha256::digest(b"bob-key-0123456789"));
    let auth = Authenticator::new(settings(json!({"provider_config": {"type": "api_keys", "keys": [
        {"principal": "alice", "key": "alice-key-0123456789", "attributes": {"roles": ["admin"]}},
        {"principal": "bob", "sha256": hashed},
    ]}}))).unwrap();
    let alice = auth
        .authenticate(&creds(Some("alice-key-0123456789")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.principal, "alice");
    assert_eq!(alice.attribute("roles"), ["admin"]);
    let bob = auth
        .authenticate(&creds(Some("bob-key-0123456789")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob.principal, "bob");
    for bad in [Some("nope"), None, Some("")] {
        let err = auth.authenticate(&creds(bad)).await.unwrap_err();
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::Unauthorized);
    }
}

#[test]
fn claims_map_nested_keys_and_split_strings() {
    let claims = json!({"sub": "u1", "groups": ["ml", "web"], "scope": "read write",
        "realm": {"roles": ["admin"]}});
    let mapping: BTreeMap<String, String> = [
        ("groups", "teams"),
        ("scope", "roles"),
        ("realm.roles", "roles"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let attrs = attributes_from_claims(&claims, &mapping);
    assert_eq!(attrs["teams"], ["ml", "web"]);
    let mut roles = attrs["roles"].clone();
    roles.sort();
    assert_eq!(roles, ["admin", "read", "write"]);
}

#[test]
fn upstream_headers_are_trusted_from_listed_sources_only() {
    let auth = settings(json!({"provider_config": {"type": "upstream_header",
        "principal_header": "X-Auth-User", "attributes_header": "x-auth-attributes",
        "trusted_sources": ["10.0.0.0/8"]}}));
    let Some(ProviderConfig::UpstreamHeader {
        principal_header,
        attributes_header,
        trusted_sources,
    }) = &auth.provider
    else {
        panic!("wrong provider");
    };
    let headers = vec![
        ("x-auth-user".to_string(), "carol".to_string()),
        (
            "x-auth-attributes".to_string(),
            r#"{"roles": ["admin"], "teams": "ml"}"#.to_string(),
        ),
    ];
    let mut request = Credentials {
        token: None,
        path: "/v1/models",
        query: None,
        headers: &headers,
        peer: Some("10.1.2.3".parse().unwrap()),
    };
    let user = remote::upstream_header(
        &request,
        principal_header,
        attributes_header.as_deref(),
        trusted_sources,
    )
    .unwrap();
    assert_eq!(user.principal, "carol");
    assert_eq!(user.attribute("teams"), ["ml"]);
    request.peer = Some("192.168.1.1".parse().unwrap());
    assert!(
        remote::upstream_header(
            &request,
            principal_header,
            attributes_header.as_deref(),
            trusted_sources
        )
        .is_err()
    );
}

/// A JWKS endpoint whose key set can be swapped, counting fetches.
struct Issuer {
    url: String,
    keys: Arc<StdMutex<Value>>,
    fetches: Arc<StdMutex<usize>>,
}

async fn issuer() -> Issuer {
    let keys = Arc::new(StdMutex::new(json!({"keys": []})));
    let fetches = Arc::new(StdMutex::new(0usize));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                *f.lock().unwrap() += 1;
                axum::Json(k.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Issuer { url, keys, fetches }
}

/// An ES256 signing key and its public JWK.
fn es256(kid: &str) -> (jsonwebtoken::EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        "kid": kid, "alg": "ES256", "use": "sig"});
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    (key, jwk)
}

fn sign(key: &jsonwebtoken::EncodingKey, kid: &str, claims: Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(exp_offset: i64, aud: &str, iss: &str) -> Value {
    json!({"sub": "alice", "aud": aud, "iss": iss, "groups": ["ml"],
        "exp": llama_stack_core::now_secs() + exp_offset})
}

#[tokio::test]
async fn jwts_are_checked_against_the_jwks_with_rotation() {
    let issuer = issuer().await;
    let (key1, jwk1) = es256("k1");
    *issuer.keys.lock().unwrap() = json!({"keys": [jwk1]});
    let auth = Authenticator::new(settings(json!({"provider_config": {"type": "oauth2_token",
        "audience": "stack", "issuer": "https://idp", "leeway_seconds": 0,
        "jwks": {"uri": issuer.url, "refresh_min_interval_seconds": 0}}})))
    .unwrap();
    let check = |token: String| {
        let auth = &auth;
        async move { auth.authenticate(&creds(Some(&token))).await }
    };
    let user = check(sign(&key1, "k1", claims(300, "stack", "https://idp")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.principal, "alice");
    assert_eq!(user.attribute("teams"), ["ml"]);
    let reason = |r: Result<Option<User>, Error>| r.unwrap_err().message().to_string();
    assert!(
        reason(check(sign(&key1, "k1", claims(-60, "stack", "https://idp"))).await)
            .contains("expired")
    );
    assert!(
        reason(check(sign(&key1, "k1", claims(300, "other", "https://idp"))).await)
            .contains("audience")
    );
    assert!(
        reason(check(sign(&key1, "k1", claims(300, "stack", "https://evil"))).await)
            .contains("issuer")
    );
    // alg none: a header and claims with an empty signature.
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(300, "stack", "https://idp"))
    );
    assert!(check(none).await.is_err());
    // Signed by a key the issuer does not publish, under a published kid.
    let (stranger, _) = es256("k1");
    assert!(
        reason(check(sign(&stranger, "k1", claims(300, "stack", "https://idp"))).await)
            .contains("signature")
    );
    // Rotation: a new kid is fetched on first sight.
    let (key2, jwk2) = es256("k2");
    let before = *issuer.fetches.lock().unwrap();
    *issuer.keys.lock().unwrap() = json!({"keys": [jwk2]});
    let user = check(sign(&key2, "k2", claims(300, "stack", "https://idp")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.principal, "alice");
    assert_eq!(*issuer.fetches.lock().unwrap(), before + 1);
}

#[tokio::test]
async fn unknown_kids_do_not_flood_the_issuer() {
    let issuer = issuer().await;
    let (key1, jwk1) = es256("k1");
    *issuer.keys.lock().unwrap() = json!({"keys": [jwk1]});
    let auth = Authenticator::new(settings(json!({"provider_config": {"type": "oauth2_token",
        "audience": "stack", "jwks": {"uri": issuer.url}}})))
    .unwrap();
    for i in 0..20 {
        let token = sign(&key1, &format!("forged-{i}"), claims(300, "stack", "x"));
        assert!(auth.authenticate(&creds(Some(&token))).await.is_err());
    }
    assert_eq!(*issuer.fetches.lock().unwrap(), 1);
}

#[tokio::test]
async fn custom_endpoint_answers_are_cached_and_a_dead_endpoint_is_a_401() {
    let calls = Arc::new(StdMutex::new(Vec::<Value>::new()));
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/auth",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body.clone());
                if body["api_key"] == "good" {
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({"principal": "dan", "attributes": {"roles": ["user"]}})),
                    )
                } else {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "no"})),
                    )
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = Authenticator::new(settings(json!({"provider_config": {"type": "custom",
        "endpoint": format!("http://{addr}/auth")}})))
    .unwrap();
    let headers = vec![("x-trace".to_string(), "1".to_string())];
    let request = Credentials {
        token: Some("good"),
        path: "/v1/files",
        query: Some("limit=5&limit=6"),
        headers: &headers,
        peer: None,
    };
    let user = auth.authenticate(&request).await.unwrap().unwrap();
    assert_eq!(user.principal, "dan");
    auth.authenticate(&request).await.unwrap();
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "the second check comes from the cache"
    );
    let sent = calls.lock().unwrap()[0].clone();
    assert_eq!(sent["request"]["path"], "/v1/files");
    assert_eq!(sent["request"]["params"]["limit"], json!(["5", "6"]));
    assert_eq!(sent["request"]["headers"]["x-trace"], "1");
    assert!(auth.authenticate(&creds(Some("bad"))).await.is_err());
    let dead = Authenticator::new(settings(json!({"provider_config": {"type": "custom",
        "endpoint": "http://127.0.0.1:9/auth"}})))
    .unwrap();
    let err = dead.authenticate(&creds(Some("good"))).await.unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::Unauthorized);
}

/// A stand-in for the GitHub API and a Kubernetes API server on one local port, answering
/// for the token `good` only.
async fn identity_standin() -> String {
    use axum::http::{HeaderMap, StatusCode};
    fn authorized(headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good")
    }
    let app = axum::Router::new()
        .route(
            "/user",
            axum::routing::get(|headers: HeaderMap| async move {
                if authorized(&headers) {
                    (
                        StatusCode::OK,
                        axum::Json(json!({"login": "octo", "id": 7})),
                    )
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "Bad credentials"})),
                    )
                }
            }),
        )
        .route(
            "/user/orgs",
            axum::routing::get(|| async { axum::Json(json!([{"login": "llama-org"}])) }),
        )
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            axum::routing::post(
                |headers: HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                    assert_eq!(body["kind"], "SelfSubjectReview");
                    if !authorized(&headers) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(json!({})));
                    }
                    (
                        StatusCode::CREATED,
                        axum::Json(json!({"status": {"userInfo": {
                        "username": "system:serviceaccount:ai:runner",
                        "groups": ["system:authenticated", "ml"]}}})),
                    )
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

#[tokio::test]
async fn github_and_kubernetes_tokens_are_checked_by_their_servers() {
    let base = identity_standin().await;
    let github = Authenticator::new(settings(json!({"provider_config": {
        "type": "github_token", "github_api_base_url": base}})))
    .unwrap();
    let user = github
        .authenticate(&creds(Some("good")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.principal, "octo");
    assert_eq!(user.attribute("roles"), ["octo"]);
    assert_eq!(user.attribute("teams"), ["llama-org"]);
    let err = github.authenticate(&creds(Some("bad"))).await.unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::Unauthorized);

    let kubernetes = Authenticator::new(settings(json!({"provider_config": {
        "type": "kubernetes", "api_server_url": base}})))
    .unwrap();
    let user = kubernetes
        .authenticate(&creds(Some("good")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.principal, "system:serviceaccount:ai:runner");
    assert!(user.attribute("roles").contains(&"ml".to_string()));
    let err = kubernetes
        .authenticate(&creds(Some("bad")))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "Invalid token");
}

#[tokio::test]
async fn oauth2_introspection_admits_active_tokens_only() {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/introspect",
        axum::routing::post(|headers: HeaderMap, body: String| async move {
            // Client credentials by HTTP basic auth, the token in the form body.
            let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
            assert_eq!(basic, Some("Basic c3RhY2s6czNjcmV0")); // stack:s3cret
            let active = body == "token=live-token";
            axum::Json(json!({"active": active, "sub": "erin", "groups": ["ml"]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = Authenticator::new(settings(json!({"provider_config": {"type": "oauth2_token",
        "introspection": {"url": format!("{base}/introspect"), "client_id": "stack",
                          "client_secret": "s3cret"}}})))
    .unwrap();
    let user = auth
        .authenticate(&creds(Some("live-token")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.principal, "erin");
    assert_eq!(user.attribute("teams"), ["ml"]);
    let err = auth
        .authenticate(&creds(Some("dead-token")))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "Token not active");
}
