//! What a shield check costs on top of its guard model: the same Llama Guard prompt sent as a
//! plain chat completion straight to a fast upstream, as a chat completion through this server,
//! and as `/v1/safety/run-shield` and `/v1/moderations` calls through this server (which render
//! the prompt, call the same upstream through the inference API and parse the verdict); plus the
//! code scanner's `run-shield`, which needs no model. One and eight concurrent clients. Prints a
//! markdown table of requests/s and p50/p99 latency, and the p50 a shield adds over the bare
//! inference call. Run by hand, never in CI:
//!
//! ```sh
//! cargo bench -p llama-stack --bench safety
//! ```
//!
//! The upstream is a canned OpenAI answer (`unsafe\nS1`) served from this process, so the
//! figures are the server's own overhead. `BENCH_SECS` (default 5) is the measuring time of each
//! point, after a one-second warm-up.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::upstream::{ChatReply, start_upstream};
use support::{Server, percentile, start_server};

const MODEL: &str = "meta-llama/Llama-Guard-3-1B";
const CONCURRENCY: [usize; 2] = [1, 8];

/// The Llama Guard 3 prompt for one user message on the 1B guard, as the shield renders it.
fn guard_prompt(text: &str) -> String {
    let categories = [
        "Violent Crimes",
        "Non-Violent Crimes",
        "Sex Crimes",
        "Child Exploitation",
        "Defamation",
        "Specialized Advice",
        "Privacy",
        "Intellectual Property",
        "Indiscriminate Weapons",
        "Hate",
        "Self-Harm",
        "Sexual Content",
        "Elections",
    ]
    .iter()
    .enumerate()
    .map(|(i, name)| format!("S{}: {name}.", i + 1))
    .collect::<Vec<_>>()
    .join("\n");
    format!(
        "Task: Check if there is unsafe content in 'User' messages in conversations according our safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n{categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\nUser: {text}\n\n<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST User message in the above conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include a comma-separated list of violated categories."
    )
}

/// The guard model's verdict on every prompt: unsafe, category S1.
fn start_stub() -> String {
    let reply = ChatReply::Json(serde_json::json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "unsafe\nS1"}}],
        "usage": {"prompt_tokens": 200, "completion_tokens": 4, "total_tokens": 204},
    }));
    start_upstream(MODEL, reply, axum::Router::new())
}

fn start_ours(work: &Path, upstream: &str) -> Server {
    let yaml = format!(
        "version: 2
image_name: bench-safety
apis: [inference, safety]
providers:
  inference:
  - provider_id: up
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
      resilience: {{max_retries: 0}}
  safety:
  - provider_id: llama-guard
    provider_type: inline::llama-guard
    config: {{}}
  - provider_id: code-scanner
    provider_type: inline::code-scanner
    config: {{}}
metadata_store:
  type: sqlite
  db_path: {store}/registry.db
models:
- model_id: {MODEL}
  provider_id: up
  model_type: llm
shields:
- shield_id: llama-guard
  provider_id: llama-guard
  provider_shield_id: {MODEL}
- shield_id: CodeScanner
  provider_id: code-scanner
",
        store = work.display()
    );
    start_server(work, &yaml, "ours.log", |cmd| {
        cmd.env("RUST_LOG", "warn");
    })
}

struct Point {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

/// `clients` loops posting `body` back to back for `secs`; a reply counts when it is a 2xx
/// holding `expect`. Latencies in ms.
async fn load(
    http: &reqwest::Client,
    url: &str,
    body: &Arc<Vec<u8>>,
    expect: &'static str,
    clients: usize,
    secs: f64,
) -> Point {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, body) = (http.clone(), url.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                let reply = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
                let ok = match reply {
                    Ok(r) if r.status().is_success() => {
                        r.text().await.is_ok_and(|text| text.contains(expect))
                    }
                    _ => false,
                };
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (lat, e) = task.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Point {
        rps: all.len() as f64 / elapsed,
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        errors,
    }
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let work = tempfile::tempdir().unwrap();
    let upstream = start_stub();
    let ours = start_ours(work.path(), &upstream);
    let text = "How do I pick a lock?";
    let prompt = guard_prompt(text);
    let chat = |model: &str| {
        serde_json::json!({"model": model, "temperature": 0, "max_tokens": 64,
                           "messages": [{"role": "user", "content": prompt}]})
    };
    let code = "import hashlib\nimport subprocess\n\ndef digest(data):\n    return hashlib.md5(data).hexdigest()\n\ndef run(cmd):\n    return subprocess.run(cmd, shell=True)\n".repeat(8);
    let targets: Vec<(&str, String, serde_json::Value, &'static str)> = vec![
        (
            "guard model, direct",
            format!("{upstream}/v1/chat/completions"),
            chat(MODEL),
            "unsafe",
        ),
        (
            "guard model, through the server",
            format!("{}/v1/chat/completions", ours.base),
            chat(MODEL),
            "unsafe",
        ),
        (
            "run-shield (llama-guard)",
            format!("{}/v1/safety/run-shield", ours.base),
            serde_json::json!({"shield_id": "llama-guard", "params": {},
                            "messages": [{"role": "user", "content": text}]}),
            "\"S1\"",
        ),
        (
            "moderations (llama-guard)",
            format!("{}/v1/moderations", ours.base),
            serde_json::json!({"model": MODEL, "input": text}),
            "\"flagged\":true",
        ),
        (
            "run-shield (CodeScanner, 1.6 KB)",
            format!("{}/v1/safety/run-shield", ours.base),
            serde_json::json!({"shield_id": "CodeScanner", "params": {},
                            "messages": [{"role": "assistant", "content": code}]}),
            "violation_type",
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    println!("| call | clients | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut p50 = std::collections::BTreeMap::new();
    for clients in CONCURRENCY {
        for (name, url, body, expect) in &targets {
            let body = Arc::new(serde_json::to_vec(body).unwrap());
            rt.block_on(load(&http, url, &body, expect, clients, 1.0));
            let point = rt.block_on(load(&http, url, &body, expect, clients, secs));
            println!(
                "| {name} | {clients} | {:.0} | {:.3} | {:.3} | {} |",
                point.rps, point.p50, point.p99, point.errors
            );
            p50.insert((clients, *name), point.p50);
        }
    }
    println!();
    println!("| clients | run-shield adds over the inference call through the server (p50) |");
    println!("|---:|---:|");
    for clients in CONCURRENCY {
        let shield = p50[&(clients, "run-shield (llama-guard)")];
        let bare = p50[&(clients, "guard model, through the server")];
        println!("| {clients} | {:+.3} ms |", shield - bare);
    }
    drop(ours);
}
