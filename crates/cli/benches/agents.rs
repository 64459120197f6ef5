//! What an agent turn costs over the inference call it makes, and how fast sessions and turns
//! are stored. A canned OpenAI-compatible upstream in this process answers every chat
//! completion (streamed, one short text), so the figures are the server's own work:
//!
//! * one client: the chat completion an agent turn makes (classic, streamed, through the
//!   server) against a whole turn (`stream: false`, a fresh persisted session each time);
//! * eight clients: sessions created per second and turns stored per second, with the metadata
//!   store on SQLite and on PostgreSQL (a throwaway cluster; needs PG_BIN_DIR or PostgreSQL
//!   installed, see scripts/setup-postgres.sh).
//!
//! ```sh
//! cargo build -p llama-stack --benches && $(ls -t target/debug/deps/agents-* | grep -v '\.d$' | head -1)   # or cargo bench
//! ```
//!
//! `BENCH_SECS` (default 5) is the measuring time of each point, after a one-second warm-up.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::upstream::{ChatReply, start_upstream};
use support::{Server, percentile, start_server};

const MODEL: &str = "stub";

/// One short text, streamed: the chat completion every agent turn makes.
fn start_stub() -> String {
    let reply = ChatReply::sse(&[
        serde_json::json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello there."}}]}),
        serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ]);
    start_upstream(MODEL, reply, axum::Router::new())
}

fn start_ours(work: &Path, upstream: &str, metadata_store: &str) -> Server {
    let yaml = format!(
        "version: 2
image_name: bench-agents
apis: [inference, agents]
providers:
  inference:
  - provider_id: up
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
      resilience: {{max_retries: 0}}
  agents:
  - provider_id: meta-reference
    provider_type: inline::meta-reference
    config: {{}}
metadata_store:
{metadata_store}
models:
- model_id: {MODEL}
  provider_id: up
  model_type: llm
"
    );
    start_server(work, &yaml, "ours.log", |cmd| {
        cmd.env("RUST_LOG", "warn");
    })
}

async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Option<String> {
    let reply = http.post(url).json(body).send().await.ok()?;
    if !reply.status().is_success() {
        return None;
    }
    reply.text().await.ok()
}

async fn new_session(http: &reqwest::Client, base: &str, agent: &str) -> Option<String> {
    let text = post(
        http,
        &format!("{base}/v1/agents/{agent}/session"),
        &serde_json::json!({"session_name": "bench"}),
    )
    .await?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["session_id"]
        .as_str()
        .map(str::to_string)
}

/// Latencies (ms, sorted) of `op` run back to back by `clients` tasks for `secs`.
/// Sorted latencies in milliseconds, and completed operations per second.
type Measured = (Vec<f64>, f64);

async fn measure<F, Fut>(clients: usize, secs: f64, op: F) -> Measured
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                if op().await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    (all, rate)
}

fn main() {
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let upstream = start_stub();
    let work = tempfile::tempdir().unwrap();

    let sqlite_dir = work.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let sqlite = format!(
        "  type: sqlite\n  db_path: {}/registry.db",
        sqlite_dir.display()
    );
    let mut stores = vec![("SQLite", sqlite_dir, sqlite)];
    match llama_stack_pg_test_server::database("bench_agents") {
        Some(db) => {
            let dir = work.path().join("pg");
            std::fs::create_dir_all(&dir).unwrap();
            let store = format!(
                "  type: postgres\n  host: {}\n  port: {}\n  db: {}\n  user: {}\n  password: {}",
                db.host, db.port, db.database, db.user, db.password
            );
            stores.push(("PostgreSQL", dir, store));
        }
        None => eprintln!("PostgreSQL skipped"),
    }

    println!("| store | measure | clients | rate /s | p50 ms | p99 ms |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut overhead = Vec::new();
    for (name, dir, store) in stores {
        let server = start_ours(&dir, &upstream, &store);
        let base = server.base.clone();
        let agent: String = rt.block_on(async {
            let text = post(
                &http,
                &format!("{base}/v1/agents"),
                &serde_json::json!({"agent_config": {"model": MODEL, "instructions": "Be brief.",
                    "enable_session_persistence": true}}),
            )
            .await
            .expect("agent created");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["agent_id"]
                .as_str()
                .unwrap()
                .to_string()
        });
        let chat = {
            let (http, base) = (http.clone(), base.clone());
            move || {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    post(
                        &http,
                        &format!("{base}/v1/inference/chat-completion"),
                        &serde_json::json!({"model_id": MODEL, "stream": true, "messages": [
                            {"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi"}]}),
                    )
                    .await
                    .is_some_and(|t| t.contains("end_of_turn"))
                }
            }
        };
        let turn = |http: reqwest::Client, base: String, agent: String| {
            move || {
                let (http, base, agent) = (http.clone(), base.clone(), agent.clone());
                async move {
                    let Some(session) = new_session(&http, &base, &agent).await else {
                        return false;
                    };
                    post(
                        &http,
                        &format!("{base}/v1/agents/{agent}/session/{session}/turn"),
                        &serde_json::json!({"stream": false, "messages": [
                            {"role": "user", "content": "Hi"}]}),
                    )
                    .await
                    .is_some_and(|t| t.contains("Hello there."))
                }
            }
        };
        let sessions = {
            let (http, base, agent) = (http.clone(), base.clone(), agent.clone());
            move || {
                let (http, base, agent) = (http.clone(), base.clone(), agent.clone());
                async move { new_session(&http, &base, &agent).await.is_some() }
            }
        };
        let rows: Vec<(&str, usize, Measured)> = rt.block_on(async {
            let chat1 = chat.clone();
            measure(1, 1.0, chat1).await;
            let bare = measure(1, secs, chat.clone()).await;
            let one_turn = measure(1, secs, turn(http.clone(), base.clone(), agent.clone())).await;
            let many_sessions = measure(8, secs, sessions).await;
            let many_turns =
                measure(8, secs, turn(http.clone(), base.clone(), agent.clone())).await;
            vec![
                ("chat completion through the server", 1, bare),
                ("agent turn (session + turn)", 1, one_turn),
                ("sessions created", 8, many_sessions),
                ("turns stored (session + turn)", 8, many_turns),
            ]
        });
        for (what, clients, (lat, rate)) in &rows {
            println!(
                "| {name} | {what} | {clients} | {rate:.0} | {:.3} | {:.3} |",
                percentile(lat, 0.5),
                percentile(lat, 0.99)
            );
        }
        overhead.push((
            name,
            percentile(&rows[1].2.0, 0.5) - percentile(&rows[0].2.0, 0.5),
            percentile(&rows[1].2.0, 0.99) - percentile(&rows[0].2.0, 0.99),
        ));
        drop(server);
    }
    println!();
    println!("| store | a turn adds over its inference call, p50 | p99 |");
    println!("|---|---:|---:|");
    for (name, p50, p99) in overhead {
        println!("| {name} | {p50:+.3} ms | {p99:+.3} ms |");
    }
}
