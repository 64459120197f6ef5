//! Server start-to-ready time and idle memory of `llama-stack run` on the local distribution
//! with a tiny test model. Prints a table; `cargo bench -p llama-stack --bench server`.
//!
//! With `BENCH_GGUF` set to a GGUF file (e.g. the 1B-shape files the `vs_llamacpp` bench
//! writes under `target/bench-models`), it also serves that model and measures time to first
//! token through HTTP: a streamed OpenAI chat completion of a fresh ~64-token prompt, from
//! sending the request to reading the first content chunk, five prompts, median.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{bin, free_port, proc_kib};

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"OK\"")
}

/// Sends a streamed chat completion and returns the time until the first content delta.
fn ttft(port: u16, model: &str, prompt: &str) -> Duration {
    let body = serde_json::json!({
        "model": model,
        "stream": true,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": prompt}],
    })
    .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "POST /v1/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let t = Instant::now();
    s.write_all(request.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended before any content: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        // The first chunk carries only the role; the first token's text follows.
        let text = String::from_utf8_lossy(&seen);
        let content = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .any(|c| {
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            });
        if content {
            return t.elapsed();
        }
    }
}

fn http_ttft(gguf: &Path, work: &Path) {
    let port = free_port();
    let mut child = start(gguf, &work.join("store-ttft"), port);
    let t = Instant::now();
    while !healthy(port) {
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "server did not become ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let words = ["apple", "river", "stone", "cloud", "lamp", "field"];
    let mut times: Vec<f64> = (0..5)
        .map(|run| {
            // A different prompt each time, so no run reuses an earlier one's cache.
            let prompt: String = (0..60)
                .map(|i| format!("{} ", words[(i * (run + 2)) % words.len()]))
                .collect();
            ttft(
                port,
                "meta-llama/Llama-3.2-1B-Instruct",
                &format!("{run} {prompt}"),
            )
            .as_secs_f64()
        })
        .collect();
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| time to first token through HTTP ({}, ~75-token chat prompt, median of 5) | {:.0} ms |",
        gguf.display(),
        times[times.len() / 2] * 1000.0
    );
}

fn start(model: &Path, store: &Path, port: u16) -> Child {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(bin())
        .current_dir(&repo)
        .args(["run", "local", "--port", &port.to_string()])
        .env("LLAMA_MODEL_PATH", model)
        .env("SQLITE_STORE_DIR", store)
        .env("LLAMA_STACK_GRPC_PORT", "0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting llama-stack")
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let model: PathBuf = work.path().join("tiny");
    let status = Command::new(bin())
        .args(["model", "create-test"])
        .arg(&model)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "model create-test failed (run scripts/fetch-tokenizer.sh)"
    );
    let mut ready_ms = Vec::new();
    let mut rss = Vec::new();
    for run in 0..5 {
        let store = work.path().join(format!("store-{run}"));
        let port = free_port();
        let t = Instant::now();
        let mut child = start(&model, &store, port);
        while !healthy(port) {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "server did not become ready"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        ready_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_secs(1));
        rss.push((
            proc_kib(child.id(), "VmRSS:"),
            proc_kib(child.id(), "VmHWM:"),
        ));
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
    }
    ready_ms.sort_by(|a, b| a.total_cmp(b));
    rss.sort();
    let median = ready_ms[ready_ms.len() / 2];
    let (idle, peak) = rss[rss.len() / 2];
    println!("| measure (tiny test model, 5 runs, median) | value |");
    println!("|---|---|");
    println!("| start-to-ready (spawn → /v1/health OK) | {median:.0} ms |");
    println!("| idle RSS after 1 s | {:.1} MiB |", idle as f64 / 1024.0);
    println!("| peak RSS (VmHWM) | {:.1} MiB |", peak as f64 / 1024.0);
    if let Some(gguf) = std::env::var_os("BENCH_GGUF") {
        http_ttft(Path::new(&gguf), work.path());
    }
}
