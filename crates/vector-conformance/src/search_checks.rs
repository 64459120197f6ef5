//! Checks of what searches return: ranking, scores, `k`, keyword matching, filters, malformed
//! queries and a large batch.

use serde_json::json;

use llama_stack_core::ErrorKind;
use std::sync::Arc;

use llama_stack_memory::{
    vector_io::Filter, vector_io::SearchMode, vector_io::SearchRequest, vector_io::StoredChunk,
    vector_io::VectorIoProvider,
};

use crate::data::{
    ClusteredVectors, chunk, exact_top_k, expected_score, filtered, ids, keyword_query, one_hot,
    vector_query, with_attributes,
};
use crate::{Harness, expect_error, fresh_store, must};

/// Vector search ranks by L2 distance, nearest first, with score = 1 / distance, and returns
/// the stored document, attributes and file id unchanged.
pub async fn check_vector_search_returns_nearest_first(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-nearest", 4).await;
    let vectors = [
        ("c1", vec![1.0, 0.0, 0.0, 0.0]),
        ("c2", vec![0.0, 1.0, 0.0, 0.0]),
        ("c3", vec![0.0, 0.0, 1.0, 0.0]),
        ("c4", vec![0.7, 0.7, 0.0, 0.0]),
    ];
    let chunks = vectors
        .iter()
        .map(|(id, v)| {
            let mut c = with_attributes(
                chunk(id, &format!("text of {id}"), v.clone()),
                json!({"source": id, "rank": 3}),
            );
            c.file_id = Some(format!("file-{id}"));
            c
        })
        .collect::<Vec<_>>();
    must(p.insert("conf-nearest", chunks.clone()).await, "insert");

    let query = vec![0.9, 0.2, 0.1, 0.0];
    let hits = must(
        p.search("conf-nearest", &vector_query(query.clone(), 4))
            .await,
        "vector search",
    );
    assert_eq!(ids(&hits), ["c1", "c4", "c2", "c3"], "nearest first");
    for hit in &hits {
        let stored = chunks.iter().find(|c| c.chunk_id == hit.chunk_id).unwrap();
        let want = expected_score(&query, &stored.embedding);
        assert!(
            (hit.score - want).abs() <= want * 1e-3,
            "score of {} is {}, expected 1/L2 = {want}",
            hit.chunk_id,
            hit.score
        );
        assert_eq!(hit.document, stored.document, "document returned verbatim");
        assert_eq!(hit.attributes, stored.attributes, "attributes returned");
        assert_eq!(hit.file_id, stored.file_id, "file id returned");
    }

    // An exact match has distance 0; the floor keeps the score finite.
    let exact = must(
        p.search("conf-nearest", &vector_query(vec![0.0, 1.0, 0.0, 0.0], 1))
            .await,
        "exact-match search",
    );
    assert_eq!(ids(&exact), ["c2"]);
    assert!(
        exact[0].score.is_finite() && exact[0].score >= 1e5,
        "distance 0 scores 1/1e-6, got {}",
        exact[0].score
    );
}

/// `k` bounds the result count in both modes; fewer chunks than `k` returns them all.
pub async fn check_k_limits_results(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-k", 8).await;
    let chunks = (0..20)
        .map(|i| {
            chunk(
                &format!("k{i}"),
                &format!("common words {i}"),
                one_hot(8, i),
            )
        })
        .collect();
    must(p.insert("conf-k", chunks).await, "insert");

    for k in [1, 5, 19] {
        let hits = must(
            p.search("conf-k", &vector_query(one_hot(8, 3), k)).await,
            "vector search",
        );
        assert_eq!(hits.len(), k, "vector search with k={k}");
        let words = must(
            p.search("conf-k", &keyword_query("common", k)).await,
            "keyword search",
        );
        assert_eq!(words.len(), k, "keyword search with k={k}");
    }
    let all = must(
        p.search("conf-k", &vector_query(one_hot(8, 3), 100)).await,
        "vector search",
    );
    assert_eq!(all.len(), 20, "k above the chunk count returns every chunk");
    let none = must(
        p.search("conf-k", &vector_query(one_hot(8, 3), 0)).await,
        "vector search with k=0",
    );
    assert!(none.is_empty(), "k=0 returns nothing");
    for pair in all.windows(2) {
        assert!(pair[0].score >= pair[1].score, "scores descend");
    }
}

/// Keyword search finds the one chunk containing a rare word, ranks it first with a positive
/// score, finds nothing for an absent word, and does not fail on punctuation or operators.
pub async fn check_keyword_search_ranks_rare_word_first(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-keyword", 4).await;
    let texts = [
        ("k1", "The cat sat on the mat with the other cat."),
        ("k2", "A platypus is a mammal that lays eggs."),
        ("k3", "The dog and the cat are friends."),
        ("k4", "Mammals are animals; the cat is a mammal."),
        ("k5", "The mat is red and the dog is brown."),
    ];
    let chunks = texts
        .iter()
        .enumerate()
        .map(|(i, (id, text))| chunk(id, text, one_hot(4, i)))
        .collect();
    must(p.insert("conf-keyword", chunks).await, "insert");

    let hits = must(
        p.search("conf-keyword", &keyword_query("platypus", 5))
            .await,
        "keyword search",
    );
    assert_eq!(
        ids(&hits).first().map(String::as_str),
        Some("k2"),
        "{hits:?}"
    );
    assert!(hits[0].score > 0.0, "keyword scores are positive");

    // A natural-language question: the chunk with the rare word still ranks first.
    let question = must(
        p.search("conf-keyword", &keyword_query("Which mammal lays eggs?", 5))
            .await,
        "keyword search with a question",
    );
    assert_eq!(
        ids(&question).first().map(String::as_str),
        Some("k2"),
        "{question:?}"
    );
    for pair in question.windows(2) {
        assert!(pair[0].score >= pair[1].score, "scores descend");
    }

    let absent = must(
        p.search("conf-keyword", &keyword_query("zebra", 5)).await,
        "keyword search for an absent word",
    );
    assert!(absent.is_empty(), "{absent:?}");

    for odd in ["\"C++ AND (cat OR", "NEAR(", "*", "-dog", "?!", ""] {
        let result = p.search("conf-keyword", &keyword_query(odd, 5)).await;
        assert!(
            result.is_ok(),
            "keyword query {odd:?} must not fail: {:?}",
            result.err()
        );
    }
}

fn filter_cases() -> Vec<serde_json::Value> {
    vec![
        json!({"type": "eq", "key": "author", "value": "ann"}),
        json!({"type": "ne", "key": "author", "value": "ann"}),
        json!({"type": "gt", "key": "year", "value": 2005}),
        json!({"type": "in", "key": "author", "value": ["ann", "cy"]}),
        json!({"type": "in", "key": "tags", "value": "blue"}),
        json!({"type": "and", "filters": [
            {"type": "eq", "key": "author", "value": "bob"},
            {"type": "gt", "key": "year", "value": 2003}]}),
        json!({"type": "or", "filters": [
            {"type": "eq", "key": "author", "value": "bob"},
            {"type": "lt", "key": "year", "value": 2002}]}),
    ]
}

async fn filter_fixture(
    h: &dyn Harness,
    store: &str,
) -> (Arc<dyn VectorIoProvider>, Vec<StoredChunk>) {
    let p = h.open().await;
    fresh_store(p.as_ref(), store, 16).await;
    let authors = ["ann", "bob", "cy"];
    let mut vectors = ClusteredVectors::new(16, 3, 0.8, 11);
    let mut chunks: Vec<_> = (0..12)
        .map(|i| {
            with_attributes(
                chunk(
                    &format!("f{i}"),
                    &format!("quarterly report number {i}"),
                    vectors.sample(),
                ),
                json!({
                    "author": authors[i % 3],
                    "year": 2000 + i,
                    "tags": if i % 2 == 0 { json!(["blue", "round"]) } else { json!(["red"]) },
                }),
            )
        })
        .collect();
    // No attributes at all: passes only `ne`/`nin`.
    chunks.push(chunk(
        "bare",
        "an annual report without attributes",
        vectors.sample(),
    ));
    must(p.insert(store, chunks.clone()).await, "insert");
    (p, chunks)
}

fn matching_ids(filter: &Filter, chunks: &[StoredChunk]) -> Vec<String> {
    let mut ids: Vec<String> = chunks
        .iter()
        .filter(|c| filter.matches(&c.attributes))
        .map(|c| c.chunk_id.clone())
        .collect();
    ids.sort();
    ids
}

fn request_for(mode: SearchMode, query: &[f32], k: usize) -> SearchRequest {
    match mode {
        SearchMode::Vector => vector_query(query.to_vec(), k),
        SearchMode::Keyword => keyword_query("report", k),
    }
}

async fn check_filters(h: &dyn Harness, mode: SearchMode) {
    let store = match mode {
        SearchMode::Vector => "conf-filter-vector",
        SearchMode::Keyword => "conf-filter-keyword",
    };
    let (p, chunks) = filter_fixture(h, store).await;
    let query = one_hot(16, 1);
    for case in filter_cases() {
        let request = filtered(request_for(mode, &query, 100), case.clone());
        let hits = must(p.search(store, &request).await, "filtered search");
        let mut got = ids(&hits);
        got.sort();
        let want = matching_ids(request.filter.as_ref().unwrap(), &chunks);
        assert!(!want.is_empty(), "fixture matches {case}");
        assert_eq!(got, want, "{mode:?} search with filter {case}");
    }

    // With a small k the filter applies before the cut: k matching chunks, not k chunks of
    // which some match.
    let bob = json!({"type": "eq", "key": "author", "value": "bob"});
    let hits = must(
        p.search(store, &filtered(request_for(mode, &query, 2), bob))
            .await,
        "filtered search with k=2",
    );
    assert_eq!(hits.len(), 2, "k matching chunks returned: {hits:?}");
    assert!(hits.iter().all(|h| h.attributes["author"] == "bob"));
    if mode == SearchMode::Vector {
        let bobs: Vec<&StoredChunk> = chunks
            .iter()
            .filter(|c| c.attributes.get("author") == Some(&json!("bob")))
            .collect();
        let data: Vec<Vec<f32>> = bobs.iter().map(|c| c.embedding.clone()).collect();
        let nearest: Vec<String> = exact_top_k(&data, &query, 2)
            .into_iter()
            .map(|i| bobs[i].chunk_id.clone())
            .collect();
        assert_eq!(
            ids(&hits),
            nearest,
            "the two nearest of the matching chunks"
        );
    }
}

/// eq/ne/gt/in/and/or filters restrict vector search to exactly the matching chunks, and a
/// filtered search with a small `k` still returns the `k` nearest matching chunks.
pub async fn check_filters_restrict_vector_search(h: &dyn Harness) {
    check_filters(h, SearchMode::Vector).await;
}

/// The same filters restrict keyword search.
pub async fn check_filters_restrict_keyword_search(h: &dyn Harness) {
    check_filters(h, SearchMode::Keyword).await;
}

/// A vector search without an embedding, or with one of the wrong length, is an invalid request.
pub async fn check_malformed_vector_queries_are_invalid(h: &dyn Harness) {
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-malformed", 4).await;
    must(
        p.insert("conf-malformed", vec![chunk("m1", "text", one_hot(4, 0))])
            .await,
        "insert",
    );
    let mut no_embedding = vector_query(vec![], 3);
    no_embedding.embedding = None;
    expect_error(
        p.search("conf-malformed", &no_embedding).await,
        ErrorKind::InvalidRequest,
        "vector search without an embedding",
    );
    expect_error(
        p.search("conf-malformed", &vector_query(vec![1.0, 0.0], 3))
            .await,
        ErrorKind::InvalidRequest,
        "vector search with a 2-long embedding in a 4-dimension store",
    );
}

/// Several thousand chunks inserted in one call: all counted, each found by its own vector
/// and its own rare word, and fresh queries reach recall@10 ≥ 0.9 against exact search.
pub async fn check_batch_insert_of_thousands(h: &dyn Harness) {
    const N: usize = 3000;
    const DIM: usize = 32;
    let p = h.open().await;
    fresh_store(p.as_ref(), "conf-batch", DIM).await;
    let mut generator = ClusteredVectors::new(DIM, 24, 0.6, 42);
    let vectors = generator.take(N);
    let chunks = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            chunk(
                &format!("b{i}"),
                &format!("entry marker{i} of the batch"),
                v.clone(),
            )
        })
        .collect();
    must(p.insert("conf-batch", chunks).await, "batch insert");
    assert_eq!(must(p.count("conf-batch").await, "count"), N as u64);

    for i in (0..N).step_by(N / 25) {
        let hits = must(
            p.search("conf-batch", &vector_query(vectors[i].clone(), 1))
                .await,
            "self search",
        );
        assert_eq!(
            ids(&hits),
            [format!("b{i}")],
            "a stored vector finds itself"
        );
        let words = must(
            p.search("conf-batch", &keyword_query(&format!("marker{i}"), 3))
                .await,
            "keyword search",
        );
        assert_eq!(ids(&words).first(), Some(&format!("b{i}")));
    }

    let queries = generator.take(30);
    let mut found = 0;
    for q in &queries {
        let want: Vec<String> = exact_top_k(&vectors, q, 10)
            .into_iter()
            .map(|i| format!("b{i}"))
            .collect();
        let hits = must(
            p.search("conf-batch", &vector_query(q.clone(), 10)).await,
            "search",
        );
        assert_eq!(hits.len(), 10);
        found += ids(&hits).iter().filter(|id| want.contains(id)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    assert!(
        recall >= 0.9,
        "recall@10 against exact search is {recall:.3}"
    );
}
