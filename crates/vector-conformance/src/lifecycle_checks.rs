//! Checks of what changes stored state: replacing, deleting, expiry, store lifecycle,
//! restarts, isolation between stores and all-or-nothing inserts.

use std::collections::BTreeSet;

use serde_json::json;

use llama_stack_core::ErrorKind;
use llama_stack_memory::vector_io::{ChunkSelector, StoreSpec};

use crate::data::{
    ClusteredVectors, chunk, ids, keyword_query, now_seconds, one_hot, vector_query, with_file,
};
use crate::{Harness, expect_error, fresh_store, must};

fn set(ids: Vec<String>) -> BTreeSet<String> {
    ids.into_iter().collect()
}

/// Inserting a chunk id that exists replaces the chunk: one chunk counted, the new document
/// and embedding searched, the old text no longer matched.
pub async fn check_insert_replaces_existing_chunk_id(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-replace", 4).await;
    must(
        p.insert(
            "conf-replace",
            vec![
                chunk("a", "alpha original zephyr", one_hot(4, 0)),
                chunk("b", "beta neighbour", one_hot(4, 2)),
            ],
        )
        .await,
        "first insert",
    );
    let replacement = chunk("a", "alpha replacement quasar", one_hot(4, 1));
    must(
        p.insert("conf-replace", vec![replacement.clone()]).await,
        "replacing insert",
    );
    assert_eq!(must(p.count("conf-replace").await, "count"), 2);

    let hits = must(
        p.search("conf-replace", &vector_query(one_hot(4, 1), 5))
            .await,
        "vector search",
    );
    assert_eq!(ids(&hits), ["a", "b"], "one `a`, found at its new vector");
    assert_eq!(hits[0].document, replacement.document, "the new document");
    assert!(hits[0].score >= 1e5, "distance 0 to the new vector");

    let old = must(
        p.search("conf-replace", &keyword_query("zephyr", 5)).await,
        "keyword search",
    );
    assert!(old.is_empty(), "old text is gone: {old:?}");
    let new = must(
        p.search("conf-replace", &keyword_query("quasar", 5)).await,
        "keyword search",
    );
    assert_eq!(ids(&new), ["a"]);
}

/// delete_chunks by ids and by file deletes exactly those chunks from both search modes and
/// the count, and reports how many existed.
pub async fn check_delete_chunks_by_ids_and_by_file(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-delete", 8).await;
    let layout = [
        ("a1", Some("f1")),
        ("a2", Some("f1")),
        ("a3", Some("f1")),
        ("b1", Some("f2")),
        ("b2", Some("f2")),
        ("c1", None),
    ];
    let chunks = layout
        .iter()
        .enumerate()
        .map(|(i, (id, file))| {
            let c = chunk(id, &format!("shared words {id}"), one_hot(8, i));
            match file {
                Some(f) => with_file(c, f),
                None => c,
            }
        })
        .collect();
    must(p.insert("conf-delete", chunks).await, "insert");

    let by_ids = ChunkSelector::Ids(vec!["c1".into(), "missing".into()]);
    assert_eq!(
        must(
            p.delete_chunks("conf-delete", &by_ids).await,
            "delete by ids"
        ),
        1,
        "one of the two ids existed"
    );
    let by_file = ChunkSelector::File("f1".into());
    assert_eq!(
        must(
            p.delete_chunks("conf-delete", &by_file).await,
            "delete by file"
        ),
        3
    );
    assert_eq!(must(p.count("conf-delete").await, "count"), 2);

    let left = set(vec!["b1".into(), "b2".into()]);
    let vector = must(
        p.search("conf-delete", &vector_query(one_hot(8, 0), 10))
            .await,
        "vector search",
    );
    assert_eq!(set(ids(&vector)), left);
    let keyword = must(
        p.search("conf-delete", &keyword_query("shared", 10)).await,
        "keyword search",
    );
    assert_eq!(set(ids(&keyword)), left);

    assert_eq!(
        must(
            p.delete_chunks("conf-delete", &by_file).await,
            "delete again"
        ),
        0,
        "nothing left in f1"
    );
    assert_eq!(
        must(
            p.delete_chunks("conf-delete", &by_ids).await,
            "delete again"
        ),
        0
    );
}

/// delete_store removes the store and its chunks: searching it is not found, deleting it
/// again is fine, and a new store under the same id starts empty, even with another dimension.
pub async fn check_delete_store_removes_everything(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-drop", 4).await;
    must(
        p.insert("conf-drop", vec![chunk("x", "doomed words", one_hot(4, 0))])
            .await,
        "insert",
    );
    must(p.delete_store("conf-drop").await, "delete_store");
    expect_error(
        p.search("conf-drop", &vector_query(one_hot(4, 0), 3)).await,
        ErrorKind::NotFound,
        "vector search of a deleted store",
    );
    expect_error(
        p.search("conf-drop", &keyword_query("doomed", 3)).await,
        ErrorKind::NotFound,
        "keyword search of a deleted store",
    );
    must(
        p.delete_store("conf-drop").await,
        "deleting a missing store",
    );

    must(
        p.create_store(&StoreSpec {
            store_id: "conf-drop".into(),
            dimension: 6,
        })
        .await,
        "re-creating with another dimension",
    );
    assert_eq!(must(p.count("conf-drop").await, "count"), 0);
    let hits = must(
        p.search("conf-drop", &keyword_query("doomed", 3)).await,
        "keyword search",
    );
    assert!(hits.is_empty(), "nothing survives from the old store");
}

/// Every operation on a store that was never created is not found.
pub async fn check_unknown_store_is_not_found(h: &dyn Harness) {
    let p = h.open().await;
    must(
        p.delete_store("conf-never").await,
        "deleting a missing store",
    );
    expect_error(
        p.search("conf-never", &vector_query(one_hot(4, 0), 3))
            .await,
        ErrorKind::NotFound,
        "vector search of an unknown store",
    );
    expect_error(
        p.search("conf-never", &keyword_query("anything", 3)).await,
        ErrorKind::NotFound,
        "keyword search of an unknown store",
    );
    expect_error(
        p.insert("conf-never", vec![chunk("a", "text", one_hot(4, 0))])
            .await,
        ErrorKind::NotFound,
        "insert into an unknown store",
    );
    expect_error(
        p.count("conf-never").await,
        ErrorKind::NotFound,
        "count of an unknown store",
    );
}

/// Creating an existing store again with its dimension keeps its chunks; with another
/// dimension it is an invalid request and the store is unchanged.
pub async fn check_create_store_with_other_dimension_is_invalid(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-dims", 4).await;
    must(
        p.insert("conf-dims", vec![chunk("a", "text", one_hot(4, 0))])
            .await,
        "insert",
    );
    let same = StoreSpec {
        store_id: "conf-dims".into(),
        dimension: 4,
    };
    must(
        p.create_store(&same).await,
        "re-creating with the same dimension",
    );
    assert_eq!(must(p.count("conf-dims").await, "count"), 1, "chunks kept");

    let other = StoreSpec {
        store_id: "conf-dims".into(),
        dimension: 8,
    };
    expect_error(
        p.create_store(&other).await,
        ErrorKind::InvalidRequest,
        "creating an existing 4-dimension store with dimension 8",
    );
    must(
        p.insert("conf-dims", vec![chunk("b", "text", one_hot(4, 1))])
            .await,
        "4-long embeddings still accepted",
    );
    assert_eq!(must(p.count("conf-dims").await, "count"), 2);
}

/// Chunks whose `expires_at` has passed are neither returned by either mode nor counted.
pub async fn check_expired_chunks_are_hidden(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-expiry", 4).await;
    let now = now_seconds();
    let mut old = chunk("old", "expired lapsed words", one_hot(4, 0));
    old.expires_at = Some(now - 60);
    let mut fresh = chunk("fresh", "current words", one_hot(4, 1));
    fresh.expires_at = Some(now + 3600);
    let forever = chunk("forever", "lasting words", one_hot(4, 2));
    must(
        p.insert("conf-expiry", vec![old, fresh, forever]).await,
        "insert",
    );

    assert_eq!(must(p.count("conf-expiry").await, "count"), 2);
    let near_old = must(
        p.search("conf-expiry", &vector_query(one_hot(4, 0), 10))
            .await,
        "vector search",
    );
    assert_eq!(
        set(ids(&near_old)),
        set(vec!["fresh".into(), "forever".into()])
    );
    let lapsed = must(
        p.search("conf-expiry", &keyword_query("lapsed", 10)).await,
        "keyword search",
    );
    assert!(lapsed.is_empty(), "{lapsed:?}");
    let words = must(
        p.search("conf-expiry", &keyword_query("words", 10)).await,
        "keyword search",
    );
    assert_eq!(
        set(ids(&words)),
        set(vec!["fresh".into(), "forever".into()])
    );
}

/// What was inserted and deleted before a restart is exactly what is found after it.
pub async fn check_chunks_survive_restart(h: &dyn Harness) {
    let mut generator = ClusteredVectors::new(16, 4, 0.6, 5);
    let vectors = generator.take(60);
    {
        let p = h.open().await;
        fresh_store(p.as_ref(), "conf-restart", 16).await;
        let chunks = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| chunk(&format!("r{i}"), &format!("durable note{i}"), v.clone()))
            .collect();
        must(p.insert("conf-restart", chunks).await, "insert");
        must(
            p.delete_chunks("conf-restart", &ChunkSelector::Ids(vec!["r7".into()]))
                .await,
            "delete",
        );
    }

    let p = h.open().await;
    assert_eq!(
        must(p.count("conf-restart").await, "count after restart"),
        59
    );
    for i in [0, 13, 42, 59] {
        let hits = must(
            p.search("conf-restart", &vector_query(vectors[i].clone(), 1))
                .await,
            "vector search after restart",
        );
        assert_eq!(ids(&hits), [format!("r{i}")]);
    }
    let gone = must(
        p.search("conf-restart", &vector_query(vectors[7].clone(), 60))
            .await,
        "vector search after restart",
    );
    assert!(
        !ids(&gone).contains(&"r7".to_string()),
        "deleted stays deleted"
    );
    assert_eq!(gone.len(), 59);
    let words = must(
        p.search("conf-restart", &keyword_query("note13", 3)).await,
        "keyword search after restart",
    );
    assert_eq!(ids(&words).first().map(String::as_str), Some("r13"));

    // The reopened store keeps working, and a second restart sees the new write too.
    must(
        p.insert(
            "conf-restart",
            vec![chunk("late", "late note", generator.sample())],
        )
        .await,
        "insert after restart",
    );
    drop(p);
    let p = h.open().await;
    assert_eq!(must(p.count("conf-restart").await, "count"), 60);
}

/// Stores with the same chunk ids never see each other's chunks, in search, deletion or count.
pub async fn check_stores_are_isolated(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-iso-a", 4).await;
    fresh_store(p.as_ref(), "conf-iso-b", 4).await;
    fresh_store(p.as_ref(), "conf-iso-c", 8).await;
    for (store, word, dim) in [
        ("conf-iso-a", "apricot", 4),
        ("conf-iso-b", "blueberry", 4),
        ("conf-iso-c", "cherry", 8),
    ] {
        let chunks = (0..3)
            .map(|i| {
                chunk(
                    &format!("shared-{i}"),
                    &format!("{word} {i}"),
                    one_hot(dim, i),
                )
            })
            .collect();
        must(p.insert(store, chunks).await, "insert");
    }

    let hits = must(
        p.search("conf-iso-a", &vector_query(one_hot(4, 0), 10))
            .await,
        "vector search",
    );
    assert_eq!(hits.len(), 3);
    assert!(
        hits.iter().all(|h| h.document["content"]
            .as_str()
            .unwrap()
            .starts_with("apricot")),
        "{hits:?}"
    );
    let foreign = must(
        p.search("conf-iso-b", &keyword_query("apricot", 10)).await,
        "keyword search",
    );
    assert!(foreign.is_empty(), "{foreign:?}");

    must(
        p.delete_chunks("conf-iso-a", &ChunkSelector::Ids(vec!["shared-0".into()]))
            .await,
        "delete",
    );
    assert_eq!(must(p.count("conf-iso-a").await, "count"), 2);
    assert_eq!(must(p.count("conf-iso-b").await, "count"), 3);
    must(p.delete_store("conf-iso-a").await, "delete_store");
    assert_eq!(must(p.count("conf-iso-b").await, "count"), 3);
    assert_eq!(must(p.count("conf-iso-c").await, "count"), 3);
    let own = must(
        p.search("conf-iso-b", &vector_query(one_hot(4, 0), 1))
            .await,
        "vector search",
    );
    assert_eq!(own[0].document["content"], json!("blueberry 0"));
}

/// An insert that fails part-way writes nothing: an embedding of the wrong length is an
/// invalid request, and the chunks before it, including a replacement, are not applied.
pub async fn check_failed_insert_leaves_nothing(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-atomic", 4).await;
    must(
        p.insert(
            "conf-atomic",
            vec![
                chunk("keep-a", "original walrus", one_hot(4, 0)),
                chunk("keep-b", "original narwhal", one_hot(4, 1)),
            ],
        )
        .await,
        "insert",
    );

    let batch = vec![
        chunk("keep-a", "replaced pelican", one_hot(4, 3)),
        chunk("new-1", "new flamingo", one_hot(4, 2)),
        chunk("new-2", "new heron", one_hot(4, 2)),
        chunk("bad", "wrong length", vec![1.0, 0.0, 0.0]),
    ];
    expect_error(
        p.insert("conf-atomic", batch).await,
        ErrorKind::InvalidRequest,
        "a batch with a 3-long embedding in a 4-dimension store",
    );
    assert_eq!(must(p.count("conf-atomic").await, "count"), 2);
    for (word, want) in [
        ("walrus", vec!["keep-a".to_string()]),
        ("pelican", vec![]),
        ("flamingo", vec![]),
    ] {
        let hits = must(
            p.search("conf-atomic", &keyword_query(word, 5)).await,
            "keyword search",
        );
        assert_eq!(ids(&hits), want, "keyword {word}");
    }
    let near_new = must(
        p.search("conf-atomic", &vector_query(one_hot(4, 2), 5))
            .await,
        "vector search",
    );
    assert_eq!(
        set(ids(&near_new)),
        set(vec!["keep-a".into(), "keep-b".into()])
    );
    let near_replacement = must(
        p.search("conf-atomic", &vector_query(one_hot(4, 3), 1))
            .await,
        "vector search",
    );
    assert!(
        near_replacement[0].score < 1e5,
        "the replacement's vector was not stored"
    );
}
