//! TLS and mutual TLS on both listeners of the real binary, with certificates made in the test
//! by rcgen: HTTPS and gRPC over TLS answer a client that trusts the test CA, plain HTTP and
//! untrusted clients are refused, and with `tls_cafile` a client without a certificate signed
//! by that CA gets no answer.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_llama-stack");
const START_TIMEOUT: Duration = Duration::from_secs(120);

struct Pki {
    ca_der: CertificateDer<'static>,
    client_cert: CertificateDer<'static>,
    client_key: Vec<u8>,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, written as PEM files.
fn make_pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["client".into()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server_cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        ca_der: ca_cert.der().clone(),
        client_cert: client_cert.der().clone(),
        client_key: client_key.serialize_der(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server on two free ports, again on two others if one was taken between
/// finding it free and the server binding it (tests run side by side).
fn start(dir: &Path, mutual: bool) -> (Server, u16, u16) {
    for _ in 0..5 {
        let (mut server, port, grpc_port) = start_on(dir, mutual, free_port(), free_port());
        let deadline = Instant::now() + Duration::from_secs(2);
        let exited = loop {
            match server.0.try_wait() {
                Ok(Some(_)) => break true,
                _ if Instant::now() >= deadline => break false,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if !(exited && log.contains("Address already in use")) {
            return (server, port, grpc_port);
        }
    }
    panic!("no free pair of ports in five tries")
}

fn start_on(dir: &Path, mutual: bool, port: u16, grpc_port: u16) -> (Server, u16, u16) {
    let d = dir.display();
    let cafile = if mutual {
        format!("\n  tls_cafile: {d}/ca.pem")
    } else {
        String::new()
    };
    let yaml = format!(
        "version: 2
image_name: tls-test
server:
  host: 127.0.0.1
  port: {port}
  grpc_port: {grpc_port}
  tls_certfile: {d}/server.pem
  tls_keyfile: {d}/server.key{cafile}
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
    let path = dir.join(if mutual { "mtls.yaml" } else { "tls.yaml" });
    std::fs::write(&path, yaml).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Command::new(BIN)
        .arg("run")
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    (Server(child), port, grpc_port)
}

fn client_config(pki: &Pki, with_cert: bool, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = if with_cert {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.client_key.clone()));
        builder
            .with_client_auth_cert(vec![pki.client_cert.clone()], key)
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

fn https(pki: &Pki, with_cert: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(pki, with_cert, b"http/1.1"))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, port: u16, dir: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let reply = client
            .get(format!("https://127.0.0.1:{port}/v1/health"))
            .send()
            .await;
        if let Ok(reply) = reply
            && reply.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the TLS server did not answer; log:\n{}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A gRPC health check over TLS, through a tonic channel on a rustls connection.
async fn grpc_health(pki: &Pki, with_cert: bool, port: u16) -> Result<i32, String> {
    let config = Arc::new(client_config(pki, with_cert, b"h2"));
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let config = config.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1")
        .connect_with_connector(connector)
        .await
        .map_err(|e| e.to_string())?;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply.into_inner().status)
}

#[tokio::test]
async fn https_and_grpc_over_tls_answer_clients_that_trust_the_ca() {
    // For the plain client below; the others bring their own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (_server, port, grpc_port) = start(dir.path(), false);
    let client = https(&pki, false);
    wait_healthy(&client, port, dir.path()).await;
    let version = client
        .get(format!("https://127.0.0.1:{port}/v1/version"))
        .send()
        .await
        .unwrap();
    assert!(version.status().is_success());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/health"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    // A client that does not trust the test CA refuses the server.
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    assert!(
        stranger
            .get(format!("https://127.0.0.1:{port}/v1/health"))
            .send()
            .await
            .is_err()
    );
    // 1 = SERVING.
    assert_eq!(grpc_health(&pki, false, grpc_port).await, Ok(1));
}

#[tokio::test]
async fn mutual_tls_answers_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (_server, port, grpc_port) = start(dir.path(), true);
    let client = https(&pki, true);
    wait_healthy(&client, port, dir.path()).await;
    let anonymous = https(&pki, false)
        .get(format!("https://127.0.0.1:{port}/v1/health"))
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was answered"
    );
    assert_eq!(grpc_health(&pki, true, grpc_port).await, Ok(1));
    assert!(grpc_health(&pki, false, grpc_port).await.is_err());
}
