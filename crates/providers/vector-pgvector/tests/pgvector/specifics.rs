//! What is particular to PostgreSQL: store ids and query text never reach SQL as code,
//! characters PostgreSQL cannot store, stores too wide for the HNSW index, and key order.

use llama_stack_core::ErrorKind;
use llama_stack_memory::{
    vector_io::SearchMode, vector_io::SearchRequest, vector_io::StoreSpec, vector_io::StoredChunk,
    vector_io::VectorIoProvider,
};
use serde_json::{Map, Value, json};

use crate::support::{provider_for, shared_database};

fn chunk(id: &str, text: &str, embedding: Vec<f32>) -> StoredChunk {
    StoredChunk {
        chunk_id: id.into(),
        text: text.into(),
        document: json!({"content": text, "metadata": {"z": 1, "a": 2}, "chunk_id": id}),
        attributes: Map::new(),
        embedding,
        file_id: None,
        expires_at: None,
    }
}

fn keyword(text: &str, k: usize) -> SearchRequest {
    SearchRequest {
        mode: SearchMode::Keyword,
        embedding: None,
        text: text.into(),
        k,
        filter: None,
    }
}

fn vector(embedding: Vec<f32>, k: usize) -> SearchRequest {
    SearchRequest {
        mode: SearchMode::Vector,
        embedding: Some(embedding),
        text: String::new(),
        k,
        filter: None,
    }
}

async fn fresh(p: &dyn VectorIoProvider, store_id: &str, dimension: usize) {
    p.delete_store(store_id).await.unwrap();
    p.create_store(&StoreSpec {
        store_id: store_id.into(),
        dimension,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_ids_and_query_text_are_data_not_sql() {
    let Some(db) = shared_database() else {
        return;
    };
    let p = provider_for(&db).await;
    let store = "pg-odd\"; DROP TABLE llama_stack_vector_stores; --'";
    fresh(&p, store, 2).await;
    p.insert(
        store,
        vec![
            chunk(
                "q1",
                "O'Reilly publishes books about C:\\ paths",
                vec![1.0, 0.0],
            ),
            chunk("q2", "plain words", vec![0.0, 1.0]),
        ],
    )
    .await
    .unwrap();
    let hits = p
        .search(store, &keyword("O'Reilly's \\ books", 5))
        .await
        .unwrap();
    assert_eq!(
        hits.first().map(|h| h.chunk_id.as_str()),
        Some("q1"),
        "{hits:?}"
    );
    for odd in ["'", "''", "\\", "a & b | !c", ":*", "<->", "(("] {
        p.search(store, &keyword(odd, 5)).await.unwrap();
    }
    assert_eq!(p.count(store).await.unwrap(), 2);
    p.delete_store(store).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_an_invalid_request_and_nothing_is_written() {
    let Some(db) = shared_database() else {
        return;
    };
    let p = provider_for(&db).await;
    fresh(&p, "pg-nul", 2).await;
    let err = p
        .insert(
            "pg-nul",
            vec![
                chunk("ok", "fine", vec![1.0, 0.0]),
                chunk("bad", "nul \0 here", vec![0.0, 1.0]),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert_eq!(p.count("pg-nul").await.unwrap(), 0);
    let err = p
        .insert("pg-nul", vec![chunk("nan", "x", vec![f32::NAN, 0.0])])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_keep_their_key_order_and_attributes_their_values() {
    let Some(db) = shared_database() else {
        return;
    };
    let p = provider_for(&db).await;
    fresh(&p, "pg-order", 2).await;
    let mut c = chunk("o", "ordered keys", vec![1.0, 0.0]);
    c.attributes = json!({"zeta": [1, {"b": null}], "alpha": "ünïcode", "n": 1.5})
        .as_object()
        .cloned()
        .unwrap();
    p.insert("pg-order", vec![c.clone()]).await.unwrap();
    let hit = &p
        .search("pg-order", &vector(vec![1.0, 0.0], 1))
        .await
        .unwrap()[0];
    assert_eq!(hit.document.to_string(), c.document.to_string(), "verbatim");
    assert_eq!(hit.attributes, c.attributes);
    assert_eq!(Value::Object(hit.attributes.clone())["alpha"], "ünïcode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_wider_than_the_hnsw_limit_are_searched_exactly() {
    let Some(db) = shared_database() else {
        return;
    };
    let p = provider_for(&db).await;
    fresh(&p, "pg-wide", 3072).await;
    let one_hot = |i: usize| {
        let mut v = vec![0.0; 3072];
        v[i] = 1.0;
        v
    };
    p.insert(
        "pg-wide",
        (0..5)
            .map(|i| chunk(&format!("w{i}"), "wide", one_hot(i * 100)))
            .collect(),
    )
    .await
    .unwrap();
    let hits = p.search("pg-wide", &vector(one_hot(200), 2)).await.unwrap();
    assert_eq!(hits[0].chunk_id, "w2");
    assert_eq!(hits.len(), 2);

    for dimension in [0, 16_001] {
        let err = p
            .create_store(&StoreSpec {
                store_id: "pg-impossible".into(),
                dimension,
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    }
}
