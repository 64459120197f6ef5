//! The browser playground: static pages (HTML, CSS and ES modules, no build step) compiled into
//! the binary and served under `/playground`.
//!
//! The pages talk to the server only through its public HTTP API, as any client would, so this
//! crate owns no API logic and depends on nothing of the stack but axum. The HTTP transport
//! merges [`router`] when `server.playground` is on.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the playground is served.
pub const MOUNT: &str = "/playground";

/// One embedded file: its name under `assets/`, its media type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const PNG: &str = "image/png";

/// Every file under `assets/`; a test fails when the folder and this list disagree.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("style.css", CSS),
    asset!("api.js", JS),
    asset!("app.js", JS),
    asset!("chat.js", JS),
    asset!("documents.js", JS),
    asset!("agents.js", JS),
    asset!("safety.js", JS),
    asset!("server.js", JS),
    asset!("icon.png", PNG),
];

/// The playground's routes: the page at `/playground` and `/playground/`, its files below.
pub fn router() -> Router {
    Router::new()
        .route(MOUNT, get(index))
        .route(&format!("{MOUNT}/"), get(index))
        .route(&format!("{MOUNT}/{{*file}}"), get(file))
}

async fn index() -> Response {
    serve("index.html")
}

async fn file(Path(file): Path<String>) -> Response {
    serve(&file)
}

fn serve(name: &str) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                // The page fetches nothing but its own files and this server's API.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'",
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "Not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn every_asset_file_is_listed_once_with_a_type_for_its_extension() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "assets/ and ASSETS disagree");
        for asset in ASSETS {
            let expected = match asset.name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("png") => PNG,
                other => panic!("{}: no media type for {other:?}", asset.name),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.name);
        }
    }

    async fn get(path: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let response = router()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, content_type, body.to_vec())
    }

    #[tokio::test]
    async fn the_page_answers_with_and_without_a_trailing_slash() {
        for path in ["/playground", "/playground/"] {
            let (status, content_type, body) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(content_type.as_deref(), Some(HTML), "{path}");
            assert!(String::from_utf8(body).unwrap().contains("<title>"));
        }
    }

    #[tokio::test]
    async fn files_carry_their_media_type_and_unknown_ones_are_404() {
        let (status, content_type, _) = get("/playground/app.js").await;
        assert_eq!(
            (status, content_type.as_deref()),
            (StatusCode::OK, Some(JS))
        );
        let (status, content_type, _) = get("/playground/style.css").await;
        assert_eq!(
            (status, content_type.as_deref()),
            (StatusCode::OK, Some(CSS))
        );
        let (status, content_type, body) = get("/playground/icon.png").await;
        assert_eq!(
            (status, content_type.as_deref()),
            (StatusCode::OK, Some("image/png"))
        );
        assert!(body.starts_with(b"\x89PNG"));
        for missing in ["/playground/nope.js", "/playground/../Cargo.toml"] {
            assert_eq!(get(missing).await.0, StatusCode::NOT_FOUND, "{missing}");
        }
    }

    /// Imports inside the modules are relative, so they resolve under the mount; the page
    /// itself names its files from the root, since `/playground` has no trailing slash.
    #[test]
    fn the_page_names_only_embedded_files() {
        let index = std::str::from_utf8(ASSETS[0].body).unwrap();
        for reference in index.split(&format!("\"{MOUNT}/")).skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html names {name}, which is not embedded"
            );
        }
    }
}
