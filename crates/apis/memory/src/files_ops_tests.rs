use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use llama_stack_core::{ErrorKind, RegistryStore};
use llama_stack_inference::InferenceService;

use crate::files::FilePage;

/// Records what reaches the provider; answers with one fixed file.
#[derive(Default)]
struct Recorder {
    created: Mutex<Vec<NewFile>>,
    listed: Mutex<Vec<FileListQuery>>,
}

fn sample(id: &str, filename: &str) -> FileObject {
    FileObject {
        object: "file".into(),
        id: id.into(),
        bytes: 5,
        created_at: 1,
        expires_at: None,
        filename: filename.into(),
        purpose: "assistants".into(),
        owner: None,
    }
}

#[async_trait]
impl FilesProvider for Recorder {
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let object = sample("file-1", &file.filename);
        self.created.lock().unwrap().push(file);
        Ok(object)
    }
    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        self.listed.lock().unwrap().push(query.clone());
        Ok(FilePage {
            data: vec![sample("file-a", "a.txt"), sample("file-b", "b.pdf")],
            has_more: true,
        })
    }
    async fn get(&self, file_id: &str) -> Result<FileObject> {
        Ok(sample(file_id, "notes.md"))
    }
    async fn content(&self, _file_id: &str) -> Result<Vec<u8>> {
        Ok(b"hello".to_vec())
    }
    async fn delete(&self, _file_id: &str) -> Result<()> {
        Ok(())
    }
}

struct NoStore;

#[async_trait]
impl RegistryStore for NoStore {
    async fn put(&self, _: &str, _: &str, _: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool> {
        Ok(false)
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    async fn list(&self, _: &str) -> Result<Vec<serde_json::Value>> {
        Ok(Vec::new())
    }
}

fn memory_with(files: Vec<(String, Arc<dyn FilesProvider>)>) -> MemoryService {
    let inference = Arc::new(InferenceService::new(vec![], Arc::new(NoStore)));
    MemoryService::new(vec![], files, Arc::new(NoStore), inference)
}

fn stack_with(provider: Arc<Recorder>) -> MemoryService {
    memory_with(vec![("localfs".into(), provider)])
}

fn upload() -> FileUpload {
    FileUpload {
        content: Some(b"hello".to_vec()),
        filename: Some("notes.md".into()),
        purpose: Some("assistants".into()),
        ..FileUpload::default()
    }
}

fn location(err: &Error) -> Vec<String> {
    err.location()
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn uploads_are_checked_with_locations() {
    let stack = stack_with(Arc::default());
    let cases: Vec<(FileUpload, &[&str], &str)> = vec![
        (
            FileUpload {
                content: None,
                ..upload()
            },
            &["body", "file"],
            "multipart form field `file`",
        ),
        (
            FileUpload {
                purpose: None,
                ..upload()
            },
            &["body", "purpose"],
            "purpose is required",
        ),
        (
            FileUpload {
                purpose: Some("training".into()),
                ..upload()
            },
            &["body", "purpose"],
            "got 'training'",
        ),
        (
            FileUpload {
                expires_after_anchor: Some("last_active_at".into()),
                expires_after_seconds: Some(3600),
                ..upload()
            },
            &["body", "expires_after", "anchor"],
            "'created_at'",
        ),
        (
            FileUpload {
                expires_after_anchor: Some("created_at".into()),
                expires_after_seconds: Some(60),
                ..upload()
            },
            &["body", "expires_after", "seconds"],
            "between 3600",
        ),
        (
            FileUpload {
                expires_after_seconds: Some(7200),
                ..upload()
            },
            &["body", "expires_after", "anchor"],
            "needs both",
        ),
    ];
    for (bad, loc, text) in cases {
        let err = stack.create_file(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        assert_eq!(location(&err), loc, "{err}");
        assert!(err.message().contains(text), "{err}");
    }
}

#[tokio::test]
async fn a_valid_upload_reaches_the_provider() {
    let provider = Arc::new(Recorder::default());
    let stack = stack_with(provider.clone());
    let file = stack
        .create_file(FileUpload {
            filename: Some("  ".into()),
            expires_after_anchor: Some("created_at".into()),
            expires_after_seconds: Some(2_592_000),
            ..upload()
        })
        .await
        .unwrap();
    assert_eq!(file.filename, "uploaded_file");
    let created = provider.created.lock().unwrap();
    assert_eq!(created[0].expires_after_seconds, Some(2_592_000));
    assert_eq!(created[0].content, b"hello");
}

#[tokio::test]
async fn list_parameters_are_checked_and_the_page_is_an_openai_list() {
    let provider = Arc::new(Recorder::default());
    let stack = stack_with(provider.clone());
    for (params, field) in [
        (
            ListFilesParams {
                limit: Some(0),
                ..Default::default()
            },
            "limit",
        ),
        (
            ListFilesParams {
                limit: Some(10_001),
                ..Default::default()
            },
            "limit",
        ),
        (
            ListFilesParams {
                order: Some("newest".into()),
                ..Default::default()
            },
            "order",
        ),
        (
            ListFilesParams {
                purpose: Some("x".into()),
                ..Default::default()
            },
            "purpose",
        ),
    ] {
        let err = stack.list_files(params).await.unwrap_err();
        assert_eq!(location(&err), ["query", field], "{err}");
    }
    let list = stack
        .list_files(ListFilesParams {
            after: Some(String::new()),
            limit: Some(2),
            order: Some("asc".into()),
            purpose: Some("assistants".into()),
        })
        .await
        .unwrap();
    let value = serde_json::to_value(&list).unwrap();
    assert_eq!(value["object"], "list");
    assert_eq!(value["first_id"], "file-a");
    assert_eq!(value["last_id"], "file-b");
    assert_eq!(value["has_more"], true);
    let query = provider.listed.lock().unwrap()[0].clone();
    assert_eq!(query.after, None);
    assert_eq!(query.limit, Some(2));
    assert!(!query.order_desc);
}

#[tokio::test]
async fn downloads_are_labelled_and_deletes_confirmed() {
    let stack = stack_with(Arc::default());
    let download = stack.file_download("file-x").await.unwrap();
    assert_eq!(download.content, b"hello");
    assert_eq!(download.content_type, "text/markdown; charset=utf-8");
    let deleted = serde_json::to_value(stack.delete_file("file-x").await.unwrap()).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"id": "file-x", "object": "file", "deleted": true})
    );
    assert_eq!(content_type_for("REPORT.PDF"), "application/pdf");
    assert_eq!(content_type_for("noext"), "application/octet-stream");
}

#[tokio::test]
async fn without_a_provider_the_api_is_unsupported() {
    let stack = memory_with(vec![]);
    let err = stack.get_file("file-x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.message().contains("inline::localfs"), "{err}");
}
