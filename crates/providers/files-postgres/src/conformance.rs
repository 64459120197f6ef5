//! The behaviour every files provider that replicas share must show, written once and run by
//! each provider's tests on its real storage (PostgreSQL, an S3 server). Each check takes
//! providers opened on fresh, empty storage; `replicas` takes two opened on the same storage,
//! as two servers sharing it would.

use llama_stack_core::ErrorKind;
use llama_stack_memory::files::{FileListQuery, FilesProvider, NewFile};
use llama_stack_types::User;

pub fn upload(name: &str, purpose: &str, content: &[u8]) -> NewFile {
    NewFile {
        filename: name.into(),
        purpose: purpose.into(),
        expires_after_seconds: None,
        content: content.to_vec(),
        owner: None,
    }
}

async fn ids(provider: &dyn FilesProvider, query: &FileListQuery) -> Vec<String> {
    let page = provider.list(query).await.unwrap();
    page.data.into_iter().map(|f| f.id).collect()
}

/// Upload, read back, delete; afterwards every call is a not-found naming the id.
pub async fn round_trip(files: &dyn FilesProvider) {
    let created = files
        .create(upload(
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
    assert_eq!(
        (
            created.bytes,
            created.filename.as_str(),
            created.purpose.as_str()
        ),
        (14, "../../etc/notes.md", "assistants")
    );
    assert_eq!(created.expires_at, None);
    assert_eq!(files.get(&created.id).await.unwrap(), created);
    assert_eq!(
        files.content(&created.id).await.unwrap(),
        b"# Notes\nllamas"
    );
    files.delete(&created.id).await.unwrap();
    for err in [
        files.get(&created.id).await.unwrap_err(),
        files.content(&created.id).await.unwrap_err(),
        files.delete(&created.id).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.message().contains(&created.id), "{err}");
    }
}

/// Bytes come back exactly: empty, every byte value, and large enough to span storage parts.
pub async fn content_is_exact(files: &dyn FilesProvider, large_bytes: usize) {
    let empty = files
        .create(upload("empty.bin", "batch", b""))
        .await
        .unwrap();
    assert_eq!(empty.bytes, 0);
    assert!(files.content(&empty.id).await.unwrap().is_empty());
    let large: Vec<u8> = (0..large_bytes).map(|i| (i * 7 % 256) as u8).collect();
    let file = files
        .create(upload("large.bin", "batch", &large))
        .await
        .unwrap();
    assert_eq!(file.bytes, large_bytes as u64);
    assert!(
        files.content(&file.id).await.unwrap() == large,
        "content differs"
    );
}

/// Ids that are not generated ones are not found, never looked up as keys or paths.
pub async fn foreign_ids_are_not_found(files: &dyn FilesProvider) {
    for id in [
        "../secret",
        "file-../../secret",
        "",
        "file-x",
        "/etc/passwd",
    ] {
        let err = files.content(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{id}: {err}");
        let err = files.delete(id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{id}: {err}");
    }
}

/// Upload order, both directions, pages with `after`, the purpose filter, and an `after` that
/// is not in the listing.
pub async fn listings_page_in_upload_order(files: &dyn FilesProvider) {
    let mut created = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 { "batch" } else { "assistants" };
        let file = files
            .create(upload(&format!("f{i}.txt"), purpose, b"x"))
            .await
            .unwrap();
        created.push(file.id);
    }
    let asc = FileListQuery::default();
    assert_eq!(ids(files, &asc).await, created);
    let desc = FileListQuery {
        order_desc: true,
        ..Default::default()
    };
    let mut reversed = created.clone();
    reversed.reverse();
    assert_eq!(ids(files, &desc).await, reversed);

    let first = FileListQuery {
        limit: Some(2),
        ..Default::default()
    };
    let page = files.list(&first).await.unwrap();
    assert!(page.has_more);
    let after = page.data.last().unwrap().id.clone();
    let second = FileListQuery {
        after: Some(after),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(ids(files, &second).await, created[2..4]);
    let last = FileListQuery {
        after: Some(created[3].clone()),
        limit: Some(2),
        ..Default::default()
    };
    let page = files.list(&last).await.unwrap();
    assert!(!page.has_more);
    assert_eq!(page.data.len(), 1);

    let batch = FileListQuery {
        purpose: Some("batch".into()),
        ..Default::default()
    };
    assert_eq!(ids(files, &batch).await, [created[2].clone()]);
    let stray = FileListQuery {
        purpose: Some("batch".into()),
        after: Some(created[0].clone()),
        ..Default::default()
    };
    let err = files.list(&stray).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

/// Expired files are gone from every call; a negative expiry is refused.
pub async fn expired_files_are_gone(files: &dyn FilesProvider) {
    let kept = files
        .create(upload("kept.txt", "assistants", b"k"))
        .await
        .unwrap();
    let mut expiring = upload("old.txt", "assistants", b"o");
    expiring.expires_after_seconds = Some(0);
    let old = files.create(expiring.clone()).await.unwrap();
    assert_eq!(old.expires_at, Some(old.created_at));
    for err in [
        files.get(&old.id).await.unwrap_err(),
        files.content(&old.id).await.unwrap_err(),
        files.delete(&old.id).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    }
    assert_eq!(ids(files, &FileListQuery::default()).await, [kept.id]);
    let mut later = upload("later.txt", "assistants", b"l");
    later.expires_after_seconds = Some(3600);
    let later = files.create(later).await.unwrap();
    assert_eq!(later.expires_at, Some(later.created_at + 3600));
    assert_eq!(files.get(&later.id).await.unwrap(), later);
    expiring.expires_after_seconds = Some(-5);
    let err = files.create(expiring).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

/// The uploader is stored with the file and read back as it was given.
pub async fn owners_are_kept(files: &dyn FilesProvider) {
    let mut owned = upload("mine.txt", "assistants", b"m");
    let mut owner = User::new("alice");
    owner.attributes = Some([("roles".to_string(), vec!["admin".to_string()])].into());
    owned.owner = Some(owner.clone());
    let file = files.create(owned).await.unwrap();
    assert_eq!(file.owner.as_ref(), Some(&owner));
    assert_eq!(
        files.get(&file.id).await.unwrap().owner,
        Some(owner.clone())
    );
    let listed = files.list(&FileListQuery::default()).await.unwrap();
    let listed = listed.data.iter().find(|f| f.id == file.id).unwrap();
    assert_eq!(listed.owner, Some(owner));
    let anonymous = files
        .create(upload("a.txt", "assistants", b"a"))
        .await
        .unwrap();
    assert_eq!(files.get(&anonymous.id).await.unwrap().owner, None);
}

/// What one replica uploads the other lists, reads and deletes at once.
pub async fn replicas(a: &dyn FilesProvider, b: &dyn FilesProvider) {
    let created = a
        .create(upload("shared.txt", "assistants", b"seen by both"))
        .await
        .unwrap();
    assert_eq!(b.get(&created.id).await.unwrap(), created);
    assert_eq!(b.content(&created.id).await.unwrap(), b"seen by both");
    assert_eq!(
        ids(b, &FileListQuery::default()).await,
        std::slice::from_ref(&created.id)
    );
    let second = b.create(upload("two.txt", "batch", b"2")).await.unwrap();
    assert_eq!(
        ids(a, &FileListQuery::default()).await,
        [created.id.clone(), second.id.clone()]
    );
    b.delete(&created.id).await.unwrap();
    let err = a.content(&created.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(ids(a, &FileListQuery::default()).await, [second.id]);
}
