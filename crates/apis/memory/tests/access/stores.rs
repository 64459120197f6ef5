//! Vector DBs and vector stores: one record, one owner, checked under either API.

use llama_stack_core::ErrorKind;
use llama_stack_memory::{MemoryApi, QueryParams};
use llama_stack_types::{
    InsertChunksRequest, InterleavedContent, QueryChunksRequest, RegisterVectorDbRequest,
};
use serde_json::{Map, Value, json};

use super::*;

fn register(id: &str) -> RegisterVectorDbRequest {
    RegisterVectorDbRequest {
        vector_db_id: id.into(),
        embedding_model: "emb".into(),
        embedding_dimension: None,
        provider_id: None,
        provider_vector_db_id: None,
        vector_db_name: None,
    }
}

fn insert(id: &str) -> InsertChunksRequest {
    InsertChunksRequest {
        vector_db_id: id.into(),
        chunks: vec![json!({"content": "llamas are woolly", "metadata": {"document_id": "d1"}})],
        ttl_seconds: None,
    }
}

fn query(id: &str) -> QueryChunksRequest {
    QueryChunksRequest {
        vector_db_id: id.into(),
        query: InterleavedContent::Text("llamas".into()),
        params: None,
    }
}

fn body(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[tokio::test]
async fn a_vector_db_is_hidden_from_whoever_may_not_read_it() {
    let (svc, _) = service();
    let db = as_user(&alice(), svc.register_vector_db(register("db-a")))
        .await
        .unwrap();
    assert_eq!(db.owner, Some(alice()));
    as_user(&alice(), svc.insert_chunks(insert("db-a")))
        .await
        .unwrap();

    // Bob gets what a missing vector DB gives, for every operation.
    let missing = assert_kind(
        as_user(&bob(), svc.get_vector_db("db-none")).await,
        ErrorKind::NotFound,
    );
    let hidden = assert_kind(
        as_user(&bob(), svc.get_vector_db("db-a")).await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        hidden.message(),
        missing.message().replace("db-none", "db-a")
    );
    assert!(as_user(&bob(), svc.list_vector_dbs()).await.is_empty());
    for result in [
        as_user(&bob(), svc.insert_chunks(insert("db-a"))).await,
        as_user(&bob(), svc.query_chunks(query("db-a")))
            .await
            .map(|_| ()),
        as_user(&bob(), svc.unregister_vector_db("db-a")).await,
    ] {
        let err = assert_kind(result, ErrorKind::NotFound);
        assert_eq!(err.message(), hidden.message());
    }
    // Registering the same id does not hand alice's store over.
    assert_kind(
        as_user(&bob(), svc.register_vector_db(register("db-a"))).await,
        ErrorKind::Conflict,
    );
    // Nor does asking with no caller at all, once callers are authenticated.
    assert_kind(svc.get_vector_db("db-a").await, ErrorKind::NotFound);
    assert!(svc.list_vector_dbs().await.is_empty());

    // A team mate has the owner's rights; an auditor reads but does not write.
    let listed = as_user(&carol(), svc.list_vector_dbs()).await;
    assert_eq!(listed.len(), 1);
    as_user(&carol(), svc.insert_chunks(insert("db-a")))
        .await
        .unwrap();
    let found = as_user(&dave(), svc.query_chunks(query("db-a")))
        .await
        .unwrap();
    assert!(!found.chunks.is_empty());
    assert_kind(
        as_user(&dave(), svc.insert_chunks(insert("db-a"))).await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        as_user(&dave(), svc.unregister_vector_db("db-a")).await,
        ErrorKind::Forbidden,
    );
    as_user(&alice(), svc.unregister_vector_db("db-a"))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_rag_runtime_reaches_only_what_its_caller_may() {
    let (svc, _) = service();
    as_user(&alice(), svc.register_vector_db(register("db-rag")))
        .await
        .unwrap();
    let api: &dyn MemoryApi = svc.as_ref();
    let params = QueryParams::default();
    let chunks = api
        .chunk_document("d1", "llamas".into(), &Map::new(), 64, 16)
        .await
        .unwrap();
    as_user(&alice(), api.insert_chunks_into("db-rag", chunks.clone()))
        .await
        .unwrap();

    for result in [
        as_user(&bob(), api.check_store("db-rag")).await,
        as_user(&bob(), api.check_store_writable("db-rag")).await,
        as_user(&bob(), api.insert_chunks_into("db-rag", chunks.clone())).await,
        as_user(&bob(), api.search_chunks("db-rag", "llamas", &params))
            .await
            .map(|_| ()),
        as_user(
            &bob(),
            api.search_vector_store("db-rag", body(json!({"query": "llamas"}))),
        )
        .await
        .map(|_| ()),
    ] {
        assert_kind(result, ErrorKind::NotFound);
    }
    as_user(&dave(), api.check_store("db-rag")).await.unwrap();
    assert_kind(
        as_user(&dave(), api.check_store_writable("db-rag")).await,
        ErrorKind::Forbidden,
    );
    let hits = as_user(&carol(), api.search_chunks("db-rag", "llamas", &params))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
}

#[tokio::test]
async fn a_vector_store_is_hidden_and_its_list_pages_after_filtering() {
    let (svc, _) = service();
    let store = vector_store(&svc, &alice(), "a1").await;
    vector_store(&svc, &alice(), "a2").await;
    vector_store(&svc, &alice(), "a3").await;
    let bobs = [
        vector_store(&svc, &bob(), "b1").await,
        vector_store(&svc, &bob(), "b2").await,
    ];

    let page = as_user(&bob(), svc.list_vector_stores(&first_page(2)))
        .await
        .unwrap();
    let mut seen = ids(&page);
    seen.sort();
    let mut expected = bobs.to_vec();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(page["has_more"], false);
    let page = as_user(&carol(), svc.list_vector_stores(&first_page(2)))
        .await
        .unwrap();
    assert_eq!(ids(&page).len(), 2);
    assert_eq!(page["has_more"], true);
    let page = as_user(&alice(), svc.list_vector_stores(&first_page(3)))
        .await
        .unwrap();
    assert_eq!(page["has_more"], false);

    let missing = assert_kind(
        as_user(&bob(), svc.get_vector_store("vs_none")).await,
        ErrorKind::NotFound,
    );
    let search = || body(json!({"query": "llamas"}));
    for result in [
        as_user(&bob(), svc.get_vector_store(&store)).await,
        as_user(
            &bob(),
            svc.update_vector_store(&store, body(json!({"name": "mine"}))),
        )
        .await,
        as_user(&bob(), svc.search_vector_store(&store, search())).await,
        as_user(&bob(), svc.delete_vector_store(&store)).await,
    ] {
        let err = assert_kind(result, ErrorKind::NotFound);
        assert_eq!(err.message(), missing.message().replace("vs_none", &store));
    }
    // The classic view of the same record has the same owner and answers alike.
    assert_kind(
        as_user(&bob(), svc.get_vector_db(&store)).await,
        ErrorKind::NotFound,
    );
    let db = as_user(&carol(), svc.get_vector_db(&store)).await.unwrap();
    assert_eq!(db.owner, Some(alice()));

    as_user(&dave(), svc.search_vector_store(&store, search()))
        .await
        .unwrap();
    assert_kind(
        as_user(
            &dave(),
            svc.update_vector_store(&store, body(json!({"name": "x"}))),
        )
        .await,
        ErrorKind::Forbidden,
    );
    let renamed = as_user(
        &carol(),
        svc.update_vector_store(&store, body(json!({"name": "team"}))),
    )
    .await
    .unwrap();
    assert_eq!(renamed["name"], "team");
    // An update keeps the owner.
    let db = as_user(&alice(), svc.get_vector_db(&store)).await.unwrap();
    assert_eq!(db.owner, Some(alice()));
    as_user(&alice(), svc.delete_vector_store(&store))
        .await
        .unwrap();
}

#[tokio::test]
async fn vector_store_files_follow_their_store_and_need_the_file() {
    let (svc, _) = service();
    let store = vector_store(&svc, &alice(), "docs").await;
    let mine = upload(&svc, &alice(), "mine.txt").await;
    let theirs = upload(&svc, &bob(), "theirs.txt").await;
    let attach = |id: &str| body(json!({"file_id": id}));

    // Another user's upload cannot be pulled into a store: it is as missing as no file.
    let missing = assert_kind(
        as_user(
            &alice(),
            svc.attach_vector_store_file(&store, attach("file-x")),
        )
        .await,
        ErrorKind::NotFound,
    );
    let hidden = assert_kind(
        as_user(
            &alice(),
            svc.attach_vector_store_file(&store, attach(&theirs.id)),
        )
        .await,
        ErrorKind::NotFound,
    );
    assert_eq!(
        hidden.message(),
        missing.message().replace("file-x", &theirs.id)
    );
    let attached = as_user(
        &alice(),
        svc.attach_vector_store_file(&store, attach(&mine.id)),
    )
    .await
    .unwrap();
    assert_eq!(attached["status"], "completed", "{attached}");

    // Listing a store's files answers 400 for an unknown store, and so for a hidden one.
    let unknown = assert_kind(
        as_user(
            &bob(),
            svc.list_vector_store_files("vs_none", &first_page(10), None),
        )
        .await,
        ErrorKind::InvalidRequest,
    );
    let hidden = assert_kind(
        as_user(
            &bob(),
            svc.list_vector_store_files(&store, &first_page(10), None),
        )
        .await,
        ErrorKind::InvalidRequest,
    );
    assert_eq!(
        hidden.message(),
        unknown.message().replace("vs_none", &store)
    );
    for result in [
        as_user(
            &bob(),
            svc.attach_vector_store_file(&store, attach(&theirs.id)),
        )
        .await,
        as_user(&bob(), svc.get_vector_store_file(&store, &mine.id)).await,
        as_user(&bob(), svc.vector_store_file_content(&store, &mine.id)).await,
        as_user(&bob(), svc.delete_vector_store_file(&store, &mine.id)).await,
    ] {
        assert_kind(result, ErrorKind::NotFound);
    }

    let content = as_user(&dave(), svc.vector_store_file_content(&store, &mine.id))
        .await
        .unwrap();
    assert!(
        content["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("llamas")
    );
    assert_kind(
        as_user(&dave(), svc.delete_vector_store_file(&store, &mine.id)).await,
        ErrorKind::Forbidden,
    );
    let listed = as_user(
        &carol(),
        svc.list_vector_store_files(&store, &first_page(10), None),
    )
    .await
    .unwrap();
    assert_eq!(ids(&listed), std::slice::from_ref(&mine.id));
    as_user(&carol(), svc.delete_vector_store_file(&store, &mine.id))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_file_batch_runs_as_its_creator() {
    let (svc, _) = service();
    let store = vector_store(&svc, &alice(), "batch").await;
    let mine = upload(&svc, &alice(), "mine.txt").await;
    let theirs = upload(&svc, &bob(), "theirs.txt").await;
    let request = body(json!({"file_ids": [mine.id, theirs.id]}));
    assert_kind(
        as_user(&bob(), svc.create_file_batch(&store, request.clone())).await,
        ErrorKind::NotFound,
    );
    assert_kind(
        as_user(&dave(), svc.create_file_batch(&store, request.clone())).await,
        ErrorKind::Forbidden,
    );
    let batch = as_user(&alice(), svc.create_file_batch(&store, request))
        .await
        .unwrap();
    let batch_id = batch["id"].as_str().unwrap();
    let done = finished_batch(&svc, &alice(), &store, batch_id).await;
    // The spawned work kept alice as its caller: her file went in, bob's stayed out.
    assert_eq!(done["file_counts"]["completed"], 1, "{done}");
    assert_eq!(done["file_counts"]["failed"], 1, "{done}");

    for result in [
        as_user(&bob(), svc.get_file_batch(&store, batch_id)).await,
        as_user(&bob(), svc.cancel_file_batch(&store, batch_id)).await,
        as_user(
            &bob(),
            svc.list_file_batch_files(&store, batch_id, &first_page(10), None),
        )
        .await,
    ] {
        let err = assert_kind(result, ErrorKind::NotFound);
        assert!(err.message().contains("File batch"), "{err}");
    }
    as_user(&dave(), svc.get_file_batch(&store, batch_id))
        .await
        .unwrap();
    assert_kind(
        as_user(&dave(), svc.cancel_file_batch(&store, batch_id)).await,
        ErrorKind::Forbidden,
    );
}

#[tokio::test]
async fn a_resumed_file_batch_runs_as_its_owner() {
    let (svc, registry) = service();
    let store = vector_store(&svc, &alice(), "resumed").await;
    let mine = upload(&svc, &alice(), "mine.txt").await;
    let theirs = upload(&svc, &bob(), "theirs.txt").await;
    // As an earlier process left it: recorded, running, nothing attached yet.
    let batch = json!({
        "id": "vsfb_resumed", "vector_store_id": store, "file_ids": [mine.id, theirs.id],
        "attributes": {}, "chunking_strategy": null, "created_at": 1,
        "status": "in_progress", "owner": alice(),
    });
    use llama_stack_core::RegistryStore;
    registry
        .put("vector_store_file_batch", "vsfb_resumed", &batch)
        .await
        .unwrap();
    // Start-up has no caller; the batch must not run with more than alice's rights.
    svc.resume_file_batches().await.unwrap();
    let done = finished_batch(&svc, &alice(), &store, "vsfb_resumed").await;
    assert_eq!(done["file_counts"]["completed"], 1, "{done}");
    assert_eq!(done["file_counts"]["failed"], 1, "{done}");
}
