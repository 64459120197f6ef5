//! Bytes and record stored together or not at all, and files surviving a restart.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{Error, RegistryStore, Result};
use llama_stack_memory::files::{FileListQuery, FilesProvider};
use llama_stack_provider_files_localfs::config::{MetadataStore, SqliteStore};
use llama_stack_provider_files_localfs::{LocalfsConfig, LocalfsFiles, RECORD_KIND};

use crate::support::{context, ids, new_file, open, stored_names};

/// A store whose writes fail, like a full disk or a lost database connection.
struct FailingStore;

#[async_trait]
impl RegistryStore for FailingStore {
    async fn put(&self, _: &str, _: &str, _: &serde_json::Value) -> Result<()> {
        Err(Error::internal("registry store: writing failed: disk full"))
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool> {
        Err(Error::internal("registry store: deleting failed"))
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }

    async fn list(&self, _: &str) -> Result<Vec<serde_json::Value>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn a_failed_record_leaves_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let files = LocalfsFiles::open(
        LocalfsConfig::default(),
        context(dir.path(), Some(Arc::new(FailingStore))),
    )
    .await
    .unwrap();
    let err = files
        .create(new_file("a.txt", "assistants", b"data"))
        .await
        .unwrap_err();
    assert!(err.message().contains("disk full"), "{err}");
    assert!(
        stored_names(dir.path()).is_empty(),
        "{:?}",
        stored_names(dir.path())
    );
    assert!(
        files
            .list(&FileListQuery::default())
            .await
            .unwrap()
            .data
            .is_empty()
    );
}

#[tokio::test]
async fn a_failed_delete_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = open(dir.path()).await;
    let file = good
        .create(new_file("a.txt", "assistants", b"data"))
        .await
        .unwrap();
    drop(good);
    // Same folder, but a store that cannot delete: the file must stay whole.
    struct ReadOnly(Arc<dyn RegistryStore>);
    #[async_trait]
    impl RegistryStore for ReadOnly {
        async fn put(&self, k: &str, i: &str, v: &serde_json::Value) -> Result<()> {
            self.0.put(k, i, v).await
        }
        async fn delete(&self, _: &str, _: &str) -> Result<bool> {
            Err(Error::internal("registry store: deleting failed"))
        }
        async fn get(&self, kind: &str, id: &str) -> Result<Option<serde_json::Value>> {
            self.0.get(kind, id).await
        }

        async fn list(&self, kind: &str) -> Result<Vec<serde_json::Value>> {
            self.0.list(kind).await
        }
    }
    let registry = crate::support::registry(dir.path()).await;
    let files = LocalfsFiles::open(
        LocalfsConfig::default(),
        context(dir.path(), Some(Arc::new(ReadOnly(registry)))),
    )
    .await
    .unwrap();
    assert!(files.delete(&file.id).await.is_err());
    assert_eq!(files.content(&file.id).await.unwrap(), b"data");
}

#[tokio::test]
async fn files_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut created = Vec::new();
    {
        let files = open(dir.path()).await;
        for i in 0..3 {
            created.push(
                files
                    .create(new_file(
                        &format!("{i}.md"),
                        "assistants",
                        format!("body {i}").as_bytes(),
                    ))
                    .await
                    .unwrap(),
            );
        }
        files.delete(&created[1].id).await.unwrap();
    }
    // A crash mid-upload leaves a partial file; opening sweeps it.
    std::fs::write(dir.path().join("files/.upload-crashed"), b"half").unwrap();
    let files = open(dir.path()).await;
    let listed = ids(&files, &FileListQuery::default()).await;
    assert_eq!(listed, [created[0].id.clone(), created[2].id.clone()]);
    assert_eq!(files.get(&created[0].id).await.unwrap(), created[0]);
    assert_eq!(files.content(&created[2].id).await.unwrap(), b"body 2");
    assert_eq!(stored_names(dir.path()).len(), 2);
    let records = crate::support::registry(dir.path())
        .await
        .list(RECORD_KIND)
        .await
        .unwrap();
    assert_eq!(records.len(), 2);
}

#[tokio::test]
async fn the_owner_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let owner = llama_stack_core::access::User {
        principal: "alice".into(),
        attributes: Some([("teams".to_string(), vec!["red".to_string()])].into()),
    };
    let created = open(dir.path())
        .await
        .create(llama_stack_memory::files::NewFile {
            owner: Some(owner.clone()),
            ..new_file("mine.md", "assistants", b"mine")
        })
        .await
        .unwrap();
    assert_eq!(created.owner.as_ref(), Some(&owner));
    let files = open(dir.path()).await;
    assert_eq!(files.get(&created.id).await.unwrap().owner, Some(owner));
}

#[tokio::test]
async fn a_metadata_store_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = LocalfsConfig {
        storage_dir: Some(dir.path().join("blobs").display().to_string()),
        metadata_store: Some(MetadataStore::Sqlite(SqliteStore {
            db_path: dir.path().join("meta/files.db").display().to_string(),
            namespace: None,
        })),
        ttl_secs: None,
    };
    let id = {
        let files = LocalfsFiles::open(config.clone(), context(dir.path(), None))
            .await
            .unwrap();
        files
            .create(new_file("x.pdf", "user_data", b"%PDF-"))
            .await
            .unwrap()
            .id
    };
    assert!(dir.path().join("meta/files.db").exists());
    assert!(dir.path().join("blobs").join(&id).exists());
    let files = LocalfsFiles::open(config, context(dir.path(), None))
        .await
        .unwrap();
    assert_eq!(files.content(&id).await.unwrap(), b"%PDF-");

    // Without any store there is nowhere to keep records.
    let err = LocalfsFiles::open(LocalfsConfig::default(), context(dir.path(), None))
        .await
        .err()
        .unwrap();
    assert!(err.message().contains("metadata_store"), "{err}");
}
