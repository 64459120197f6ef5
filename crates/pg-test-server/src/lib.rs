//! Throwaway PostgreSQL clusters for the PostgreSQL-backed tests and benches.
//!
//! [`PgTestServer::start`] runs `initdb` and `pg_ctl` from the local PostgreSQL installation
//! (see `scripts/setup-postgres.sh`) in a temporary folder, on a free port of 127.0.0.1, with
//! password authentication for the superuser [`USER`]. PostgreSQL refuses to run as root, so
//! when the tests run as root the cluster runs as the `postgres` user (or `nobody`) through
//! `runuser`. [`PgTestServer::create_database`] makes a database with the `vector` extension
//! enabled. The cluster stops, and its folder is removed, when the server is dropped — or, for
//! the process-wide [`shared`] cluster that is never dropped, when the test process exits: a
//! small watchdog process waits for the end of a pipe only this process holds.
//!
//! When PostgreSQL or pgvector is not installed, the helpers panic with a message naming
//! `scripts/setup-postgres.sh`, so a missing database never passes silently; with
//! `LLAMA_STACK_SKIP_PG_TESTS=1` they print a notice and return `None` instead.
//!
//! A test-only crate: it depends on nothing of the stack.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// Set to `1` to skip PostgreSQL-backed tests on a machine without PostgreSQL.
pub const SKIP_ENV: &str = "LLAMA_STACK_SKIP_PG_TESTS";
/// The superuser of every throwaway cluster.
pub const USER: &str = "llama";
/// [`USER`]'s password; connections over TCP must give it (scram-sha-256).
pub const PASSWORD: &str = "llama-test-password";
/// Where every throwaway cluster listens.
pub const HOST: &str = "127.0.0.1";

const SETUP_HINT: &str = "run scripts/setup-postgres.sh to install PostgreSQL 15 and pgvector \
     (or set LLAMA_STACK_SKIP_PG_TESTS=1 to skip the PostgreSQL-backed tests)";

/// Finds PostgreSQL's bin folder (`$PG_BIN_DIR`, else the newest `/usr/lib/postgresql/*/bin`,
/// else `initdb` on `PATH`) and checks that pgvector is installed next to it.
pub fn find_installation() -> Result<PathBuf, String> {
    let bin_dir = match std::env::var("PG_BIN_DIR").ok().filter(|d| !d.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.join("initdb").is_file() {
                return Err(format!(
                    "PG_BIN_DIR={} holds no initdb; {SETUP_HINT}",
                    dir.display()
                ));
            }
            dir
        }
        None => debian_bin_dir().or_else(path_bin_dir).ok_or_else(|| {
            format!("PostgreSQL is not installed (no initdb found); {SETUP_HINT}")
        })?,
    };
    let share = run(Command::new(bin_dir.join("pg_config")).arg("--sharedir"))
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .map_err(|e| {
            format!("cannot ask pg_config where PostgreSQL's files are: {e}; {SETUP_HINT}")
        })?;
    let control = share.join("extension/vector.control");
    if !control.is_file() {
        return Err(format!(
            "the pgvector extension is not installed ({} is missing); {SETUP_HINT}",
            control.display()
        ));
    }
    Ok(bin_dir)
}

fn debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn path_bin_dir() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .find(|dir| dir.join("initdb").is_file())
        .map(|dir| std::fs::canonicalize(dir.join("initdb")).unwrap_or(dir.join("initdb")))
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
}

/// Whether PostgreSQL-backed tests may run. `Ok(None)` means: skip (the notice is printed);
/// `Err` means PostgreSQL is missing and skipping was not asked for.
fn installation_or_skip() -> Result<Option<PathBuf>, String> {
    match find_installation() {
        Ok(bin_dir) => Ok(Some(bin_dir)),
        Err(problem) if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") => {
            eprintln!("NOTICE: skipping a PostgreSQL-backed test ({SKIP_ENV}=1): {problem}");
            Ok(None)
        }
        Err(problem) => Err(problem),
    }
}

/// A running throwaway cluster; stopped and deleted on drop.
pub struct PgTestServer {
    bin_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    root: tempfile::TempDir,
    watchdog: Option<(Child, ChildStdin)>,
}

/// Options for [`PgTestServer`]: extra `postgresql.conf` settings.
#[derive(Debug, Default, Clone)]
pub struct PgTestServerBuilder {
    settings: Vec<(String, String)>,
}

impl PgTestServerBuilder {
    /// Adds one `postgresql.conf` setting, e.g. `("maintenance_work_mem", "1GB")`.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }

    /// Starts the cluster; an `Err` says what failed, with the server log when it has one.
    pub fn start(self) -> Result<PgTestServer, String> {
        let bin_dir = find_installation()?;
        PgTestServer::start_in(bin_dir, &self.settings)
    }
}

impl PgTestServer {
    /// Starts a cluster with default settings; see [`PgTestServerBuilder::start`].
    pub fn start() -> Result<PgTestServer, String> {
        PgTestServerBuilder::default().start()
    }

    /// A builder, for extra settings.
    pub fn builder() -> PgTestServerBuilder {
        PgTestServerBuilder::default()
    }

    /// Like [`PgTestServer::start`], but `Ok(None)` when PostgreSQL is missing and
    /// `LLAMA_STACK_SKIP_PG_TESTS=1` asks to skip.
    pub fn start_or_skip(builder: PgTestServerBuilder) -> Result<Option<PgTestServer>, String> {
        match installation_or_skip()? {
            Some(bin_dir) => PgTestServer::start_in(bin_dir, &builder.settings).map(Some),
            None => Ok(None),
        }
    }

    fn start_in(bin_dir: PathBuf, settings: &[(String, String)]) -> Result<PgTestServer, String> {
        let root = tempfile::Builder::new()
            .prefix("llama-stack-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a folder for the cluster: {e}"))?;
        let run_as = running_as_root().then(unprivileged_user);
        let data = root.path().join("data");
        let password_file = root.path().join("password");
        std::fs::write(&password_file, PASSWORD)
            .map_err(|e| format!("cannot write {}: {e}", password_file.display()))?;
        if let Some(user) = &run_as {
            run(Command::new("chown")
                .arg("-R")
                .arg(format!("{user}:"))
                .arg(root.path()))?;
        }
        let mut server = PgTestServer {
            bin_dir,
            port: 0,
            run_as,
            root,
            watchdog: None,
        };
        server.initdb(&data, &password_file, settings)?;
        server.start_postmaster(&data)?;
        server.watchdog = Some(server.spawn_watchdog(&data)?);
        Ok(server)
    }

    fn initdb(
        &self,
        data: &Path,
        password_file: &Path,
        settings: &[(String, String)],
    ) -> Result<(), String> {
        let mut initdb = self.command("initdb");
        initdb
            .arg("-D")
            .arg(data)
            .args(["-U", USER, "-A", "scram-sha-256", "--auth-local=trust"])
            .args(["-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", password_file.display()));
        run(&mut initdb).map_err(|e| format!("initdb failed: {e}"))?;
        // Throwaway data: durability settings off, for speed.
        let mut conf = format!(
            "listen_addresses = '{HOST}'\nunix_socket_directories = '{}'\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\nmax_connections = 200\n",
            self.root.path().display()
        );
        for (name, value) in settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| format!("cannot write postgresql.conf: {e}"))
    }

    /// Starts the server on a free port, trying another when the chosen one was taken meanwhile.
    fn start_postmaster(&mut self, data: &Path) -> Result<(), String> {
        let log = self.root.path().join("postgres.log");
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut pg_ctl = self.command("pg_ctl");
            pg_ctl
                .arg("-D")
                .arg(data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(format!("-p {port}"))
                .arg("start");
            match run(&mut pg_ctl) {
                Ok(_) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    last_error = format!("pg_ctl start failed: {e}\nserver log:\n{log_text}");
                    if !log_text.contains("could not bind") && !log_text.contains("in use") {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// A shell that stops the server and deletes its folder once its stdin reaches end of
    /// file, which happens when this process drops the pipe or exits in any way.
    fn spawn_watchdog(&self, data: &Path) -> Result<(Child, ChildStdin), String> {
        let mut stop: Vec<String> = Vec::new();
        if let Some(user) = &self.run_as {
            stop.extend(["runuser".into(), "-u".into(), user.clone(), "--".into()]);
        }
        stop.push(self.bin_dir.join("pg_ctl").display().to_string());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(
                r#"trap '' INT HUP TERM; read _; "$@" -D "$PG_TEST_DATA" -m immediate stop >/dev/null 2>&1; rm -rf "$PG_TEST_ROOT""#,
            )
            .arg("pg-test-watchdog")
            .args(&stop)
            .env("PG_TEST_DATA", data)
            .env("PG_TEST_ROOT", self.root.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the cluster's watchdog: {e}"))?;
        let stdin = child.stdin.take().expect("stdin was piped");
        Ok((child, stdin))
    }

    /// `bin_dir/program`, run as the unprivileged user when this process is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    /// The port on 127.0.0.1 the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PostgreSQL's bin folder this cluster runs from.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Runs SQL through `psql` against `database`, returning its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = run(Command::new(self.bin_dir.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-U",
                USER,
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .env("PGPASSWORD", PASSWORD))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates a new database named after `prefix` (made unique) with the `vector` extension.
    pub fn create_database(&self, prefix: &str) -> Result<PgTestDatabase, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let clean: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("{clean}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        self.psql(&name, "CREATE EXTENSION IF NOT EXISTS vector")?;
        Ok(self.database(&name))
    }

    /// Connection details of an existing database of this cluster.
    pub fn database(&self, name: &str) -> PgTestDatabase {
        PgTestDatabase {
            host: HOST.to_string(),
            port: self.port,
            user: USER.to_string(),
            password: PASSWORD.to_string(),
            database: name.to_string(),
        }
    }

    /// The last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.root.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for PgTestServer {
    fn drop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl std::fmt::Debug for PgTestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTestServer")
            .field("port", &self.port)
            .field("root", &self.root.path())
            .field("run_as", &self.run_as)
            .finish()
    }
}

/// How to reach one database of a throwaway cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTestDatabase {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl PgTestDatabase {
    /// `postgres://user:password@host:port/database`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            self.user, self.password, self.host, self.port, self.database
        )
    }
}

/// This process's shared cluster, started on first use; `None` when skipping (see the crate
/// docs).
///
/// # Panics
/// When PostgreSQL or pgvector is missing and skipping was not asked for, or the cluster
/// cannot start: a PostgreSQL-backed test must fail then, not pass.
pub fn shared() -> Option<&'static PgTestServer> {
    static SHARED: OnceLock<Result<Option<PgTestServer>, String>> = OnceLock::new();
    match SHARED.get_or_init(|| PgTestServer::start_or_skip(PgTestServer::builder())) {
        Ok(server) => server.as_ref(),
        Err(problem) => panic!("cannot start a throwaway PostgreSQL: {problem}"),
    }
}

/// A fresh database with pgvector on this process's shared cluster; `None` when skipping.
///
/// # Panics
/// As [`shared`], and when the database cannot be created.
pub fn database(prefix: &str) -> Option<PgTestDatabase> {
    let server = shared()?;
    match server.create_database(prefix) {
        Ok(db) => Some(db),
        Err(problem) => panic!(
            "cannot create a test database: {problem}\nserver log:\n{}",
            server.log_tail()
        ),
    }
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The account the cluster runs as when the tests run as root.
fn unprivileged_user() -> String {
    let exists = |user: &str| {
        Command::new("id")
            .arg("-u")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if exists("postgres") {
        "postgres"
    } else {
        "nobody"
    }
    .to_string()
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind((HOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Runs a command to completion; `Err` carries its exit status and output.
fn run(cmd: &mut Command) -> Result<Output, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{:?} {:?} exited with {}: {}{}",
            cmd.get_program(),
            cmd.get_args().collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_serves_databases_with_pgvector_and_stops_on_drop() {
        let Some(server) = PgTestServer::start_or_skip(PgTestServer::builder()).unwrap() else {
            return;
        };
        let db = server.create_database("Helper Test").unwrap();
        assert!(db.database.starts_with("helper_test_"), "{db:?}");
        assert_eq!(
            server
                .psql(&db.database, "SELECT '[1,2]'::vector <-> '[4,6]'::vector")
                .unwrap(),
            "5"
        );
        let port = server.port();
        drop(server);
        assert!(
            std::net::TcpStream::connect((HOST, port)).is_err(),
            "the cluster still listens after drop"
        );
    }

    #[test]
    fn url_has_every_part() {
        let db = PgTestDatabase {
            host: "h".into(),
            port: 5,
            user: "u".into(),
            password: "p".into(),
            database: "d".into(),
        };
        assert_eq!(db.url(), "postgres://u:p@h:5/d");
    }
}
