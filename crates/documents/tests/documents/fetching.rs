//! `load_uri` against local servers: the SSRF policy, size cap, time-out and redirects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use llama_stack_documents::{DocumentError, FetchPolicy, load_uri};

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn allow_private() -> FetchPolicy {
    FetchPolicy {
        allow_private_addresses: true,
        ..FetchPolicy::default()
    }
}

fn with_type(content_type: &'static str, body: impl Into<Body>) -> Response {
    Response::builder()
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[tokio::test]
async fn private_addresses_are_refused_without_connecting() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = serve(Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "secret" }
    }))
    .await;
    let port = addr.port();

    let url = format!("http://127.0.0.1:{port}/doc");
    let err = load_uri(&url, &FetchPolicy::default()).await.unwrap_err();
    assert!(matches!(err, DocumentError::Forbidden(_)), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to fetch {url}: 127.0.0.1 is a loopback address; set \
             allow_private_addresses: true in the rag-runtime provider config to allow it"
        )
    );

    for (uri, why) in [
        (format!("http://localhost:{port}/"), "localhost resolves to"),
        (format!("http://[::1]:{port}/"), "::1 is a loopback address"),
        (
            format!("http://127.1:{port}/"),
            "127.0.0.1 is a loopback address",
        ),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/"),
            "is a loopback address",
        ),
        (format!("http://0.0.0.0:{port}/"), "an unspecified address"),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "a link-local address",
        ),
        ("http://10.0.0.1/".into(), "a private network address"),
        ("http://100.64.1.1/".into(), "carrier-grade NAT"),
        ("https://[fd00::1]/".into(), "a unique local IPv6 address"),
        ("http://[fe80::1]/".into(), "a link-local address"),
        ("http://224.0.0.1/".into(), "a multicast address"),
    ] {
        let err = load_uri(&uri, &FetchPolicy::default()).await.unwrap_err();
        assert!(matches!(err, DocumentError::Forbidden(_)), "{uri}: {err}");
        assert!(err.to_string().contains(why), "{uri}: {err}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "a refused fetch connected");

    let loaded = load_uri(&url, &allow_private()).await.unwrap();
    assert_eq!(loaded.bytes, b"secret");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn mime_type_and_charset_come_from_the_response() {
    let addr = serve(
        Router::new()
            .route(
                "/md",
                get(|| async { with_type("text/markdown; charset=utf-8", "# Title") }),
            )
            .route(
                "/latin1",
                get(|| async { with_type("text/plain; charset=ISO-8859-1", &b"caf\xe9"[..]) }),
            ),
    )
    .await;
    let loaded = load_uri(&format!("http://{addr}/md"), &allow_private())
        .await
        .unwrap();
    assert_eq!(loaded.mime_type.as_deref(), Some("text/markdown"));
    assert_eq!(loaded.bytes, b"# Title");
    let loaded = load_uri(&format!("http://{addr}/latin1"), &allow_private())
        .await
        .unwrap();
    assert_eq!(String::from_utf8(loaded.bytes).unwrap(), "café");
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let addr = serve(
        Router::new()
            .route("/sized", get(|| async { vec![b'a'; 4096] }))
            .route(
                "/streamed",
                get(|| async {
                    // No Content-Length: the cap must hold while streaming.
                    let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 1024]));
                    Body::from_stream(futures::stream::iter(chunks))
                }),
            ),
    )
    .await;
    let policy = FetchPolicy {
        max_bytes: 1000,
        ..allow_private()
    };
    for path in ["sized", "streamed"] {
        let err = load_uri(&format!("http://{addr}/{path}"), &policy)
            .await
            .unwrap_err();
        assert!(matches!(err, DocumentError::TooLarge(_)), "{path}: {err}");
        assert!(err.to_string().contains("1000 bytes"), "{err}");
    }
    let policy = FetchPolicy {
        max_bytes: 4096,
        ..allow_private()
    };
    let loaded = load_uri(&format!("http://{addr}/sized"), &policy)
        .await
        .unwrap();
    assert_eq!(loaded.bytes.len(), 4096);
}

#[tokio::test]
async fn slow_servers_time_out() {
    let addr = serve(Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    ))
    .await;
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..allow_private()
    };
    let started = std::time::Instant::now();
    let err = load_uri(&format!("http://{addr}/slow"), &policy)
        .await
        .unwrap_err();
    assert!(matches!(err, DocumentError::Fetch(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn redirects_are_followed_up_to_five_times() {
    fn redirect(to: &'static str) -> Response {
        Response::builder()
            .status(302)
            .header("location", to)
            .body(Body::empty())
            .unwrap()
    }
    let addr = serve(
        Router::new()
            .route("/a", get(|| async { redirect("/b") }))
            .route("/b", get(|| async { redirect("c") }))
            .route("/c", get(|| async { "arrived" }))
            .route("/loop", get(|| async { redirect("/loop") }))
            .route(
                "/missing",
                get(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }),
            )
            .route("/ftp", get(|| async { redirect("ftp://example.com/x") })),
    )
    .await;
    let loaded = load_uri(&format!("http://{addr}/a"), &allow_private())
        .await
        .unwrap();
    assert_eq!(loaded.bytes, b"arrived");

    let err = load_uri(&format!("http://{addr}/loop"), &allow_private())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");

    let err = load_uri(&format!("http://{addr}/missing"), &allow_private())
        .await
        .unwrap_err();
    assert!(matches!(err, DocumentError::Fetch(_)), "{err}");
    assert!(err.to_string().contains("HTTP 404"), "{err}");

    let err = load_uri(&format!("http://{addr}/ftp"), &allow_private())
        .await
        .unwrap_err();
    assert!(matches!(err, DocumentError::Invalid(_)), "{err}");
}

#[tokio::test]
async fn data_urls_need_no_network() {
    let loaded = load_uri("data:text/plain;base64,aGVsbG8=", &FetchPolicy::default())
        .await
        .unwrap();
    assert_eq!(loaded.bytes, b"hello");
    assert_eq!(loaded.mime_type.as_deref(), Some("text/plain"));
}
