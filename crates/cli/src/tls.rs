//! TLS for both listeners (`server.tls_certfile`, `server.tls_keyfile`, and `server.tls_cafile`
//! for mutual TLS), with rustls. Handshakes run off the accept loop, so a client that stalls
//! in its handshake never holds up the others.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use llama_stack_http::PeerAddr;

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

pub use llama_stack_distribution::TlsSettings as TlsFiles;

/// A rustls server config from PEM files; `alpn` lists the protocols the listener speaks.
pub fn server_config(
    files: &TlsFiles,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(Path::new(&files.certfile))
            .and_then(|certs| certs.collect())
            .with_context(|| {
                format!(
                    "server.tls_certfile: cannot read PEM certificates from {}",
                    files.certfile
                )
            })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls_certfile: {} holds no PEM certificate",
        files.certfile
    );
    let key = PrivateKeyDer::from_pem_file(Path::new(&files.keyfile)).with_context(|| {
        format!(
            "server.tls_keyfile: cannot read a PEM private key from {}",
            files.keyfile
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.cafile {
        None => builder.with_no_client_auth(),
        Some(cafile) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(Path::new(cafile)).with_context(|| {
                format!("server.tls_cafile: cannot read PEM certificates from {cafile}")
            })? {
                let cert =
                    cert.with_context(|| format!("server.tls_cafile: a certificate in {cafile}"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("server.tls_cafile: a certificate in {cafile}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("server.tls_cafile: {cafile}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "server.tls_keyfile: {} does not match the certificate in {}",
            files.keyfile, files.certfile
        )
    })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and hands on those that finish their handshake.
pub fn accept(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(READY_QUEUE);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %err, "Accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if tx.is_closed() {
                return;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(peer = %peer, error = %err, "TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// The HTTP listener over TLS, for `axum::serve`.
pub struct TlsListener {
    pub ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some((stream, peer)) => (stream, PeerAddr(peer)),
            // The accept loop only ends with the listener; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(PeerAddr(self.local))
    }
}

/// The plain HTTP listener: TCP with `TCP_NODELAY` (streams are many small writes, which
/// would otherwise wait on delayed ACKs), addresses as [`PeerAddr`].
pub struct PlainListener(pub TcpListener);

impl axum::serve::Listener for PlainListener {
    type Io = TcpStream;
    type Addr = PeerAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.0).await;
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "Could not set TCP_NODELAY");
        }
        (tcp, PeerAddr(peer))
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr().map(PeerAddr)
    }
}

/// A TLS connection as tonic takes it.
pub struct GrpcTlsStream(pub TlsStream<TcpStream>);

impl tonic::transport::server::Connected for GrpcTlsStream {
    // The TCP addresses, as plain gRPC connections give them: quotas count by address.
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for GrpcTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
