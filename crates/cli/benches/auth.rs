//! What `server.auth` costs per request, and what the access policy costs on a list route:
//!
//! * one client, back to back, `GET /v1/models` (a handful of models) on four servers: no
//!   authentication, `api_keys`, `oauth2_token` with a JWKS (an ES256 token; the key set is
//!   cached after the first request) and `custom` (an endpoint in this process; its answers
//!   cached for `cache_ttl_seconds`), with p50 and p99 and what each adds over no
//!   authentication;
//! * `GET /v1/models` with 10,000 models registered, on a server without authentication and
//!   on one with a four-rule access policy: as their owner (all 10,000 readable) and as
//!   another user (none readable, so every one is judged and dropped).
//!
//! ```sh
//! cargo build --release --bin llama-stack
//! LLAMA_STACK_BIN=$PWD/target/release/llama-stack cargo bench -p llama-stack --bench auth
//! ```
//!
//! `BENCH_SECS` (default 3) is the measuring time of each point, after a half-second warm-up;
//! `BENCH_MODELS` (default 10000) the number of models of the list point.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

mod support;
use support::{percentile, start_server};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef";

fn run_yaml(auth: &str) -> String {
    format!(
        "version: 2
image_name: auth-bench
providers:
  inference:
  - provider_id: up
    provider_type: remote::vllm
    config:
      url: http://127.0.0.1:9/v1
metadata_store:
  type: sqlite
  db_path: ${{env.SQLITE_STORE_DIR}}/registry.db
models:
- model_id: m1
  provider_id: up
  model_type: llm
server:
  port: 8321
{auth}"
    )
}

struct Point {
    requests: usize,
    p50: f64,
    p99: f64,
    rate: f64,
}

async fn measure(http: &reqwest::Client, url: &str, token: Option<&str>, secs: f64) -> Point {
    let call = || {
        let mut req = http.get(url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let resp = req.send().await.unwrap();
            assert!(resp.status().is_success(), "{url}: {}", resp.status());
            resp.bytes().await.unwrap();
        }
    };
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(500) {
        call().await;
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    Point {
        requests: samples.len(),
        p50: percentile(&samples, 0.5),
        p99: percentile(&samples, 0.99),
        rate: samples.len() as f64 / start.elapsed().as_secs_f64(),
    }
}

/// A JWKS endpoint and a custom authentication endpoint on one local port.
async fn identity_services(jwk: Value) -> String {
    let app = axum::Router::new()
        .route(
            "/jwks",
            axum::routing::get(move || {
                let jwk = jwk.clone();
                async move { axum::Json(json!({"keys": [jwk]})) }
            }),
        )
        .route(
            "/auth",
            axum::routing::post(|| async {
                axum::Json(json!({"principal": "carol", "attributes": {"roles": ["user"]}}))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn es256_token() -> (String, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw();
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..65]),
        "kid": "bench", "alg": "ES256", "use": "sig"});
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let claims = json!({"sub": "dana", "aud": "llama-stack", "groups": ["ml"],
        "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600});
    (jsonwebtoken::encode(&header, &claims, &key).unwrap(), jwk)
}

async fn register_models(http: &reqwest::Client, base: &str, token: Option<&str>, n: usize) {
    let chunks: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(n.div_ceil(8))
        .map(<[usize]>::to_vec)
        .collect();
    let tasks = chunks.into_iter().map(|ids| {
        let http = http.clone();
        let url = format!("{base}/v1/models");
        let token = token.map(str::to_string);
        tokio::spawn(async move {
            for i in ids {
                let mut req = http
                    .post(&url)
                    .json(&json!({"model_id": format!("model-{i:05}"),
                    "provider_id": "up", "provider_model_id": format!("org/model-{i:05}")}));
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.unwrap();
                assert!(resp.status().is_success(), "register: {}", resp.status());
            }
        })
    });
    for task in tasks {
        task.await.unwrap();
    }
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let n_models: usize = std::env::var("BENCH_MODELS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let (jwt, jwk) = es256_token();
    let services = rt.block_on(identity_services(jwk));
    let work = tempfile::tempdir().unwrap();
    let keys = format!(
        "  auth:\n    provider_config:\n      type: api_keys\n      keys:\n      - {{principal: alice, key: {ALICE}, attributes: {{teams: [ml]}}}}\n      - {{principal: bob, key: {BOB}, attributes: {{teams: [web]}}}}\n"
    );
    let configs: [(&str, String, Option<&str>); 4] = [
        ("no authentication", String::new(), None),
        ("api_keys", keys.clone(), Some(ALICE)),
        (
            "oauth2_token, JWKS (ES256)",
            format!(
                "  auth:\n    provider_config:\n      type: oauth2_token\n      jwks: {{uri: {services}/jwks}}\n"
            ),
            Some(jwt.as_str()),
        ),
        (
            "custom endpoint, cached",
            format!(
                "  auth:\n    cache_ttl_seconds: 300\n    provider_config:\n      type: custom\n      endpoint: {services}/auth\n"
            ),
            Some("any-token"),
        ),
    ];
    println!("One client, GET /v1/models (1 model), BENCH_SECS={secs}:");
    println!();
    println!(
        "| authentication | requests | rate /s | p50 ms | p99 ms | adds p50 ms | adds p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut base_point: Option<(f64, f64)> = None;
    for (i, (name, auth, token)) in configs.iter().enumerate() {
        let dir = work.path().join(format!("s{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let server = start_server(&dir, &run_yaml(auth), "server.log", |cmd| {
            cmd.env("SQLITE_STORE_DIR", &dir).env("RUST_LOG", "warn");
        });
        let p = rt.block_on(measure(
            &http,
            &format!("{}/v1/models", server.base),
            *token,
            secs,
        ));
        let (b50, b99) = *base_point.get_or_insert((p.p50, p.p99));
        println!(
            "| {name} | {} | {:.0} | {:.3} | {:.3} | {:+.3} | {:+.3} |",
            p.requests,
            p.rate,
            p.p50,
            p.p99,
            p.p50 - b50,
            p.p99 - b99
        );
    }
    println!();
    println!("GET /v1/models with {n_models} registered models, one client:");
    println!();
    println!("| server | caller | models listed | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|");
    let policy = "    access_policy:\n    - forbid: {actions: [delete], resource: \"model::*\"}\n      unless: user with admin in roles\n    - permit: {actions: [create, read, update, delete]}\n      when: user is owner\n    - permit: {actions: [read]}\n      when: user in owners teams\n    - permit: {actions: [create]}\n";
    for (name, auth, callers) in [
        (
            "no authentication",
            String::new(),
            vec![("anonymous", None)],
        ),
        (
            "api_keys + 4-rule policy",
            format!("{keys}{policy}"),
            vec![
                ("owner (alice)", Some(ALICE)),
                ("other user (bob)", Some(BOB)),
            ],
        ),
    ] {
        let dir = work.path().join(name.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let server = start_server(&dir, &run_yaml(&auth), "server.log", |cmd| {
            cmd.env("SQLITE_STORE_DIR", &dir).env("RUST_LOG", "warn");
        });
        rt.block_on(register_models(&http, &server.base, callers[0].1, n_models));
        for (who, token) in callers {
            let listed: Value = rt.block_on(async {
                let mut req = http.get(format!("{}/v1/models", server.base));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                req.send().await.unwrap().json().await.unwrap()
            });
            let count = listed["data"].as_array().map_or(0, Vec::len);
            let p = rt.block_on(measure(
                &http,
                &format!("{}/v1/models", server.base),
                token,
                secs,
            ));
            println!("| {name} | {who} | {count} | {:.3} | {:.3} |", p.p50, p.p99);
        }
    }
}
