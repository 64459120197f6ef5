//! A real S3-compatible server for the tests: `moto_server` from the e2e venv (installed by
//! scripts/setup-python.sh), one per test process on a free port of 127.0.0.1, stopped by a
//! watchdog shell when the process ends in any way. Without it the tests print why and pass
//! as skipped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use llama_stack_core::RegistryStore;
use llama_stack_provider_files_s3::{S3Files, S3FilesConfig};
use llama_stack_stack::ProviderContext;
use llama_stack_storage::SqliteRegistryStore;

/// Where `moto_server` is looked for: `$MOTO_SERVER`, else the e2e venv
/// (`$LLAMA_STACK_VENV`, default `<repo>/.venv`).
fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("LLAMA_STACK_VENV")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../.venv"));
    venv.join("bin/moto_server")
}

struct Moto {
    endpoint: String,
    /// Closing it (at process exit) makes the watchdog stop the server.
    _watchdog: Mutex<(Child, ChildStdin)>,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn start_moto() -> Result<Option<Moto>, String> {
    let binary = moto_binary();
    if !binary.is_file() {
        eprintln!(
            "SKIPPED: {} is missing, so the remote::s3 tests did not run; run \
             scripts/setup-python.sh (it installs moto[server]) or set MOTO_SERVER",
            binary.display()
        );
        return Ok(None);
    }
    let port = free_port();
    let log = std::env::temp_dir().join(format!("moto-{}-{port}.log", std::process::id()));
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(r#""$0" -H 127.0.0.1 -p "$1" >"$2" 2>&1 & pid=$!; read _ignored; kill $pid"#)
        .arg(&binary)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdin = watchdog.stdin.take().unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
            let mut head = [0u8; 12];
            if stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1") {
                return Ok(Some(Moto {
                    endpoint,
                    _watchdog: Mutex::new((watchdog, stdin)),
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Err(format!(
        "moto_server did not answer on {endpoint} within 30 s; its log:\n{text}"
    ))
}

/// The endpoint of this process's moto server; `None` (after a notice) when it is not
/// installed. Panics when it is installed but does not start.
pub fn endpoint() -> Option<String> {
    static MOTO: OnceLock<Result<Option<Moto>, String>> = OnceLock::new();
    match MOTO.get_or_init(start_moto) {
        Ok(moto) => moto.as_ref().map(|m| m.endpoint.clone()),
        Err(problem) => panic!("{problem}"),
    }
}

/// A bucket name no other test uses.
pub fn bucket(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn config(endpoint: &str, bucket: &str) -> S3FilesConfig {
    S3FilesConfig {
        bucket_name: bucket.into(),
        region: Some("us-east-1".into()),
        aws_access_key_id: Some("testing".into()),
        aws_secret_access_key: Some("testing".into()),
        endpoint_url: Some(endpoint.into()),
        auto_create_bucket: true,
        ..Default::default()
    }
}

pub async fn registry(path: &Path) -> Arc<dyn RegistryStore> {
    Arc::new(SqliteRegistryStore::open(path).await.unwrap())
}

pub fn context(registry: Arc<dyn RegistryStore>) -> ProviderContext {
    ProviderContext {
        provider_id: "s3".into(),
        registry: Some(registry),
        ..Default::default()
    }
}

/// A provider on a new bucket and a new record store, kept alive by the returned folder.
pub async fn fresh(endpoint: &str, prefix: &str) -> (S3Files, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = registry(&dir.path().join("registry.db")).await;
    let files = S3Files::open(config(endpoint, &bucket(prefix)), context(store))
        .await
        .unwrap();
    (files, dir)
}
