//! Create, list with pagination, get, content, delete and expiry.

use llama_stack_core::ErrorKind;
use llama_stack_memory::files::{FileListQuery, FilesProvider, NewFile};
use llama_stack_provider_files_localfs::LocalfsConfig;

use crate::support::{ids, new_file, open, open_with, stored_names};

#[tokio::test]
async fn a_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let files = open(dir.path()).await;
    let created = files
        .create(new_file(
            "../../etc/notes.md",
            "assistants",
            b"# Notes\nllamas",
        ))
        .await
        .unwrap();
    assert_eq!(created.object, "file");
    assert!(
        created.id.starts_with("file-") && created.id.len() == 37,
        "{}",
        created.id
    );
    assert_eq!(created.bytes, 14);
    assert_eq!(created.filename, "../../etc/notes.md");
    assert_eq!(created.purpose, "assistants");
    assert_eq!(created.expires_at, None);
    // The client's file name is metadata only: the bytes live under the id.
    assert_eq!(stored_names(dir.path()), vec![created.id.clone()]);

    assert_eq!(files.get(&created.id).await.unwrap(), created);
    assert_eq!(
        files.content(&created.id).await.unwrap(),
        b"# Notes\nllamas"
    );

    files.delete(&created.id).await.unwrap();
    assert!(stored_names(dir.path()).is_empty());
    for err in [
        files.get(&created.id).await.unwrap_err(),
        files.content(&created.id).await.unwrap_err(),
        files.delete(&created.id).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.message().contains(&created.id), "{err}");
    }
}

#[tokio::test]
async fn ids_that_are_not_ours_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = open(dir.path()).await;
    std::fs::write(dir.path().join("secret"), b"x").unwrap();
    for id in [
        "../secret",
        "file-../../secret",
        "",
        "file-x",
        "/etc/passwd",
    ] {
        let err = files.content(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{id}: {err}");
    }
}

#[tokio::test]
async fn listings_page_in_upload_order() {
    let dir = tempfile::tempdir().unwrap();
    let files = open(dir.path()).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 { "batch" } else { "assistants" };
        let file = files
            .create(new_file(&format!("f{i}.txt"), purpose, b"x"))
            .await
            .unwrap();
        created.push(file.id);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    let all = FileListQuery {
        order_desc: true,
        ..Default::default()
    };
    assert_eq!(ids(&files, &all).await, newest_first);

    let mut query = FileListQuery {
        limit: Some(2),
        ..Default::default()
    };
    let page = files.list(&query).await.unwrap();
    assert_eq!(page.data.len(), 2);
    assert!(page.has_more);
    let mut seen: Vec<String> = page.data.iter().map(|f| f.id.clone()).collect();
    loop {
        query.after = seen.last().cloned();
        let page = files.list(&query).await.unwrap();
        seen.extend(page.data.iter().map(|f| f.id.clone()));
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, created);

    let batch = FileListQuery {
        purpose: Some("batch".into()),
        ..Default::default()
    };
    assert_eq!(ids(&files, &batch).await, [created[2].clone()]);

    let exact = FileListQuery {
        limit: Some(5),
        ..Default::default()
    };
    assert!(!files.list(&exact).await.unwrap().has_more);

    let err = files
        .list(&FileListQuery {
            after: Some("file-00000000000000000000000000000000".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert_eq!(err.location().unwrap()[1], "after");
}

#[tokio::test]
async fn concurrent_uploads_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let files = std::sync::Arc::new(open(dir.path()).await);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let files = files.clone();
            tokio::spawn(async move {
                files
                    .create(new_file("n.txt", "assistants", format!("{i}").as_bytes()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap().id);
    }
    let mut listed = ids(files.as_ref(), &FileListQuery::default()).await;
    listed.sort();
    created.sort();
    assert_eq!(listed, created);
    assert_eq!(stored_names(dir.path()).len(), 16);
}

#[tokio::test]
async fn expired_files_are_gone_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let files = open(dir.path()).await;
    let keep = files
        .create(new_file("keep.txt", "assistants", b"k"))
        .await
        .unwrap();
    let expiring = files
        .create(NewFile {
            expires_after_seconds: Some(0),
            ..new_file("old.txt", "assistants", b"o")
        })
        .await
        .unwrap();
    assert_eq!(expiring.expires_at, Some(expiring.created_at));
    assert_eq!(stored_names(dir.path()).len(), 2);

    assert_eq!(
        ids(&files, &FileListQuery::default()).await,
        vec![keep.id.clone()]
    );
    // The listing removed the expired file's bytes and record.
    assert_eq!(stored_names(dir.path()), vec![keep.id.clone()]);
    let err = files.get(&expiring.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let reopened = open(dir.path()).await;
    assert!(reopened.get(&expiring.id).await.is_err());
    assert!(reopened.get(&keep.id).await.is_ok());
}

#[tokio::test]
async fn ttl_secs_is_the_default_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let files = open_with(
        dir.path(),
        LocalfsConfig {
            ttl_secs: Some(86_400),
            ..Default::default()
        },
    )
    .await;
    let file = files
        .create(new_file("a.txt", "assistants", b"a"))
        .await
        .unwrap();
    assert_eq!(file.expires_at, Some(file.created_at + 86_400));
    let explicit = files
        .create(NewFile {
            expires_after_seconds: Some(3600),
            ..new_file("b.txt", "assistants", b"b")
        })
        .await
        .unwrap();
    assert_eq!(explicit.expires_at, Some(explicit.created_at + 3600));
    assert_eq!(files.content(&file.id).await.unwrap(), b"a");
}
