//! Gateway overhead: the same OpenAI chat completion sent to a fast upstream directly, through
//! this server (`remote::openai-compat`) and through the Python reference server (PyPI
//! `llama-stack` 0.2.14, `remote::vllm`; once with its default telemetry, which writes every
//! request's spans to SQLite and the console, once with no trace sinks), at 1, 8 and 64
//! concurrent clients. Prints markdown tables: requests/s, p50/p99 latency and what each gateway
//! adds over the direct call, and each server's memory. Run by hand, never in CI:
//!
//! ```sh
//! cargo bench -p llama-stack --bench gateway
//! ```
//!
//! Upstreams (`BENCH_UPSTREAM`, default `both`):
//! * `llama-cpp`: llama.cpp's `llama-server` on the tiny random-weight test model as a Q8_0 GGUF
//!   (`scripts/build-llamacpp.sh`, `scripts/fetch-tokenizer.sh`), `max_tokens` 8, greedy.
//! * `stub`: a canned OpenAI answer served from this process (axum, one thread), so the gateways'
//!   own ceiling shows without a model's time in every request.
//!
//! The Python server lives in `.venv-upstream` at the repository root, created here with the
//! pins that make 0.2.14 run on Python 3.11 when it is missing (`python3` on `PATH`, PyPI
//! reachable). `BENCH_SECS` (default 5) is the measuring time of each point; each point is
//! preceded by a one-second warm-up at the same concurrency. `BENCH_BASELINE_BIN` adds another
//! build of this server (e.g. an earlier commit's release binary) as one more target, so a change
//! is measured against its baseline in one run; `BENCH_PYTHON=0` leaves the Python server out.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;
use support::upstream::{ChatReply, start_upstream};
use support::{
    OURS, Server, bin, free_port, percentile, proc_kib, start_binary, start_server, write_run_yaml,
};

const MODEL: &str = "tiny-gguf";
const DIRECT: &str = "upstream direct";
const PY: &str = "Python llama-stack 0.2.14";
const PY_QUIET: &str = "Python llama-stack 0.2.14, no trace sinks";
const BASELINE: &str = "llama-stack-rs baseline";

/// `BENCH_BASELINE_BIN`: another build of this server (an earlier commit's release binary) to
/// measure beside this one in the same run, through the same client.
fn baseline_bin() -> Option<String> {
    std::env::var("BENCH_BASELINE_BIN")
        .ok()
        .filter(|b| !b.is_empty())
}
const CONCURRENCY: [usize; 3] = [1, 8, 64];
const PYTHON_PINS: &[&str] = &[
    "llama-stack==0.2.14",
    "llama-stack-client==0.2.14",
    "openai==1.71.0",
    "pydantic==2.10.6",
    "fastapi==0.115.8",
    "starlette==0.45.3",
    "httpx==0.28.1",
    "numpy<2.3",
    "pandas<3",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The last line a helper script prints (a path).
fn script_output(script: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.trim().lines().last().expect("script printed nothing"))
}

fn run_ok(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(status.success(), "{what} failed");
}

/// `.venv-upstream/bin/python` with llama-stack 0.2.14 importable, made if needed.
fn python_venv() -> PathBuf {
    let venv = repo().join(".venv-upstream");
    let python = venv.join("bin/python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import llama_stack.distribution.server.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if python.is_file() && importable(&python) {
        return python;
    }
    eprintln!("creating {} (llama-stack 0.2.14) ...", venv.display());
    run_ok(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    run_ok(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--ignore-requires-python",
            ])
            .args(PYTHON_PINS),
        "pip install llama-stack==0.2.14",
    );
    assert!(
        importable(&python),
        "llama_stack does not import in {}",
        venv.display()
    );
    python
}

/// This server on `upstream`; with `baseline`, another build of it (`BENCH_BASELINE_BIN`).
fn start_ours(work: &Path, upstream: &str, baseline: Option<&str>) -> Server {
    let store = work.join(if baseline.is_some() {
        "baseline"
    } else {
        "ours"
    });
    let yaml = format!(
        "version: 2
image_name: bench-gateway
apis:
- inference
providers:
  inference:
  - provider_id: compat
    provider_type: remote::openai-compat
    config:
      url: {upstream}/v1
metadata_store:
  type: sqlite
  db_path: {store}/registry.db
models:
- model_id: {MODEL}
  provider_id: compat
  provider_model_id: {MODEL}
  model_type: llm
shields: []
vector_dbs: []
tool_groups: []
",
        store = store.display()
    );
    let configure = |cmd: &mut Command| {
        cmd.current_dir(repo());
    };
    match baseline {
        Some(binary) => start_binary(binary, BASELINE, &store, &yaml, "server.log", configure),
        None => start_server(&store, &yaml, "server.log", configure),
    }
}

/// With `traces` false, the run.yaml adds the telemetry API with no sinks; without a telemetry
/// section, 0.2.14 writes every request's spans to SQLite and the console (its default).
fn start_python(work: &Path, python: &Path, upstream: &str, traces: bool) -> Server {
    let store = work.join(if traces { "python" } else { "python-no-traces" });
    let (telemetry_api, telemetry_provider) = if traces {
        ("", "")
    } else {
        (
            "- telemetry\n",
            "  telemetry:\n  - provider_id: meta-reference\n    provider_type: inline::meta-reference\n    config:\n      sinks: []\n",
        )
    };
    let port = free_port();
    let run_yaml = write_run_yaml(
        &store,
        &format!(
            "version: 2
image_name: bench-gateway
apis:
- inference
{telemetry_api}providers:
{telemetry_provider}  inference:
  - provider_id: vllm
    provider_type: remote::vllm
    config:
      url: {upstream}/v1
      max_tokens: 4096
      api_token: fake
      tls_verify: true
metadata_store:
  type: sqlite
  db_path: {store}/registry.db
models:
- model_id: {MODEL}
  provider_id: vllm
  provider_model_id: {MODEL}
  model_type: llm
  metadata: {{}}
shields: []
vector_dbs: []
datasets: []
scoring_fns: []
benchmarks: []
tool_groups: []
server:
  port: {port}
",
            store = store.display()
        ),
    );
    let mut cmd = Command::new(python);
    cmd.args(["-m", "llama_stack.distribution.server.server", "--config"])
        .arg(&run_yaml)
        .args(["--port", &port.to_string()])
        .env("SQLITE_STORE_DIR", &store)
        // Its default trace database (runtime/trace_store.db) starts empty in the work folder.
        .env("LLAMA_STACK_CONFIG_DIR", &store)
        .current_dir(&store);
    let name = if traces { PY } else { PY_QUIET };
    Server::spawn(name, cmd, port, store.join("server.log"), "/v1/health")
}

fn start_llama_server(work: &Path) -> Server {
    let tokenizer = script_output("fetch-tokenizer.sh");
    let bin_dir = match std::env::var_os("LLAMA_CPP_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => script_output("build-llamacpp.sh"),
    };
    let model_dir = work.join("model");
    run_ok(
        Command::new(bin())
            .args(["model", "create-test"])
            .arg(&model_dir)
            .args([
                "--preset",
                "tiny",
                "--format",
                "gguf",
                "--quant",
                "q8_0",
                "--tokenizer",
            ])
            .arg(&tokenizer)
            .stdout(Stdio::null()),
        "model create-test",
    );
    let port = free_port();
    let slots = std::env::var("BENCH_SLOTS").unwrap_or_else(|_| "8".into());
    let mut cmd = Command::new(bin_dir.join("llama-server"));
    cmd.arg("-m")
        .arg(model_dir.join("model.gguf"))
        .args([
            "-a",
            MODEL,
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args([
            "-t",
            "2",
            "-c",
            "4096",
            "-np",
            &slots,
            "--no-webui",
            "--no-repack",
        ])
        .env("LD_LIBRARY_PATH", &bin_dir);
    Server::spawn(
        "llama-server",
        cmd,
        port,
        work.join("llama-server.log"),
        "/health",
    )
}

/// Eight tokens of text for every request, as a non-streamed completion.
fn start_stub() -> String {
    let reply = ChatReply::Json(serde_json::json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": MODEL,
        "system_fingerprint": "stub",
        "choices": [{"index": 0, "finish_reason": "length",
                     "message": {"role": "assistant", "content": "one two three four five six seven eight"}}],
        "usage": {"prompt_tokens": 14, "completion_tokens": 8, "total_tokens": 22},
    }));
    let health = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
    start_upstream(MODEL, reply, health)
}

#[derive(Clone, Copy)]
struct Point {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

/// `clients` loops sending the request back to back for `secs`; latencies in ms.
async fn load(
    http: &reqwest::Client,
    url: &str,
    body: &Arc<Vec<u8>>,
    clients: usize,
    secs: f64,
) -> Point {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let http = http.clone();
        let url = url.to_string();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await
                {
                    Ok(r) => {
                        let good = r.status().is_success();
                        match r.bytes().await {
                            Ok(b) => good && b.windows(9).any(|w| w == b"\"choices\""),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
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
    let mut all = Vec::new();
    let mut errors = 0;
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

/// One client, the targets in turn for `secs`: each round sends the same request to every
/// target, so drift in the upstream's speed hits all of them alike. Latencies in ms, per target.
async fn interleaved(
    http: &reqwest::Client,
    targets: &[(&'static str, String, Arc<Vec<u8>>)],
    secs: f64,
) -> Vec<Vec<f64>> {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut lat = vec![Vec::new(); targets.len()];
    while Instant::now() < deadline {
        for (i, (_, url, body)) in targets.iter().enumerate() {
            let t = Instant::now();
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.as_ref().clone())
                .send()
                .await;
            if let Ok(r) = r
                && r.status().is_success()
                && r.bytes().await.is_ok()
            {
                lat[i].push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    for l in &mut lat {
        l.sort_by(|a, b| a.total_cmp(b));
    }
    lat
}

/// The served identifier of the tiny model (this server may prefix it with the provider).
async fn identifier(http: &reqwest::Client, base: &str) -> String {
    let models: serde_json::Value = http
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["identifier"].as_str())
        .find(|id| id.ends_with(MODEL))
        .unwrap_or_else(|| panic!("{base} lists no {MODEL}: {models}"))
        .to_string()
}

fn body(model: &str) -> Arc<Vec<u8>> {
    Arc::new(
        serde_json::to_vec(&serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": 8,
            "temperature": 0,
            "stream": false,
        }))
        .unwrap(),
    )
}

fn bench_upstream(
    key: &str,
    label: &str,
    upstream_base: &str,
    upstream_pid: Option<u32>,
    work: &Path,
    python: Option<&Path>,
) {
    let work = work.join(key);
    std::fs::create_dir_all(&work).unwrap();
    let mut servers = vec![start_ours(&work, upstream_base, None)];
    if let Some(baseline) = baseline_bin() {
        servers.push(start_ours(&work, upstream_base, Some(&baseline)));
    }
    if let Some(python) = python {
        servers.push(start_python(&work, python, upstream_base, true));
        servers.push(start_python(&work, python, upstream_base, false));
    }
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let mut targets: Vec<(&'static str, String, Arc<Vec<u8>>)> = vec![(
        DIRECT,
        format!("{upstream_base}/v1/chat/completions"),
        body(MODEL),
    )];
    for server in &servers {
        let id = rt.block_on(identifier(&http, &server.base));
        targets.push((
            server.name,
            format!("{}/v1/openai/v1/chat/completions", server.base),
            body(&id),
        ));
    }
    let idle: Vec<u64> = servers
        .iter()
        .map(|s| proc_kib(s.pid(), "VmRSS:"))
        .collect();
    let mut results = Vec::new();
    for clients in CONCURRENCY {
        for (name, url, body) in &targets {
            let warm = rt.block_on(load(&http, url, body, clients, 1.0));
            assert!(warm.rps > 0.0, "{name} answered nothing at {url}");
            let point = rt.block_on(load(&http, url, body, clients, secs));
            results.push((clients, *name, point));
        }
    }
    let paired = rt.block_on(interleaved(&http, &targets, 3.0 * secs));
    let find = |clients: usize, name: &str| {
        results
            .iter()
            .find(|(c, n, _)| *c == clients && *n == name)
            .unwrap()
            .2
    };

    println!("\n### Upstream: {label}\n");
    println!(
        "| clients | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (clients, name, p) in &results {
        let direct = find(*clients, DIRECT);
        let added = |v: f64, d: f64| {
            if *name == DIRECT {
                "–".to_string()
            } else {
                format!("{:+.2}", v - d)
            }
        };
        println!(
            "| {clients} | {name} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
            p.rps,
            p.p50,
            p.p99,
            added(p.p50, direct.p50),
            added(p.p99, direct.p99),
            p.errors
        );
    }
    println!();
    println!(
        "Added latency, one client, the targets in turn ({} rounds):\n",
        paired[0].len()
    );
    println!("| target | p50 ms | p99 ms | added p50 ms | added p99 ms |");
    println!("|---|---|---|---|---|");
    let (d50, d99) = (percentile(&paired[0], 0.5), percentile(&paired[0], 0.99));
    for ((name, _, _), lat) in targets.iter().zip(&paired) {
        let (p50, p99) = (percentile(lat, 0.5), percentile(lat, 0.99));
        if *name == DIRECT {
            println!("| {name} | {p50:.2} | {p99:.2} | – | – |");
        } else {
            println!(
                "| {name} | {p50:.2} | {p99:.2} | {:+.2} | {:+.2} |",
                p50 - d50,
                p99 - d99
            );
        }
    }
    println!();
    if python.is_some() {
        println!("| clients | {OURS} req/s ÷ {PY} | ÷ {PY_QUIET} |");
        println!("|---|---|---|");
        for clients in CONCURRENCY {
            let ours = find(clients, OURS).rps;
            println!(
                "| {clients} | {:.1}x | {:.1}x |",
                ours / find(clients, PY).rps,
                ours / find(clients, PY_QUIET).rps
            );
        }
        println!();
    }
    println!("| server | RSS idle | RSS after the runs | peak (VmHWM) |");
    println!("|---|---|---|---|");
    for (server, idle) in servers.iter().zip(idle) {
        println!(
            "| {} | {} | {} | {} |",
            server.name,
            mib(idle),
            mib(proc_kib(server.pid(), "VmRSS:")),
            mib(proc_kib(server.pid(), "VmHWM:"))
        );
    }
    if let Some(pid) = upstream_pid {
        println!(
            "| llama-server (upstream) | – | {} | {} |",
            mib(proc_kib(pid, "VmRSS:")),
            mib(proc_kib(pid, "VmHWM:"))
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter.
    let which = std::env::var("BENCH_UPSTREAM").unwrap_or_else(|_| "both".into());
    let work = tempfile::tempdir().unwrap();
    // `BENCH_PYTHON=0` leaves the Python server out (and skips making its venv).
    let python = (std::env::var("BENCH_PYTHON").as_deref() != Ok("0")).then(python_venv);
    println!(
        "gateway bench: binary {}, {} s per point, OpenAI chat completions, max_tokens 8, non-streaming",
        bin(),
        std::env::var("BENCH_SECS").unwrap_or_else(|_| "5".into())
    );
    if which == "both" || which == "llama-cpp" {
        let upstream = start_llama_server(work.path());
        bench_upstream(
            "llama-cpp",
            "llama-server (tiny Q8_0 GGUF)",
            &upstream.base.clone(),
            Some(upstream.pid()),
            work.path(),
            python.as_deref(),
        );
    }
    if which == "both" || which == "stub" {
        let base = start_stub();
        bench_upstream(
            "stub",
            "canned stub (no model)",
            &base,
            None,
            work.path(),
            python.as_deref(),
        );
    }
}
