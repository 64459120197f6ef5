//! Server start-to-ready time and idle memory of `llama-stack run` on the local distribution
//! with a tiny test model. Prints a table; `cargo bench -p llama-stack --bench server`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llama-stack");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn start(model: &Path, store: &Path, port: u16) -> Child {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(BIN)
        .current_dir(&repo)
        .args(["run", "local", "--port", &port.to_string()])
        .env("LLAMA_MODEL_PATH", model)
        .env("SQLITE_STORE_DIR", store)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting llama-stack")
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let model: PathBuf = work.path().join("tiny");
    let status = Command::new(BIN)
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
        rss.push((rss_kib(child.id(), "VmRSS:"), rss_kib(child.id(), "VmHWM:")));
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
}
