//! `server.quota` on both transports of the real binary: gRPC calls and HTTP requests from one
//! address draw on one budget; past it gRPC answers `RESOURCE_EXHAUSTED` and HTTP 429.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_llama-stack");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn grpc_and_http_draw_on_one_budget() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (port, grpc_port) = (free_port(), free_port());
    let d = dir.path().display();
    let yaml = format!(
        "version: 2
image_name: quota-test
server:
  host: 127.0.0.1
  port: {port}
  grpc_port: {grpc_port}
  quota:
    anonymous_max_requests: 3
    period: hour
providers:
  safety:
  - provider_id: code-scanner
    provider_type: inline::code-scanner
    config: {{}}
metadata_store:
  type: sqlite
  db_path: {d}/registry.db
"
    );
    let path = dir.path().join("run.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Health checks are not counted, so waiting on them spends nothing.
    while http
        .get(format!("http://127.0.0.1:{port}/v1/health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = || tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    for _ in 0..2 {
        assert!(health.check(check()).await.is_ok());
    }
    let models = http
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    let over = health.check(check()).await.unwrap_err();
    assert_eq!(over.code(), tonic::Code::ResourceExhausted, "{over:?}");
    assert!(over.message().contains("Quota exceeded"), "{over:?}");
    let over = http
        .get(format!("http://127.0.0.1:{port}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), 429);
    assert!(over.headers().contains_key("retry-after"));
    let _ = child.kill();
    let _ = child.wait();
}
