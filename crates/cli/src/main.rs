//! `llama-stack`: serve a distribution, validate run.yaml files, list providers, get models
//! (download from the Hugging Face Hub, list local ones, write test models), and run recipes
//! such as document QA in-process.

mod model_cmd;
mod model_hub;
mod otel;
mod recipe;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use tower::Layer;

#[derive(Parser)]
#[command(
    name = "llama-stack",
    version,
    about = "A Llama Stack server: inference, safety, memory and agents over HTTP"
)]
struct Cli {
    /// Log output format (or LLAMA_STACK_LOG_FORMAT). The level comes from RUST_LOG (default
    /// `info`; warnings only for recipes). Lines logged for a request carry its `request_id`
    /// and `trace_id` span fields.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "LLAMA_STACK_LOG_FORMAT",
        default_value_t = LogFormat::Pretty
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server from a run.yaml file or a distribution name (`distributions/<name>/run.yaml`).
    Run {
        /// Path to a run.yaml, or the name of a shipped distribution such as `local`.
        config: String,
        /// Port to listen on; overrides LLAMA_STACK_PORT and server.port.
        #[arg(long)]
        port: Option<u16>,
        /// gRPC port (0 turns gRPC off); overrides LLAMA_STACK_GRPC_PORT and server.grpc_port.
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Set an environment variable for ${env.X} substitution, e.g. --env INFERENCE_MODEL=x.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Seconds in-flight requests (streams included) may run after SIGTERM or SIGINT before
        /// the process exits anyway; overrides LLAMA_STACK_SHUTDOWN_TIMEOUT. Default 30.
        #[arg(long, value_name = "SECONDS")]
        shutdown_timeout: Option<u64>,
    },
    /// Check a run.yaml and print every problem, or `ok`.
    Validate {
        /// Path to a run.yaml, or a distribution name.
        config: String,
        /// Set an environment variable for ${env.X} substitution.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },
    /// List every provider type this binary can build, with a sample config.
    Providers,
    /// Model utilities.
    Model {
        #[command(subcommand)]
        command: model_cmd::ModelCommand,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
    /// Print the SHA-256 of an API key read from standard input, for the `api_keys`
    /// provider's `sha256` field (the key itself need not be written in run.yaml).
    HashKey,
    /// Ready-made applications run on a distribution in-process, without a server.
    Recipe {
        #[command(subcommand)]
        command: recipe::RecipeCommand,
    },
}

fn parse_env(pairs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--env expects KEY=VALUE, got `{pair}`"),
        })
        .collect()
}

/// Installs the log subscriber, with the OTLP exporting layer when the environment configures
/// one; the returned provider is flushed at exit.
fn init_logging(
    format: LogFormat,
    default_filter: &str,
) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colour only on a terminal: log files and collectors get plain text.
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = match format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Pretty => fmt.boxed(),
    };
    let (otel, provider) = otel::init().unzip();
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    provider
}

fn main() -> ExitCode {
    pin_thread_count();
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Recipe { .. } => recipe::DEFAULT_LOG_FILTER,
        // rmcp's transport worker logs every failed MCP connection as an error; the MCP
        // provider reports the same failure, with the endpoint, as the call's error.
        _ => "info,rmcp::transport::worker=off",
    };
    let exporter = init_logging(cli.log_format, default_filter);
    let result = match cli.command {
        Command::Run {
            config,
            port,
            grpc_port,
            env,
            shutdown_timeout,
        } => run(&config, port, grpc_port, &env, shutdown_timeout),
        Command::Validate { config, env } => validate(&config, &env),
        Command::Providers => {
            providers();
            Ok(ExitCode::SUCCESS)
        }
        Command::Model { command } => model_cmd::execute(command),
        Command::Openapi => {
            println!("{}", llama_stack_http::openapi_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Recipe { command } => recipe::execute(command),
        Command::HashKey => {
            let mut key = String::new();
            if let Err(err) = std::io::stdin().read_line(&mut key) {
                eprintln!("cannot read the key from standard input: {err}");
                return ExitCode::FAILURE;
            }
            println!(
                "{}",
                llama_stack_auth::hash_key(key.trim_end_matches(['\r', '\n']))
            );
            Ok(ExitCode::SUCCESS)
        }
    };
    if let Some(provider) = &exporter {
        otel::shutdown(provider);
    }
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Fixes the number of compute threads for the life of the process. Without
/// `RAYON_NUM_THREADS`, candle works the count out again on every matrix product by reading
/// `/proc/cpuinfo`, tens of microseconds per attention product of every generated token.
fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        // SAFETY: the first thing main does; no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
}

fn validate(config: &str, env: &[String]) -> anyhow::Result<ExitCode> {
    let env = parse_env(env)?;
    let path = llama_stack_distribution::resolve_run_config(config).map_err(anyhow::Error::msg)?;
    match llama_stack_distribution::load(&path, &env) {
        Ok(loaded) => {
            for notice in &loaded.not_implemented {
                println!("note: {notice}");
            }
            println!("ok");
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            println!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn providers() {
    let registry = llama_stack_distribution::builtin_registry();
    for spec in registry.specs() {
        println!("{}  (api: {})", spec.provider_type, spec.api);
        println!("  {}", spec.description);
        if !spec.aliases.is_empty() {
            println!("  aliases: {}", spec.aliases.join(", "));
        }
        println!("  sample config:");
        for line in spec.sample_config.lines() {
            println!("    {line}");
        }
        println!();
    }
}

fn run(
    config: &str,
    port: Option<u16>,
    grpc_port: Option<u16>,
    env: &[String],
    shutdown_timeout: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let env = parse_env(env)?;
    let shutdown_timeout = shutdown_timeout_setting(shutdown_timeout)?;
    let path = llama_stack_distribution::resolve_run_config(config).map_err(anyhow::Error::msg)?;
    let loaded = match llama_stack_distribution::load(&path, &env) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{} has problems:\n{errors}", path.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(serve(loaded, path, port, grpc_port, shutdown_timeout));
    // Requests cut off by the shutdown deadline may have blocking work running (an embedding
    // batch, say); the process does not wait for it.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The default of `--shutdown-timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT_S: u64 = 30;

/// `--shutdown-timeout`, else `LLAMA_STACK_SHUTDOWN_TIMEOUT`, else the default.
fn shutdown_timeout_setting(flag: Option<u64>) -> anyhow::Result<Duration> {
    let seconds = match flag {
        Some(seconds) => seconds,
        None => match std::env::var("LLAMA_STACK_SHUTDOWN_TIMEOUT") {
            Ok(s) if !s.is_empty() => s.parse().with_context(|| {
                format!("LLAMA_STACK_SHUTDOWN_TIMEOUT must be a number of seconds, got `{s}`")
            })?,
            _ => DEFAULT_SHUTDOWN_TIMEOUT_S,
        },
    };
    Ok(Duration::from_secs(seconds))
}

async fn serve(
    loaded: llama_stack_distribution::LoadedConfig,
    path: PathBuf,
    port_override: Option<u16>,
    grpc_port_override: Option<u16>,
    shutdown_timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    llama_stack_core::metrics::start();
    // Distributions such as `starter` switch providers on by environment variable; say what
    // was left off, so an empty server is not a mystery.
    for entry in &loaded.disabled {
        tracing::info!(entry = %entry, "Disabled by the environment");
    }
    let providers_disabled = loaded.disabled.iter().any(|d| d.starts_with("providers."));
    if loaded.providers.is_empty() && providers_disabled {
        tracing::warn!(
            config = %path.display(),
            "No provider is enabled: every provider entry is switched off by an unset environment variable; see the distribution's README for the variables that enable them"
        );
    }
    let built = llama_stack_distribution::build(loaded)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("building the stack from {}", path.display()))?;
    for notice in &built.not_implemented {
        tracing::warn!(notice = %notice, "Not implemented yet; ignored");
    }
    let port = port_setting(port_override, "LLAMA_STACK_PORT", built.server.port)?;
    let grpc_port = port_setting(
        grpc_port_override,
        "LLAMA_STACK_GRPC_PORT",
        built.server.grpc_port,
    )?;
    let host = built
        .server
        .host
        .clone()
        .unwrap_or_else(|| "0.0.0.0".into());
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .with_context(|| format!("server.host `{host}` is not an IP address"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Both listeners are bound before either serves, so a taken gRPC port fails the start
    // rather than leaving a server with half its API.
    let grpc_listener = if grpc_port == 0 {
        None
    } else {
        let grpc_addr = SocketAddr::new(addr.ip(), grpc_port);
        Some(
            tokio::net::TcpListener::bind(grpc_addr)
                .await
                .with_context(|| {
                    format!("cannot listen for gRPC on {grpc_addr} (set server.grpc_port, --grpc-port or LLAMA_STACK_GRPC_PORT; 0 turns gRPC off)")
                })?,
        )
    };
    let mut app = llama_stack_http::router_with(built.stack.clone(), &built.server.limits);
    if let Some(quota) = &built.quota {
        app = llama_stack_http::with_quota(app, quota.clone());
    }
    if let Some(auth) = &built.auth {
        app = llama_stack_http::with_auth(app, auth.clone());
    }
    if built.server.playground {
        app = llama_stack_http::with_playground(app);
    }
    // Outermost, so that quota and auth refusals are counted too.
    let app = llama_stack_http::with_metrics(app);
    // Outside metrics too: every line logged for a request, refusals included, names it.
    let app = llama_stack_http::with_trace_context(app);
    let app = tower::util::MapRequestLayer::new(llama_stack_http::normalize_path).layer(app);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let tls = built.server.tls.clone();
    // Configs are read before anything is served, so a bad file stops the start.
    let (http_tls, grpc_tls) = match &tls {
        Some(files) => (
            Some(tls::server_config(files, &[b"h2", b"http/1.1"])?),
            Some(tls::server_config(files, &[b"h2"])?),
        ),
        None => (None, None),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let grpc = grpc_listener.map(|grpc_listener| {
        tracing::info!(
            address = %grpc_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            tls = grpc_tls.is_some(),
            "Serving gRPC"
        );
        match grpc_tls {
            Some(config) => {
                let ready = tls::accept(grpc_listener, config);
                let incoming = tokio_stream::wrappers::ReceiverStream::new(ready)
                    .map(|(stream, _)| Ok::<_, std::io::Error>(tls::GrpcTlsStream(stream)));
                tokio::spawn(llama_stack_grpc::serve_incoming(
                    incoming,
                    built.stack.clone(),
                    built.server.limits.max_body_bytes,
                    built.auth.clone(),
                    built.quota.clone(),
                    stopped(),
                ))
            }
            None => {
                let incoming = tonic::transport::server::TcpIncoming::from(grpc_listener)
                    .with_nodelay(Some(true));
                tokio::spawn(llama_stack_grpc::serve_incoming(
                    incoming,
                    built.stack.clone(),
                    built.server.limits.max_body_bytes,
                    built.auth.clone(),
                    built.quota.clone(),
                    stopped(),
                ))
            }
        }
    });
    let local = listener
        .local_addr()
        .context("the HTTP listener's address")?;
    tracing::info!(
        address = %local,
        scheme,
        mutual_tls = tls.as_ref().is_some_and(|t| t.cafile.is_some()),
        distribution = %built.stack.info.image_name,
        startup_ms = started.elapsed().as_millis() as u64,
        "Serving Llama Stack"
    );
    if built.server.playground {
        // The address a person can open: a wildcard bind is reachable as localhost.
        let address = if local.ip().is_unspecified() {
            format!("localhost:{}", local.port())
        } else {
            local.to_string()
        };
        tracing::info!(url = %format!("{scheme}://{address}/playground"), "Playground");
    }
    // The peer's address reaches handlers: quotas count unauthenticated clients by it.
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        llama_stack_http::PeerAddr,
    >(app);
    let http = async {
        match http_tls {
            Some(config) => {
                let listener = tls::TlsListener {
                    ready: tls::accept(listener, config),
                    local,
                };
                // Through TapIo, whose connect info is the listener's own address type.
                let listener = axum::serve::ListenerExt::tap_io(listener, |_| {});
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped())
                    .await
            }
            None => {
                let listener =
                    axum::serve::ListenerExt::tap_io(tls::PlainListener(listener), |_| {});
                axum::serve(listener, service)
                    .with_graceful_shutdown(stopped())
                    .await
            }
        }
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!(
            timeout_s = shutdown_timeout.as_secs(),
            in_flight = llama_stack_core::metrics::http_in_flight(),
            "Shutdown requested; /v1/ready answers 503 and gRPC health NOT_SERVING, in-flight requests may finish"
        );
        llama_stack_http::set_draining(true);
        let _ = stop_tx.send(true);
    });
    let served = async {
        http.await.context("serving HTTP")?;
        if let Some(grpc) = grpc {
            grpc.await
                .context("the gRPC server task failed")?
                .context("serving gRPC")?;
        }
        anyhow::Ok(())
    };
    // A stream can outlive any reasonable wait (a long generation, a client that reads
    // slowly): past the deadline the process exits with them cut off.
    let deadline = {
        let stopping = stopped();
        async move {
            stopping.await;
            tokio::time::sleep(shutdown_timeout).await;
        }
    };
    tokio::select! {
        served = served => {
            served?;
            tracing::info!("Shut down cleanly");
        }
        () = deadline => {
            tracing::warn!(
                timeout_s = shutdown_timeout.as_secs(),
                in_flight = llama_stack_core::metrics::http_in_flight(),
                "In-flight requests did not finish within the shutdown timeout; exiting without them"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A port from the command line, else the environment variable, else run.yaml.
fn port_setting(flag: Option<u16>, variable: &str, configured: u16) -> anyhow::Result<u16> {
    if let Some(port) = flag {
        return Ok(port);
    }
    match std::env::var(variable) {
        Ok(p) if !p.is_empty() => p
            .parse()
            .with_context(|| format!("{variable} must be a port number, got `{p}`")),
        _ => Ok(configured),
    }
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then have the shutdown timeout to finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
