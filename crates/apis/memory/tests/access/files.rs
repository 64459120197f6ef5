//! `/v1/files`: owned by their uploader, listed and paged after filtering.

use llama_stack_core::ErrorKind;
use llama_stack_memory::files_ops::ListFilesParams;

use super::*;

fn listing(limit: i64, after: Option<String>) -> ListFilesParams {
    ListFilesParams {
        limit: Some(limit),
        order: Some("asc".into()),
        after,
        ..ListFilesParams::default()
    }
}

#[tokio::test]
async fn a_file_is_hidden_from_whoever_may_not_read_it() {
    let (svc, _) = service();
    let file = upload(&svc, &alice(), "notes.txt").await;
    assert_eq!(file.owner, Some(alice()));

    let missing = assert_kind(
        as_user(&bob(), svc.get_file("file-none")).await,
        ErrorKind::NotFound,
    );
    let expected = missing.message().replace("file-none", &file.id);
    for result in [
        as_user(&bob(), svc.get_file(&file.id)).await.map(|_| ()),
        as_user(&bob(), svc.file_content(&file.id))
            .await
            .map(|_| ()),
        as_user(&bob(), svc.file_download(&file.id))
            .await
            .map(|_| ()),
        as_user(&bob(), svc.delete_file(&file.id)).await.map(|_| ()),
        svc.get_file(&file.id).await.map(|_| ()),
    ] {
        let err = assert_kind(result, ErrorKind::NotFound);
        assert_eq!(err.message(), expected);
    }
    let listed = as_user(&bob(), svc.list_files(ListFilesParams::default()))
        .await
        .unwrap();
    assert!(listed.data.is_empty());
    assert!(!listed.has_more);
    assert!(
        svc.list_files(ListFilesParams::default())
            .await
            .unwrap()
            .data
            .is_empty()
    );

    let download = as_user(&dave(), svc.file_download(&file.id)).await.unwrap();
    assert!(!download.content.is_empty());
    assert_kind(
        as_user(&dave(), svc.delete_file(&file.id)).await,
        ErrorKind::Forbidden,
    );
    as_user(&carol(), svc.get_file(&file.id)).await.unwrap();
    as_user(&carol(), svc.delete_file(&file.id)).await.unwrap();
    assert_kind(
        as_user(&alice(), svc.get_file(&file.id)).await,
        ErrorKind::NotFound,
    );
}

#[tokio::test]
async fn file_lists_page_over_readable_files_only() {
    let (svc, _) = service();
    // Interleaved, so every provider page mixes owners.
    let mut alices = Vec::new();
    let mut bobs = Vec::new();
    for i in 0..3 {
        alices.push(upload(&svc, &alice(), &format!("a{i}.txt")).await.id);
        bobs.push(upload(&svc, &bob(), &format!("b{i}.txt")).await.id);
    }

    let ids = |list: &llama_stack_memory::files::FileList| -> Vec<String> {
        list.data.iter().map(|f| f.id.clone()).collect()
    };
    let first = as_user(&bob(), svc.list_files(listing(2, None)))
        .await
        .unwrap();
    assert_eq!(ids(&first), bobs[..2]);
    assert!(first.has_more);
    let rest = as_user(&bob(), svc.list_files(listing(2, Some(first.last_id))))
        .await
        .unwrap();
    assert_eq!(ids(&rest), bobs[2..]);
    assert!(!rest.has_more);

    let all = as_user(&carol(), svc.list_files(listing(3, None)))
        .await
        .unwrap();
    assert_eq!(ids(&all), alices);
    assert!(!all.has_more, "bob's files do not count as more");
    let everything = as_user(&dave(), svc.list_files(listing(6, None)))
        .await
        .unwrap();
    assert_eq!(everything.data.len(), 6);
}
