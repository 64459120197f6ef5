//! Loading a document URI: `data:` URLs inline, `http(s)` through reqwest under a
//! [`FetchPolicy`].
//!
//! Server-side request forgery is the risk here, so unless the policy allows private addresses
//! every hop is checked before it is made: the host is resolved here, every resolved address
//! must be public, and the connection is pinned to those addresses (so a DNS answer that
//! changes between the check and the connect cannot redirect it). Redirects are followed by
//! hand, each one checked the same way. Proxies are not used, since a proxy would resolve the
//! host itself.

use std::net::{IpAddr, SocketAddr};
use std::sync::Once;

use futures::StreamExt;
use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, LOCATION};

use crate::addresses::{AddressClass, classify_ip};
use crate::data_url::{parse_data_url, shorten, to_utf8};
use crate::{DocumentError, FetchPolicy, Loaded};

/// Redirects followed before giving up, as browsers and upstream's httpx client roughly do.
const MAX_REDIRECTS: usize = 5;

/// Loads a `data:` or `http(s)` URI. Other schemes are [`DocumentError::Invalid`]; addresses
/// the policy refuses are [`DocumentError::Forbidden`]; bodies over `max_bytes` are
/// [`DocumentError::TooLarge`]; network failures, HTTP errors and time-outs are
/// [`DocumentError::Fetch`].
pub async fn load_uri(uri: &str, policy: &FetchPolicy) -> Result<Loaded, DocumentError> {
    let uri = uri.trim();
    if uri
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
    {
        return parse_data_url(uri);
    }
    let url = Url::parse(uri).map_err(|e| {
        DocumentError::Invalid(format!(
            "`{}` is not a URL ({e}); give an http(s) URL, a data: URL or the text itself",
            shorten(uri)
        ))
    })?;
    check_scheme(&url)?;
    fetch_within_timeout(url, policy, &[]).await
}

/// `trusted` lists socket addresses treated as public whatever their class; only tests pass
/// any, to stand a local server in for a public one.
async fn fetch_within_timeout(
    url: Url,
    policy: &FetchPolicy,
    trusted: &[SocketAddr],
) -> Result<Loaded, DocumentError> {
    match tokio::time::timeout(policy.timeout, fetch(url.clone(), policy, trusted)).await {
        Ok(result) => result,
        Err(_) => Err(DocumentError::Fetch(format!(
            "fetching {} timed out after {} s ({} in {})",
            shorten(url.as_str()),
            policy.timeout.as_secs_f64(),
            policy.settings.timeout,
            policy.settings.place
        ))),
    }
}

fn check_scheme(url: &Url) -> Result<(), DocumentError> {
    match url.scheme() {
        "http" | "https" => Ok(()),
        other => Err(DocumentError::Invalid(format!(
            "cannot load {}: the `{other}` scheme is not supported; use an http(s) URL or a data: URL",
            shorten(url.as_str())
        ))),
    }
}

async fn fetch(
    original: Url,
    policy: &FetchPolicy,
    trusted: &[SocketAddr],
) -> Result<Loaded, DocumentError> {
    let mut url = original.clone();
    let mut came_from: Option<Url> = None;
    for _ in 0..=MAX_REDIRECTS {
        let hint = format!(
            "set {}: true in {} to allow it",
            policy.settings.allow_private_addresses, policy.settings.place
        );
        let pinned = check_destination(&url, policy, trusted, "fetch", &hint)
            .await
            .map_err(|err| match (&came_from, err) {
                (Some(from), DocumentError::Forbidden(why)) => DocumentError::Forbidden(format!(
                    "refusing to follow the redirect from {} to {}: {why}",
                    shorten(from.as_str()),
                    shorten(url.as_str())
                )),
                (_, err) => err,
            })?;
        let client = client_for(&url, &pinned, policy)?;
        let response = client.get(url.clone()).send().await.map_err(|e| {
            DocumentError::Fetch(format!(
                "cannot fetch {}: {}",
                shorten(url.as_str()),
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        if status.is_redirection()
            && let Some(location) = response.headers().get(LOCATION)
        {
            let location = location.to_str().unwrap_or_default();
            let next = url.join(location).map_err(|e| {
                DocumentError::Fetch(format!(
                    "{} redirected to `{}`, which is not a valid URL: {e}",
                    shorten(url.as_str()),
                    shorten(location)
                ))
            })?;
            check_scheme(&next)?;
            came_from = Some(std::mem::replace(&mut url, next));
            continue;
        }
        if !status.is_success() {
            return Err(DocumentError::Fetch(format!(
                "fetching {} failed: the server answered HTTP {status}",
                shorten(url.as_str())
            )));
        }
        return read_body(response, &url, policy).await;
    }
    Err(DocumentError::Fetch(format!(
        "fetching {} took more than {MAX_REDIRECTS} redirects; give the final URL",
        shorten(original.as_str())
    )))
}

/// The addresses another outbound connection (an MCP server's, say) may use for `url` under
/// the same SSRF rule as document fetches: refused ([`DocumentError::Forbidden`], naming `verb`
/// and ending with `hint`) when the host is, or resolves to, a loopback, private, link-local or
/// other non-public address, unless `allow_private`. `Some` is the host with its checked
/// addresses, for the caller to pin its connection to, so a second DNS answer cannot differ.
pub async fn checked_destination(
    url: &Url,
    allow_private: bool,
    verb: &str,
    hint: &str,
) -> Result<Option<(String, Vec<SocketAddr>)>, DocumentError> {
    let policy = FetchPolicy {
        allow_private_addresses: allow_private,
        ..FetchPolicy::default()
    };
    check_destination(url, &policy, &[], verb, hint).await
}

/// The addresses to connect to for `url`, all checked against the policy. `None` means no
/// pinning is needed: the host is an IP literal, or the policy allows every address.
async fn check_destination(
    url: &Url,
    policy: &FetchPolicy,
    trusted: &[SocketAddr],
    verb: &str,
    hint: &str,
) -> Result<Option<(String, Vec<SocketAddr>)>, DocumentError> {
    let refuse = |why: String| {
        DocumentError::Forbidden(format!(
            "refusing to {verb} {}: {why}; {hint}",
            shorten(url.as_str())
        ))
    };
    let host = url
        .host_str()
        .ok_or_else(|| DocumentError::Invalid(format!("{} has no host", shorten(url.as_str()))))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let allowed = |addr: SocketAddr| {
        classify_ip(addr.ip()) == AddressClass::Public || trusted.contains(&addr)
    };
    // The URL parser already normalised IPv4 forms such as `127.1` or `0x7f.1`.
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        let class = classify_ip(ip);
        if !policy.allow_private_addresses && !allowed(SocketAddr::new(ip, port)) {
            return Err(refuse(format!("{ip} is {}", class.description())));
        }
        return Ok(None);
    }
    if policy.allow_private_addresses {
        return Ok(None);
    }
    let domain = host.to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((domain.as_str(), port))
        .await
        .map_err(|e| {
            DocumentError::Fetch(format!(
                "cannot fetch {}: resolving {domain} failed: {e}",
                shorten(url.as_str())
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(DocumentError::Fetch(format!(
            "cannot fetch {}: {domain} resolves to no address",
            shorten(url.as_str())
        )));
    }
    // Every address must pass: the connection may use any of them.
    for addr in &addrs {
        let class = classify_ip(addr.ip());
        if !allowed(*addr) {
            return Err(refuse(format!(
                "{domain} resolves to {}, {}",
                addr.ip(),
                class.description()
            )));
        }
    }
    Ok(Some((domain, addrs)))
}

fn client_for(
    url: &Url,
    pinned: &Option<(String, Vec<SocketAddr>)>,
    policy: &FetchPolicy,
) -> Result<reqwest::Client, DocumentError> {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        // Another crate may have installed a provider already; either is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(policy.timeout)
        .user_agent(concat!("llama-stack-rs/", env!("CARGO_PKG_VERSION")));
    if let Some((domain, addrs)) = pinned {
        builder = builder.resolve_to_addrs(domain, addrs);
    }
    builder.build().map_err(|e| {
        DocumentError::Fetch(format!(
            "cannot fetch {}: building the HTTP client failed: {}",
            shorten(url.as_str()),
            error_chain(&e)
        ))
    })
}

async fn read_body(
    response: reqwest::Response,
    url: &Url,
    policy: &FetchPolicy,
) -> Result<Loaded, DocumentError> {
    let too_large = |size: String| {
        DocumentError::TooLarge(format!(
            "{} is {size}, over the limit of {} bytes for {} ({} in {})",
            shorten(url.as_str()),
            policy.max_bytes,
            policy.settings.item,
            policy.settings.max_bytes,
            policy.settings.place
        ))
    };
    if let Some(length) = response.content_length()
        && length > policy.max_bytes
    {
        return Err(too_large(format!("{length} bytes")));
    }
    let (mime_type, charset) = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(parse_content_type)
        .unwrap_or((None, None));

    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(|e| {
            DocumentError::Fetch(format!(
                "reading {} failed: {}",
                shorten(url.as_str()),
                error_chain(&e)
            ))
        })?;
        // Checked per piece, so a server that lies about or omits its length is cut off.
        if (bytes.len() + piece.len()) as u64 > policy.max_bytes {
            return Err(too_large("larger".to_string()));
        }
        bytes.extend_from_slice(&piece);
    }
    let bytes = match &mime_type {
        Some(mime) => to_utf8(bytes, mime, charset.as_deref())?,
        None => bytes,
    };
    Ok(Loaded { bytes, mime_type })
}

/// `text/html; charset=ISO-8859-1` → (`text/html`, `ISO-8859-1`).
fn parse_content_type(value: &str) -> (Option<String>, Option<String>) {
    let mut parts = value.split(';');
    let mime = parts
        .next()
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| !m.is_empty());
    let charset = parts.find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_string())
    });
    (mime, charset)
}

/// An error with its causes: reqwest's own message rarely says what failed.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_parameters_are_split_off() {
        assert_eq!(
            parse_content_type("Text/HTML; charset=\"ISO-8859-1\""),
            (Some("text/html".into()), Some("ISO-8859-1".into()))
        );
        assert_eq!(
            parse_content_type("application/pdf"),
            (Some("application/pdf".into()), None)
        );
    }

    /// A server answering every request with `response`, counting the requests it gets.
    async fn serve(
        response: impl Fn() -> axum::response::Response + Clone + Send + Sync + 'static,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let response = response.clone();
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, hits)
    }

    fn redirect_to(location: String) -> axum::response::Response {
        axum::response::Response::builder()
            .status(302)
            .header("location", location)
            .body(axum::body::Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn a_redirect_to_loopback_is_refused_before_it_is_followed() {
        use std::sync::atomic::Ordering;
        let (inner, inner_hits) = serve(|| axum::response::Response::new("secret".into())).await;
        let target = format!("http://127.0.0.1:{}/admin", inner.port());
        let (outer, outer_hits) = serve(move || redirect_to(target.clone())).await;
        // The outer server stands in for a public host.
        let url = Url::parse(&format!("http://{outer}/doc")).unwrap();
        let err = fetch_within_timeout(url, &FetchPolicy::default(), &[outer])
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, DocumentError::Forbidden(_)), "{text}");
        assert!(
            text.contains("refusing to follow the redirect from")
                && text.contains("127.0.0.1 is a loopback address")
                && text.contains("allow_private_addresses: true"),
            "{text}"
        );
        assert_eq!(outer_hits.load(Ordering::SeqCst), 1);
        assert_eq!(inner_hits.load(Ordering::SeqCst), 0);

        // A host name is checked by what it resolves to.
        let (outer, _) =
            serve(move || redirect_to(format!("http://localhost:{}/", inner.port()))).await;
        let url = Url::parse(&format!("http://{outer}/doc")).unwrap();
        let err = fetch_within_timeout(url, &FetchPolicy::default(), &[outer])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("localhost resolves to"), "{err}");
        assert_eq!(inner_hits.load(Ordering::SeqCst), 0);

        // The trusted server itself is fetched normally.
        let url = Url::parse(&format!("http://{inner}/doc")).unwrap();
        let loaded = fetch_within_timeout(url, &FetchPolicy::default(), &[inner])
            .await
            .unwrap();
        assert_eq!(loaded.bytes, b"secret");
    }

    #[tokio::test]
    async fn other_schemes_are_invalid() {
        for uri in ["file:///etc/passwd", "ftp://example.com/x", "gopher://x/"] {
            let err = load_uri(uri, &FetchPolicy::default()).await.unwrap_err();
            assert!(matches!(err, DocumentError::Invalid(_)), "{uri}: {err}");
            assert!(err.to_string().contains("scheme is not supported"), "{err}");
        }
        let err = load_uri("not a url", &FetchPolicy::default())
            .await
            .unwrap_err();
        assert!(matches!(err, DocumentError::Invalid(_)), "{err}");
    }
}
