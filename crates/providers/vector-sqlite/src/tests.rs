//! Provider behaviour the shared conformance suite cannot see: how the graph file and the
//! database are reconciled, compaction, the exact fallback, keyword pruning and registration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llama_stack_core::Api;
use llama_stack_memory::{
    vector_io::ChunkSelector, vector_io::Filter, vector_io::StoreSpec, vector_io::VectorIoProvider,
};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry};
use llama_stack_vector_conformance::data::{
    ClusteredVectors, chunk, exact_top_k, filtered, ids, keyword_query, vector_query,
    with_attributes,
};
use serde_json::json;

use super::*;

const DIM: usize = 24;

fn config(dir: &Path) -> SqliteVecConfig {
    SqliteVecConfig {
        db_path: Some(dir.join("vec.db").display().to_string()),
        ..SqliteVecConfig::default()
    }
}

fn index_file(dir: &Path) -> PathBuf {
    // The only store of these tests is the first one created: key 1.
    dir.join("vec.db.hnsw").join("store-1.hnsw")
}

async fn open(dir: &Path) -> SqliteVecProvider {
    SqliteVecProvider::open(&config(dir), None).await.unwrap()
}

/// A store "s" holding `n` chunks `c0..` with clustered vectors; returns the vectors.
async fn filled(p: &SqliteVecProvider, n: usize) -> Vec<Vec<f32>> {
    p.create_store(&StoreSpec {
        store_id: "s".into(),
        dimension: DIM,
    })
    .await
    .unwrap();
    let vectors = ClusteredVectors::new(DIM, 8, 0.6, 3).take(n);
    let chunks = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            with_attributes(
                chunk(&format!("c{i}"), &format!("text {i}"), v.clone()),
                json!({"group": i % 100}),
            )
        })
        .collect();
    p.insert("s", chunks).await.unwrap();
    vectors
}

/// Every listed chunk finds itself first.
async fn assert_found(
    p: &SqliteVecProvider,
    vectors: &[Vec<f32>],
    which: impl Iterator<Item = usize>,
) {
    for i in which {
        let hits = p
            .search("s", &vector_query(vectors[i].clone(), 1))
            .await
            .unwrap();
        assert_eq!(ids(&hits), [format!("c{i}")]);
    }
}

#[tokio::test]
async fn a_restart_loads_the_saved_graph_without_reindexing() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = {
        let p = open(dir.path()).await;
        filled(&p, 300).await
    };
    assert!(
        index_file(dir.path()).exists(),
        "saved when the provider was dropped"
    );
    let p = open(dir.path()).await;
    let index = p.index_of("s").await.unwrap();
    assert_eq!(
        index.report,
        index::OpenReport {
            from_file: true,
            added: 0,
            removed: 0
        }
    );
    assert_found(&p, &vectors, (0..300).step_by(37)).await;
}

#[tokio::test]
async fn a_lost_graph_file_is_rebuilt_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = {
        let p = open(dir.path()).await;
        filled(&p, 300).await
    };
    std::fs::remove_file(index_file(dir.path())).unwrap();
    let p = open(dir.path()).await;
    let report = p.index_of("s").await.unwrap().report;
    assert!(!report.from_file);
    assert_eq!(report.added, 300);
    assert_found(&p, &vectors, 0..300).await;
}

#[tokio::test]
async fn a_stale_graph_file_is_caught_up_with_writes_made_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.hnsw");
    let (vectors, late) = {
        let p = open(dir.path()).await;
        let vectors = filled(&p, 200).await;
        p.flush().await;
        std::fs::copy(index_file(dir.path()), &stale).unwrap();
        // Written after the save: as if the process died before the next one.
        let late = ClusteredVectors::new(DIM, 8, 0.6, 99).take(50);
        let chunks = late
            .iter()
            .enumerate()
            .map(|(i, v)| chunk(&format!("late{i}"), "late", v.clone()))
            .collect();
        p.insert("s", chunks).await.unwrap();
        let doomed = (0..20).map(|i| format!("c{i}")).collect();
        p.delete_chunks("s", &ChunkSelector::Ids(doomed))
            .await
            .unwrap();
        (vectors, late)
    };
    std::fs::copy(&stale, index_file(dir.path())).unwrap();

    let p = open(dir.path()).await;
    let report = p.index_of("s").await.unwrap().report;
    assert_eq!(
        report,
        index::OpenReport {
            from_file: true,
            added: 50,
            removed: 20
        }
    );
    assert_found(&p, &vectors, 20..200).await;
    for (i, v) in late.iter().enumerate() {
        let hits = p.search("s", &vector_query(v.clone(), 1)).await.unwrap();
        assert_eq!(ids(&hits), [format!("late{i}")]);
    }
    let near_deleted = p
        .search("s", &vector_query(vectors[3].clone(), 250))
        .await
        .unwrap();
    assert_eq!(near_deleted.len(), 230);
    assert!(!ids(&near_deleted).contains(&"c3".to_string()));
}

#[tokio::test]
async fn a_damaged_graph_file_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let vectors = {
        let p = open(dir.path()).await;
        filled(&p, 100).await
    };
    let path = index_file(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&path, bytes).unwrap();
    let p = open(dir.path()).await;
    let report = p.index_of("s").await.unwrap().report;
    assert!(!report.from_file);
    assert_found(&p, &vectors, 0..100).await;
}

#[tokio::test]
async fn deleting_a_store_removes_its_graph_file_and_orphans_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    filled(&p, 10).await;
    p.flush().await;
    assert!(index_file(dir.path()).exists());
    p.delete_store("s").await.unwrap();
    assert!(!index_file(dir.path()).exists());
    drop(p);

    let orphan = dir.path().join("vec.db.hnsw").join("store-77.hnsw");
    std::fs::write(&orphan, b"left over").unwrap();
    let _p = open(dir.path()).await;
    assert!(!orphan.exists());
}

#[tokio::test]
async fn many_deletions_compact_the_graph_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    let vectors = filled(&p, 400).await;
    let doomed = (0..400)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("c{i}"))
        .collect();
    assert_eq!(
        p.delete_chunks("s", &ChunkSelector::Ids(doomed))
            .await
            .unwrap(),
        200
    );
    let index = p.index_of("s").await.unwrap();
    for _ in 0..200 {
        if index.graph.read().unwrap().tombstone_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sizes = {
        let graph = index.graph.read().unwrap();
        (graph.node_count(), graph.tombstone_count())
    };
    assert_eq!(sizes, (200, 0));
    assert_found(&p, &vectors, (1..400).step_by(2)).await;
}

#[tokio::test]
async fn selective_filters_fall_back_to_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    let vectors = filled(&p, 2000).await;
    let query = ClusteredVectors::new(DIM, 8, 0.6, 5).sample();
    // group 7 holds 20 chunks scattered over every cluster: the graph's 80 nearest
    // candidates rarely contain 10 of them.
    let members: Vec<usize> = (0..2000).filter(|i| i % 100 == 7).collect();
    let data: Vec<Vec<f32>> = members.iter().map(|&i| vectors[i].clone()).collect();
    let want: Vec<String> = exact_top_k(&data, &query, 10)
        .into_iter()
        .map(|j| format!("c{}", members[j]))
        .collect();
    let request = filtered(
        vector_query(query.clone(), 10),
        json!({"type": "eq", "key": "group", "value": 7}),
    );
    let hits = p.search("s", &request).await.unwrap();
    assert_eq!(ids(&hits), want);
}

#[tokio::test]
async fn registration_validates_its_sample_and_builds_from_the_store_dir() {
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    for name in [
        PROVIDER_TYPE,
        "inline::sqlite_vec",
        "inline::faiss",
        "inline::meta-reference",
    ] {
        let spec = registry.get(name).unwrap();
        assert_eq!(
            (spec.provider_type, spec.api),
            (PROVIDER_TYPE, Api::VectorIo)
        );
    }
    let spec = registry.get(PROVIDER_TYPE).unwrap();
    let sample: serde_json::Value = serde_norway::from_str(spec.sample_config).unwrap();
    assert!((spec.validate)(&sample).is_empty());
    let issues = (spec.validate)(&json!({"hnsw_m": 2, "colour": "red"}));
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert!(
        paths.contains(&"colour") && !issues.is_empty(),
        "{issues:?}"
    );
    let issues = (spec.validate)(&json!({"hnsw_m": 2}));
    assert_eq!(issues[0].path, "hnsw_m");

    let dir = tempfile::tempdir().unwrap();
    let context = ProviderContext {
        provider_id: "faiss".into(),
        store_dir: Some(dir.path().to_path_buf()),
        registry: None,
        ..Default::default()
    };
    let built = (spec.build)(
        json!({"kvstore": {"type": "sqlite", "namespace": null}}),
        context,
    )
    .await
    .unwrap();
    let ProviderInstance::VectorIo(provider) = built else {
        panic!("not a vector IO provider");
    };
    provider
        .create_store(&StoreSpec {
            store_id: "x".into(),
            dimension: 2,
        })
        .await
        .unwrap();
    assert!(dir.path().join("sqlite_vec.db").exists());
}

/// Keyword fixture chunk `i`: eight words, "the" in every chunk, "what" and "is" in a third
/// each (never both), "zebra" in 10 chunks (all with "is") and "okapi" in 3.
fn keyword_text(i: usize) -> String {
    let mut words = [
        "the", "red", "green", "blue", "gray", "pink", "gold", "teal",
    ];
    match i % 3 {
        0 => words[1] = "what",
        1 => words[2] = "is",
        _ => {}
    }
    if i % 300 == 7 {
        words[3] = "zebra";
    }
    if i % 1000 == 3 {
        words[4] = "okapi";
    }
    words.join(" ")
}

#[tokio::test]
async fn keyword_search_ranks_the_rare_words_without_ranking_every_common_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path()).await;
    p.create_store(&StoreSpec {
        store_id: "s".into(),
        dimension: 2,
    })
    .await
    .unwrap();
    let chunks = (0..3000)
        .map(|i| {
            with_attributes(
                chunk(&format!("c{i}"), &keyword_text(i), vec![1.0, i as f32]),
                json!({"group": i % 2}),
            )
        })
        .collect();
    p.insert("s", chunks).await.unwrap();
    // Every phrase ranked, for reference: a second connection to the same database.
    let db = crate::db::Database::open(&dir.path().join("vec.db"))
        .await
        .unwrap();
    let exact = async |text: &str, k: usize, filter: Option<&Filter>| {
        let query = crate::keyword::any_of(&crate::keyword::phrases(text));
        let hits = db.ranked(1, &query, 0, k, filter).await.unwrap();
        let ids: Vec<String> = hits.iter().map(|h| h.0.chunk_id.clone()).collect();
        (ids, hits.iter().map(|h| h.1 as f32).collect::<Vec<_>>())
    };

    // 3000 chunks match the common words, 10 "zebra": only the rarer words are ranked. The
    // top 5 are the exact ones, scored without "is" (in every zebra chunk, left out).
    let question = "What is the zebra?";
    let hits = p.search("s", &keyword_query(question, 5)).await.unwrap();
    let (want, exact_scores) = exact(question, 5, None).await;
    assert_eq!(ids(&hits), want);
    for (hit, exact) in hits.iter().zip(&exact_scores) {
        assert!(hit.score > 0.0 && hit.score < *exact - 0.5, "{hits:?}");
    }

    // Three "okapi" chunks cannot fill k = 5: a second pass ranks every word but "the" (in
    // every chunk, worth ~0), so the rest are filled and scored as the exact ranking does.
    let hits = p
        .search("s", &keyword_query("what is the okapi", 5))
        .await
        .unwrap();
    let (want, exact_scores) = exact("what is the okapi", 5, None).await;
    assert_eq!(ids(&hits)[..3], ["c3", "c1003", "c2003"]);
    assert_eq!(ids(&hits), want);
    for (hit, exact) in hits.iter().zip(&exact_scores) {
        assert!((hit.score - exact).abs() < 1e-4, "{hits:?}");
    }

    // No zebra chunk is in group 0: "what" and "is" chunks fill the top k, in a second pass
    // that ranks both.
    let group_0 = json!({"type": "eq", "key": "group", "value": 0});
    let request = filtered(keyword_query(question, 4), group_0);
    let hits = p.search("s", &request).await.unwrap();
    let (want, _) = exact(question, 4, request.filter.as_ref()).await;
    assert_eq!(ids(&hits), want);

    // Writes count at once: a chunk saying "zebra" three times comes first, then goes.
    let loud = chunk("loud", "zebra zebra zebra what", vec![0.0, 1.0]);
    p.insert("s", vec![loud]).await.unwrap();
    let hits = p.search("s", &keyword_query(question, 2)).await.unwrap();
    assert_eq!(ids(&hits), ["loud", "c7"]);
    p.delete_chunks("s", &ChunkSelector::Ids(vec!["loud".into()]))
        .await
        .unwrap();
    let hits = p.search("s", &keyword_query(question, 2)).await.unwrap();
    assert_eq!(ids(&hits), ["c7", "c307"]);
}
