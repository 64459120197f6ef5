//! The files routes through the whole router, over an in-memory files provider.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::http::Request;
use llama_stack_core::{Api, RegistryStore, Result};
use llama_stack_memory::{
    files::FileListQuery, files::FilePage, files::FilesProvider, files::NewFile,
};
use llama_stack_stack::ProviderInstance;
use llama_stack_stack::{ProviderHandle, Services, StackInfo};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

#[derive(Default)]
struct MemoryFiles {
    files: Mutex<BTreeMap<String, (FileObject, Vec<u8>)>>,
}

#[async_trait]
impl FilesProvider for MemoryFiles {
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let mut files = self.files.lock().unwrap();
        let object = FileObject {
            object: "file".into(),
            id: format!("file-{:032x}", files.len() + 1),
            bytes: file.content.len() as u64,
            created_at: 1_700_000_000 + files.len() as i64,
            expires_at: file.expires_after_seconds.map(|s| 1_700_000_000 + s),
            filename: file.filename,
            purpose: file.purpose,
            owner: file.owner,
        };
        files.insert(object.id.clone(), (object.clone(), file.content));
        Ok(object)
    }
    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        let files = self.files.lock().unwrap();
        let mut data: Vec<FileObject> = files.values().map(|(f, _)| f.clone()).collect();
        if query.order_desc {
            data.reverse();
        }
        let limit = query.limit.unwrap_or(10_000);
        Ok(FilePage {
            has_more: data.len() > limit,
            data: data.into_iter().take(limit).collect(),
        })
    }
    async fn get(&self, file_id: &str) -> Result<FileObject> {
        self.files
            .lock()
            .unwrap()
            .get(file_id)
            .map(|(f, _)| f.clone())
            .ok_or_else(|| Error::not_found(format!("File '{file_id}' not found.")))
    }
    async fn content(&self, file_id: &str) -> Result<Vec<u8>> {
        self.get(file_id).await?;
        Ok(self.files.lock().unwrap()[file_id].1.clone())
    }
    async fn delete(&self, file_id: &str) -> Result<()> {
        self.get(file_id).await?;
        self.files.lock().unwrap().remove(file_id);
        Ok(())
    }
}

/// A registry that keeps nothing, for router tests that need no persistence.
pub(crate) struct NoStore;

#[async_trait]
impl RegistryStore for NoStore {
    async fn put(&self, _: &str, _: &str, _: &Value) -> Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool> {
        Ok(false)
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Value>> {
        Ok(None)
    }

    async fn list(&self, _: &str) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}

fn app() -> Router {
    let handle = ProviderHandle {
        api: Api::Files,
        provider_id: "localfs".into(),
        provider_type: "inline::localfs".into(),
        redacted_config: Value::Null,
        instance: ProviderInstance::Files(Arc::new(MemoryFiles::default())),
    };
    let services = Services::over(std::slice::from_ref(&handle), Arc::new(NoStore), None);
    let stack = Stack::new(StackInfo::default(), vec![handle], services);
    crate::router(Arc::new(stack))
}

const BOUNDARY: &str = "llama-boundary-7f3a";

/// A multipart body as the openai SDK writes it: text fields, then the file part.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, content)) = file {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn send(
    app: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

async fn upload_to(app: &Router, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))
        .unwrap();
    let (status, _, bytes) = send(app, request).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn get_json(app: &Router, path: &str) -> (StatusCode, Value) {
    let (status, _, bytes) = send(app, Request::get(path).body(Body::empty()).unwrap()).await;
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn upload_list_get_download_delete() {
    let app = app();
    let body = multipart(
        &[
            ("purpose", "assistants"),
            ("expires_after[anchor]", "created_at"),
            ("expires_after[seconds]", "3600"),
        ],
        Some(("llama notes.md", b"# Llamas\nThey hum.")),
    );
    let (status, file) = upload_to(&app, "/v1/files", body).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    let id = file["id"].as_str().unwrap().to_string();
    assert_eq!(
        file,
        json!({"object": "file", "id": id, "bytes": 18, "created_at": 1_700_000_000,
               "expires_at": 1_700_003_600, "filename": "llama notes.md", "purpose": "assistants"})
    );

    for prefix in ["/v1", "/v1/openai/v1"] {
        let (status, list) = get_json(&app, &format!("{prefix}/files?limit=5&order=asc")).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(
            list,
            json!({"object": "list", "data": [file.clone()], "has_more": false,
                   "first_id": id, "last_id": id})
        );
        let (status, got) = get_json(&app, &format!("{prefix}/files/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got, file);

        let request = Request::get(format!("{prefix}/files/{id}/content"))
            .body(Body::empty())
            .unwrap();
        let (status, headers, bytes) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(bytes, b"# Llamas\nThey hum.");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/markdown; charset=utf-8"
        );
        assert_eq!(
            headers[header::CONTENT_DISPOSITION],
            "attachment; filename=\"llama notes.md\""
        );
    }

    let request = Request::delete(format!("/v1/openai/v1/files/{id}"))
        .body(Body::empty())
        .unwrap();
    let (status, _, bytes) = send(&app, request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap(),
        json!({"id": id, "object": "file", "deleted": true})
    );
    let (status, err) = get_json(&app, &format!("/v1/files/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["type"], "not_found_error");
    assert!(err["error"]["message"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn bad_uploads_get_openai_errors_naming_the_field() {
    let app = app();
    for (fields, file, param, text) in [
        (
            vec![],
            Some(("a.txt", &b"x"[..])),
            "purpose",
            "purpose is required",
        ),
        (
            vec![("purpose", "homework")],
            Some(("a.txt", &b"x"[..])),
            "purpose",
            "homework",
        ),
        (
            vec![("purpose", "assistants")],
            None,
            "file",
            "field `file`",
        ),
        (
            vec![
                ("purpose", "assistants"),
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "soon"),
            ],
            Some(("a.txt", &b"x"[..])),
            "expires_after",
            "must be an integer",
        ),
        (
            vec![
                ("purpose", "assistants"),
                ("expires_after[anchor]", "created_at"),
                ("expires_after[seconds]", "60"),
            ],
            Some(("a.txt", &b"x"[..])),
            "expires_after",
            "between 3600",
        ),
    ] {
        let (status, err) = upload_to(&app, "/v1/files", multipart(&fields, file)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["param"], param, "{err}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(text),
            "{err}"
        );
    }

    // Not multipart at all.
    let request = Request::post("/v1/files")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"purpose": "assistants"}"#))
        .unwrap();
    let (status, _, bytes) = send(&app, request).await;
    assert_eq!(status.as_u16() / 100, 4);
    let err: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data"),
        "{err}"
    );

    let (status, err) = get_json(&app, "/v1/files?limit=lots").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "limit");
    let (status, err) = get_json(&app, "/v1/files?order=sideways").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["param"], "order");
}

#[tokio::test]
async fn uploads_may_exceed_the_general_body_limit() {
    let app = app();
    let big = vec![b'a'; crate::MAX_BODY_BYTES + 1024];
    let body = multipart(&[("purpose", "batch")], Some(("big.jsonl", &big)));
    let (status, file) = upload_to(&app, "/v1/files", body).await;
    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["bytes"], big.len());
    // Other routes keep the general limit.
    let request = Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(vec![b' '; crate::MAX_BODY_BYTES + 1024]))
        .unwrap();
    let (status, _, _) = send(&app, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn download_names_are_safe_header_values() {
    assert_eq!(
        content_disposition("a\"b.txt"),
        "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
    );
    assert_eq!(
        content_disposition("résumé.pdf"),
        "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
    );
    assert!(HeaderValue::from_str(&content_disposition("line\nbreak")).is_ok());
}
