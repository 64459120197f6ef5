//! What an OpenAI response (`POST /v1/responses`, `inline::builtin`) costs over the inference
//! call it makes, with the metadata store on SQLite. A canned OpenAI-compatible upstream in
//! this process answers every chat completion (streamed, one short text; a `file_search` tool
//! call first when the request offers that tool and the last message is not a tool result),
//! so the figures are the server's own work:
//!
//! * one client, back to back: the streamed chat completion a response makes
//!   (`POST /v1/chat/completions` through the server), a stored response (`stream: false`)
//!   and a stored streamed response (`stream: true`, read to its last event), and what each
//!   response adds over the chat completion at p50 and p99;
//! * one client: a `file_search` response end to end (tool call, search of a vector store of
//!   a few uploaded text files with the real all-MiniLM-L6-v2 on the CPU, second inference
//!   call), next to a bare search of the same store with the same query; skipped when the
//!   model folder (`EMBEDDING_MODEL_PATH`, default /root/.llama/test-models/all-MiniLM-L6-v2)
//!   is missing;
//! * 100 streamed responses started at once, each read to its end, in three rounds on a fresh
//!   server: wall time, responses per second, per-response latency and the server's memory.
//!
//! ```sh
//! cargo build --release --bin llama-stack
//! LLAMA_STACK_BIN=$PWD/target/release/llama-stack cargo bench -p llama-stack --bench responses
//! ```
//!
//! `BENCH_SECS` (default 5) is the measuring time of each one-client point, after a
//! one-second warm-up.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::upstream::{ChatReply, start_upstream_with};
use support::{Server, percentile, proc_kib, start_server};

const MODEL: &str = "stub";
const EMBEDDING_MODEL: &str = "all-MiniLM-L6-v2";
const QUERY: &str = "How long may an expense claim wait before it is filed?";
const CONCURRENT: usize = 100;
const ROUNDS: usize = 3;

/// A few short documents for the vector store: (file name, text).
const DOCUMENTS: &[(&str, &str)] = &[
    (
        "expenses.txt",
        "Expense policy. Employees file expense claims within 30 days of the purchase. Claims \
         older than 30 days need a manager's written approval. Receipts are required for every \
         item above 25 euros. Travel is booked through the company portal; economy class is \
         the rule for flights under six hours. Hotel nights are refunded up to 150 euros in \
         most cities and up to 220 euros in London, Paris, New York and Tokyo.",
    ),
    (
        "security.txt",
        "Security handbook. Laptops are encrypted and lock after five minutes without input. \
         Passwords have at least 14 characters; a password manager is provided. Report a lost \
         device to the service desk within one hour. Production access needs a hardware key \
         and is reviewed every quarter. Never paste customer data into external tools.",
    ),
    (
        "onboarding.txt",
        "Onboarding guide. On the first day new staff collect their badge at reception at \
         9:00, meet their buddy and set up their laptop. In the first week they finish the \
         security training and the expense policy course. Each team holds a welcome lunch in \
         the second week. Questions go to the people team channel.",
    ),
    (
        "holidays.txt",
        "Leave policy. Full-time staff have 27 days of paid leave a year plus public holidays. \
         Up to five unused days carry over to the next year and lapse at the end of March. \
         Parental leave is 20 weeks at full pay. Sick days need a doctor's note from the \
         fourth consecutive day. Leave is requested in the HR portal two weeks ahead.",
    ),
];

fn text_reply() -> ChatReply {
    ChatReply::sse(&[
        serde_json::json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello there."}}]}),
        serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        serde_json::json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}),
    ])
}

fn tool_call_reply() -> ChatReply {
    let arguments = serde_json::json!({"query": QUERY}).to_string();
    ChatReply::sse(&[
        serde_json::json!({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "file_search", "arguments": arguments}}]}}]}),
        serde_json::json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        serde_json::json!({"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}}),
    ])
}

/// Text for every chat completion, except a `file_search` call when the request offers that
/// tool and its last message is not a tool result.
fn start_stub() -> String {
    let (text, call) = (text_reply(), tool_call_reply());
    start_upstream_with(
        MODEL,
        move |req| {
            let offers_search = req["tools"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["function"]["name"] == "file_search");
            let after_tool = req["messages"]
                .as_array()
                .and_then(|m| m.last())
                .is_some_and(|m| m["role"] == "tool");
            if offers_search && !after_tool {
                call.clone()
            } else {
                text.clone()
            }
        },
        axum::Router::new(),
    )
}

/// Inference through the canned upstream and builtin responses, metadata on SQLite in `dir`.
fn start_plain(dir: &Path, upstream: &str) -> Server {
    let yaml = format!(
        "version: 2
image_name: bench-responses
apis: [inference, responses]
providers:
  inference:
  - provider_id: up
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
      resilience: {{max_retries: 0}}
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config: {{}}
metadata_store:
  type: sqlite
  db_path: {dir}/registry.db
models:
- model_id: {MODEL}
  provider_id: up
  model_type: llm
",
        dir = dir.display()
    );
    start_server(dir, &yaml, "ours.log", |cmd| {
        cmd.env("RUST_LOG", "warn");
    })
}

/// [`start_plain`] plus files, vector stores on sqlite-vec and the embedding model.
fn start_with_search(dir: &Path, upstream: &str, model_path: &str) -> Server {
    let yaml = format!(
        "version: 2
image_name: bench-responses-search
apis: [inference, vector_io, files, responses]
providers:
  inference:
  - provider_id: up
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
      resilience: {{max_retries: 0}}
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config:
      model_path: {model_path}
      device: cpu
  vector_io:
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: {dir}/sqlite_vec.db
  files:
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      storage_dir: {dir}/files
  responses:
  - provider_id: builtin
    provider_type: inline::builtin
    config: {{}}
metadata_store:
  type: sqlite
  db_path: {dir}/registry.db
models:
- model_id: {MODEL}
  provider_id: up
  model_type: llm
- model_id: {EMBEDDING_MODEL}
  provider_id: sentence-transformers
  provider_model_id: {EMBEDDING_MODEL}
  model_type: embedding
  metadata:
    embedding_dimension: 384
",
        dir = dir.display()
    );
    start_server(dir, &yaml, "ours.log", |cmd| {
        cmd.env("RUST_LOG", "warn");
    })
}

/// The whole body of a successful POST; `None` on any failure.
async fn post(http: &reqwest::Client, url: &str, body: &serde_json::Value) -> Option<String> {
    let reply = http.post(url).json(body).send().await.ok()?;
    if !reply.status().is_success() {
        return None;
    }
    reply.text().await.ok()
}

/// Uploads `text` as `name` (purpose `assistants`); its file id.
async fn upload(http: &reqwest::Client, base: &str, name: &str, text: &str) -> String {
    let boundary = "bench-responses-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: text/plain\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    let reply = http
        .post(format!("{base}/v1/files"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("upload sent");
    let status = reply.status();
    let text = reply.text().await.unwrap();
    assert!(status.is_success(), "upload of {name}: {status} {text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Latencies (ms, sorted) of `op` run back to back by `clients` tasks for `secs`, the rate
/// of successes per second, and the number of failures.
async fn measure<F, Fut>(clients: usize, secs: f64, op: F) -> (Vec<f64>, f64, usize)
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
            let (mut lat, mut failed) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let t = Instant::now();
                if op().await {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                } else {
                    failed += 1;
                }
            }
            (lat, failed)
        }));
    }
    let (mut all, mut failed) = (Vec::new(), 0);
    for task in tasks {
        let (lat, f) = task.await.unwrap();
        all.extend(lat);
        failed += f;
    }
    all.sort_by(|a, b| a.total_cmp(b));
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    (all, rate, failed)
}

/// A POST of `body` to `base` + `path`, successful when the reply contains `expect`.
fn op(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: serde_json::Value,
    expect: &'static str,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
+ Send
+ Sync
+ Clone
+ 'static {
    let (http, url, body) = (http.clone(), format!("{base}{path}"), Arc::new(body));
    move || {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        Box::pin(async move {
            post(&http, &url, &body)
                .await
                .is_some_and(|t| t.contains(expect))
        })
    }
}

type Point = (Vec<f64>, f64, usize);

fn row(what: &str, (lat, rate, failed): &Point) {
    println!(
        "| {what} | {} | {failed} | {rate:.0} | {:.3} | {:.3} |",
        lat.len(),
        percentile(lat, 0.5),
        percentile(lat, 0.99)
    );
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

    let chat_body = serde_json::json!({"model": MODEL, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Hi"}]});
    let stored_body = serde_json::json!({"model": MODEL, "input": "Hi"});
    let streamed_body = serde_json::json!({"model": MODEL, "input": "Hi", "stream": true});

    // 1. One client: the chat completion a response makes, then the two kinds of response.
    let plain = start_plain(&work.path().join("plain"), &upstream);
    let base = plain.base.clone();
    // The server's SSE ends without `[DONE]`: the usage chunk is the last.
    let chat = op(
        &http,
        &base,
        "/v1/chat/completions",
        chat_body,
        "total_tokens",
    );
    let stored = op(&http, &base, "/v1/responses", stored_body, "Hello there.");
    let streamed = op(
        &http,
        &base,
        "/v1/responses",
        streamed_body.clone(),
        "response.completed",
    );
    let (bare, one_stored, one_streamed) = rt.block_on(async {
        measure(1, 1.0, chat.clone()).await;
        let bare = measure(1, secs, chat).await;
        measure(1, 1.0, stored.clone()).await;
        let one_stored = measure(1, secs, stored).await;
        measure(1, 1.0, streamed.clone()).await;
        let one_streamed = measure(1, secs, streamed).await;
        (bare, one_stored, one_streamed)
    });
    drop(plain);
    println!("One client, SQLite metadata store, BENCH_SECS={secs}:");
    println!();
    println!("| measure | requests | failed | rate /s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    row("(a) chat completion, streamed through the server", &bare);
    row("(b) response, stored, not streamed", &one_stored);
    row("(c) response, stored, streamed", &one_streamed);
    println!();
    println!("| response | adds over its inference call (a), p50 | p99 |");
    println!("|---|---:|---:|");
    for (what, point) in [
        ("(b) not streamed", &one_stored),
        ("(c) streamed", &one_streamed),
    ] {
        println!(
            "| {what} | {:+.3} ms | {:+.3} ms |",
            percentile(&point.0, 0.5) - percentile(&bare.0, 0.5),
            percentile(&point.0, 0.99) - percentile(&bare.0, 0.99)
        );
    }
    println!();

    // 2. A file_search response over a vector store of a few uploaded files.
    let model_path = std::env::var("EMBEDDING_MODEL_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("/root/.llama/test-models/{EMBEDDING_MODEL}"));
    if Path::new(&model_path).join("config.json").exists() {
        let server = start_with_search(&work.path().join("search"), &upstream, &model_path);
        let base = server.base.clone();
        let store: String = rt.block_on(async {
            let mut file_ids = Vec::new();
            for (name, text) in DOCUMENTS {
                file_ids.push(upload(&http, &base, name, text).await);
            }
            let text = post(
                &http,
                &format!("{base}/v1/vector_stores"),
                &serde_json::json!({"name": "bench", "file_ids": file_ids,
                    "embedding_model": EMBEDDING_MODEL, "embedding_dimension": 384,
                    "provider_id": "sqlite-vec"}),
            )
            .await
            .expect("vector store created");
            let store: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                store["file_counts"]["completed"],
                DOCUMENTS.len(),
                "files attached: {store}"
            );
            store["id"].as_str().unwrap().to_string()
        });
        let tools = serde_json::json!([{"type": "file_search", "vector_store_ids": [store],
            "max_num_results": 3}]);
        let search_body = serde_json::json!({"model": MODEL, "input": QUERY, "tools": tools});
        // One response with the results included, to check the search finds the passage.
        let check = rt.block_on(async {
            let mut body = search_body.clone();
            body["include"] = serde_json::json!(["file_search_call.results"]);
            post(&http, &format!("{base}/v1/responses"), &body)
                .await
                .expect("file_search response")
        });
        let check: serde_json::Value = serde_json::from_str(&check).unwrap();
        let top = check["output"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["type"] == "file_search_call")
            .and_then(|i| i["results"][0]["filename"].as_str())
            .unwrap_or("none")
            .to_string();
        eprintln!("file_search: best passage from {top}");
        let search = op(
            &http,
            &base,
            &format!("/v1/vector_stores/{store}/search"),
            serde_json::json!({"query": QUERY, "max_num_results": 3}),
            "expenses.txt",
        );
        let respond = op(&http, &base, "/v1/responses", search_body, "file_citation");
        let (bare_search, with_search) = rt.block_on(async {
            measure(1, 1.0, search.clone()).await;
            let bare_search = measure(1, secs, search).await;
            measure(1, 1.0, respond.clone()).await;
            let with_search = measure(1, secs, respond).await;
            (bare_search, with_search)
        });
        drop(server);
        println!(
            "file_search over {} uploaded files (sqlite-vec, {EMBEDDING_MODEL} on the CPU), one client; best passage from {top}:",
            DOCUMENTS.len()
        );
        println!();
        println!("| measure | requests | failed | rate /s | p50 ms | p99 ms |");
        println!("|---|---:|---:|---:|---:|---:|");
        row("vector store search, same query", &bare_search);
        row("file_search response, stored, not streamed", &with_search);
        println!();
    } else {
        eprintln!("file_search skipped: no embedding model at {model_path}");
    }

    // 3. 100 streamed responses started at once, on a fresh server.
    let server = start_plain(&work.path().join("burst"), &upstream);
    let base = server.base.clone();
    let pid = server.pid();
    let streamed = op(
        &http,
        &base,
        "/v1/responses",
        streamed_body,
        "response.completed",
    );
    rt.block_on(async {
        for _ in 0..3 {
            assert!(streamed().await, "streamed response");
        }
    });
    let rss_idle = proc_kib(pid, "VmRSS:");
    let hwm_idle = proc_kib(pid, "VmHWM:");
    println!(
        "{CONCURRENT} streamed responses started at once, {ROUNDS} rounds on a fresh server \
         (after 3 warm-up responses: VmRSS {rss_idle} KiB, VmHWM {hwm_idle} KiB):"
    );
    println!();
    println!(
        "| round | done | failed | wall ms | responses/s | p50 ms | p99 ms | VmRSS before KiB | VmRSS after KiB | VmHWM after KiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for round in 1..=ROUNDS {
        let before = proc_kib(pid, "VmRSS:");
        let (lat, wall, failed) = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..CONCURRENT)
                .map(|_| {
                    let streamed = streamed.clone();
                    tokio::spawn(async move {
                        let t = Instant::now();
                        streamed().await.then(|| t.elapsed().as_secs_f64() * 1000.0)
                    })
                })
                .collect();
            let (mut lat, mut failed) = (Vec::new(), 0);
            for task in tasks {
                match task.await.unwrap() {
                    Some(ms) => lat.push(ms),
                    None => failed += 1,
                }
            }
            lat.sort_by(|a, b| a.total_cmp(b));
            (lat, start.elapsed().as_secs_f64(), failed)
        });
        println!(
            "| {round} | {} | {failed} | {:.1} | {:.0} | {:.2} | {:.2} | {before} | {} | {} |",
            lat.len(),
            wall * 1000.0,
            lat.len() as f64 / wall,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            proc_kib(pid, "VmRSS:"),
            proc_kib(pid, "VmHWM:")
        );
    }
    drop(server);
}
