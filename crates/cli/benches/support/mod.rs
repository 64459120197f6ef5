//! Helpers shared by the benches that start servers.
#![allow(dead_code)] // each bench uses its own subset

pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary: `LLAMA_STACK_BIN` when set (to measure another build, e.g. an earlier
/// commit, with the very same client), else the one this bench was built with.
pub fn bin() -> String {
    std::env::var("LLAMA_STACK_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_llama-stack").to_string())
}
/// The name this server goes by in the benches' tables.
pub const OURS: &str = "llama-stack-rs";

/// A TCP port free on the loopback interface right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A memory figure of process `pid` from `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB;
/// 0 when it cannot be read.
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A server process, stopped on drop.
pub struct Server {
    pub name: &'static str,
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    pub fn spawn(
        name: &'static str,
        mut cmd: Command,
        port: u16,
        log: PathBuf,
        health: &str,
    ) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        // Benches compare HTTP servers; gRPC stays off so its default port is never contended.
        cmd.env("LLAMA_STACK_GRPC_PORT", "0");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut server = Server {
            name,
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy(health);
        server
    }

    pub fn wait_healthy(&mut self, path: &str) {
        let url = format!("{}{path}", self.base);
        let t = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--max-time", "2", &url])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(180),
                "{} not healthy after 180 s; see {}",
                self.name,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Writes `yaml` as `dir/run.yaml`, making `dir` if needed.
pub fn write_run_yaml(dir: &Path, yaml: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("run.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// `llama-stack run` on `yaml` (written to `dir/run.yaml`) on a free port, its output in
/// `dir/<log>`, once `/v1/health` answers. `configure` sets what differs between benches
/// (environment, working directory) before it starts.
pub fn start_server(
    dir: &Path,
    yaml: &str,
    log: &str,
    configure: impl FnOnce(&mut Command),
) -> Server {
    start_binary(&bin(), OURS, dir, yaml, log, configure)
}

/// [`start_server`] with another build of the server (`binary`), shown as `name`.
pub fn start_binary(
    binary: &str,
    name: &'static str,
    dir: &Path,
    yaml: &str,
    log: &str,
    configure: impl FnOnce(&mut Command),
) -> Server {
    let run_yaml = write_run_yaml(dir, yaml);
    let port = free_port();
    let mut cmd = Command::new(binary);
    cmd.arg("run")
        .arg(&run_yaml)
        .args(["--port", &port.to_string()]);
    configure(&mut cmd);
    Server::spawn(name, cmd, port, dir.join(log), "/v1/health")
}

/// The `q` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
