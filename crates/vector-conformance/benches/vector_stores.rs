//! Vector store benchmark: insert throughput, query latency and recall@10 against exact
//! search, on clustered unit vectors shaped like sentence embeddings (fixed seed); then
//! keyword and hybrid (vector and keyword searches run together, as the stack does) query
//! latency on the same store. Chunk texts are word salads from a fixed vocabulary in which
//! "the" is in about 95% of chunks, so every keyword query (a common word plus a rarer one)
//! matches most of the store: the worst case for full-text ranking.
//!
//! `cargo bench -p llama-stack-vector-conformance --bench vector_stores`
//!
//! Environment: `BENCH_SIZES` (comma-separated chunk counts, default `10000,100000`),
//! `BENCH_QUERIES` (default 500), `BENCH_ONLY` (one provider: `sqlite-vec`, `pgvector`);
//! for `remote::pgvector`, `PGVECTOR_BENCH_URL`, `PGVECTOR_BENCH_HNSW` (see
//! [`pgvector_target`]) and `PGVECTOR_BENCH_EF_SEARCH` (see [`bench_pgvector`]). Each
//! provider is one call to [`bench_provider`]; to add one, open it in `main` under its own
//! condition and push its row.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llama_stack_memory::{
    vector_io::SearchRequest, vector_io::StoreSpec, vector_io::StoredChunk,
    vector_io::VectorIoProvider,
};
use llama_stack_provider_vector_pgvector::{PgVectorConfig, PgVectorProvider};
use llama_stack_provider_vector_sqlite::{SqliteVecConfig, SqliteVecProvider};
use llama_stack_vector_conformance::data::{
    ClusteredVectors, SeededRng, chunk, keyword_query, vector_query,
};

const DIMENSION: usize = 384;
const K: usize = 10;
const BATCH: usize = 1000;
/// Topics in the mixture, and each point's noise norm relative to its unit-length topic
/// centre: same-topic chunks sit at cosine ≈ 0.6, different topics near 0.
const CLUSTERS: usize = 100;
const SPREAD: f32 = 0.8;
const SEED: u64 = 20_250_101;

/// Common English words: each chunk draws most of its words from these.
const COMMON: &[&str] = &[
    "a", "about", "after", "all", "also", "and", "any", "are", "as", "at", "be", "because", "been",
    "but", "by", "can", "could", "data", "day", "do", "each", "even", "file", "first", "for",
    "from", "get", "give", "good", "has", "have", "he", "her", "his", "how", "if", "in", "into",
    "is", "it", "its", "just", "know", "like", "look", "make", "many", "more", "most", "new", "no",
    "not", "now", "of", "on", "one", "only", "or", "other", "our", "out", "over", "people", "say",
    "see", "she", "so", "some", "system", "take", "than", "that", "their", "them", "then", "there",
    "these", "they", "think", "this", "time", "to", "two", "up", "use", "used", "user", "very",
    "want", "way", "we", "well", "what", "when", "which", "who", "will", "with", "work", "would",
    "year", "you", "your",
];
/// Syllables of the rarer topic words (12^3 = 1728 of them, each in roughly 1 chunk of 350).
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mer", "vin", "dra", "sel", "tor", "pha", "gen", "bru", "quo", "zan",
];

fn rare_word(i: usize) -> String {
    let n = SYLLABLES.len();
    format!(
        "{}{}{}",
        SYLLABLES[i % n],
        SYLLABLES[(i / n) % n],
        SYLLABLES[(i / n / n) % n]
    )
}

/// A chunk text of 40 to 80 words: "the" (in 95% of chunks), common words and 2 rare words.
fn chunk_text(rng: &mut SeededRng) -> String {
    let rare_words = SYLLABLES.len().pow(3);
    let mut words: Vec<String> = Vec::new();
    if rng.uniform() < 0.95 {
        words.push("the".to_string());
    }
    for _ in 0..40 + rng.below(41) {
        words.push(COMMON[rng.below(COMMON.len())].to_string());
    }
    for _ in 0..2 {
        let at = rng.below(words.len() + 1);
        words.insert(at, rare_word(rng.below(rare_words)));
    }
    words.join(" ")
}

/// Keyword queries: the common "the" plus one rare word, phrased like a question.
fn keyword_text(rng: &mut SeededRng) -> String {
    format!(
        "what is the {} used for",
        rare_word(rng.below(SYLLABLES.len().pow(3)))
    )
}

/// Vectors, held-out queries from the same mixture, and each query's exact top 10; chunk
/// texts and keyword query texts.
struct Dataset {
    vectors: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
    truth: Vec<Vec<usize>>,
    texts: Vec<String>,
    keyword_queries: Vec<String>,
}

/// One line of the table.
struct Row {
    provider: String,
    n: usize,
    inserts_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    recall: f64,
    keyword: Latency,
    hybrid: Latency,
    note: String,
}

/// p50 and p99 in ms.
#[derive(Clone, Copy)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().replace('_', "").parse().ok())
                .collect()
        })
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for lane in 0..8 {
            let d = x[lane] - y[lane];
            acc[lane] += d * d;
        }
    }
    acc.iter().sum()
}

/// Exact top-k for every query, split over the machine's cores.
fn ground_truth(vectors: &[Vec<f32>], queries: &[Vec<f32>]) -> Vec<Vec<usize>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = queries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = queries
            .chunks(per_thread)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|q| {
                            let mut d: Vec<(f32, usize)> = vectors
                                .iter()
                                .enumerate()
                                .map(|(i, v)| (squared_distance(q, v), i))
                                .collect();
                            d.select_nth_unstable_by(K - 1, |a, b| a.0.total_cmp(&b.0));
                            d.truncate(K);
                            d.into_iter().map(|x| x.1).collect::<Vec<_>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("ground truth thread"))
            .collect()
    })
}

fn dataset(n: usize, queries: usize) -> Dataset {
    let mut generator = ClusteredVectors::new(DIMENSION, CLUSTERS, SPREAD, SEED);
    let vectors = generator.take(n);
    let queries = generator.take(queries);
    let truth = ground_truth(&vectors, &queries);
    let mut rng = SeededRng::new(SEED ^ 0x7e57);
    let texts = (0..n).map(|_| chunk_text(&mut rng)).collect();
    let keyword_queries = (0..queries.len()).map(|_| keyword_text(&mut rng)).collect();
    Dataset {
        vectors,
        queries,
        truth,
        texts,
        keyword_queries,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Inserts the dataset into a fresh store of `provider` in batches of 1000 precomputed
/// chunks, then runs every query once (k = 10), one at a time.
async fn bench_provider(label: &str, provider: Arc<dyn VectorIoProvider>, data: &Dataset) -> Row {
    let n = data.vectors.len();
    let store = format!("bench-{n}");
    provider.delete_store(&store).await.expect("delete_store");
    provider
        .create_store(&StoreSpec {
            store_id: store.clone(),
            dimension: DIMENSION,
        })
        .await
        .expect("create_store");
    let batches: Vec<Vec<StoredChunk>> = data
        .vectors
        .chunks(BATCH)
        .enumerate()
        .map(|(b, part)| {
            part.iter()
                .enumerate()
                .map(|(i, v)| {
                    let id = b * BATCH + i;
                    chunk(&format!("{id}"), &data.texts[id], v.clone())
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    for batch in batches {
        provider.insert(&store, batch).await.expect("insert");
    }
    let inserts_per_second = n as f64 / started.elapsed().as_secs_f64();

    let (p50_ms, p99_ms, recall) = measure_queries(provider.as_ref(), &store, data).await;
    let (keyword, hybrid) = measure_text_queries(provider.as_ref(), &store, data).await;
    eprintln!(
        "n = {n}: {label} keyword p50 {:.2} ms p99 {:.2} ms, hybrid p50 {:.2} ms p99 {:.2} ms",
        keyword.p50_ms, keyword.p99_ms, hybrid.p50_ms, hybrid.p99_ms
    );
    Row {
        provider: label.to_string(),
        n,
        inserts_per_second,
        p50_ms,
        p99_ms,
        recall,
        keyword,
        hybrid,
        note: String::new(),
    }
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    Latency {
        p50_ms: percentile(&samples, 0.5),
        p99_ms: percentile(&samples, 0.99),
    }
}

/// Keyword queries (k = 10), then hybrid ones (the vector and the keyword search of the same
/// query run together, as the stack runs them before fusing), each after 20 warm-up queries.
/// Every keyword query must find something (each rare word is in some chunk, "the" in most).
async fn measure_text_queries(
    provider: &dyn VectorIoProvider,
    store: &str,
    data: &Dataset,
) -> (Latency, Latency) {
    let requests: Vec<(SearchRequest, SearchRequest)> = data
        .queries
        .iter()
        .zip(&data.keyword_queries)
        .map(|(q, text)| (vector_query(q.clone(), K), keyword_query(text, K)))
        .collect();
    for (_, keyword) in requests.iter().take(20) {
        provider
            .search(store, keyword)
            .await
            .expect("warm-up keyword search");
    }
    let mut keyword_times = Vec::with_capacity(requests.len());
    for (_, keyword) in &requests {
        let started = Instant::now();
        let hits = provider
            .search(store, keyword)
            .await
            .expect("keyword search");
        keyword_times.push(started.elapsed());
        assert_eq!(
            hits.len(),
            K.min(data.vectors.len()),
            "keyword hits for {:?}",
            keyword.text
        );
    }
    for (vector, keyword) in requests.iter().take(20) {
        let (v, kw) = tokio::join!(
            provider.search(store, vector),
            provider.search(store, keyword)
        );
        v.expect("warm-up hybrid vector search");
        kw.expect("warm-up hybrid keyword search");
    }
    let mut hybrid_times = Vec::with_capacity(requests.len());
    for (vector, keyword) in &requests {
        let started = Instant::now();
        let (v, kw) = tokio::join!(
            provider.search(store, vector),
            provider.search(store, keyword)
        );
        hybrid_times.push(started.elapsed());
        v.expect("hybrid vector search");
        kw.expect("hybrid keyword search");
    }
    (latency(keyword_times), latency(hybrid_times))
}

/// Runs every query once (k = 10) after 20 warm-up queries: p50 and p99 latency in ms, and
/// recall@10 against the exact answers.
async fn measure_queries(
    provider: &dyn VectorIoProvider,
    store: &str,
    data: &Dataset,
) -> (f64, f64, f64) {
    for q in data.queries.iter().take(20) {
        provider
            .search(store, &vector_query(q.clone(), K))
            .await
            .expect("warm-up search");
    }
    let mut latencies = Vec::with_capacity(data.queries.len());
    let mut found = 0usize;
    for (q, truth) in data.queries.iter().zip(&data.truth) {
        let request = vector_query(q.clone(), K);
        let started = Instant::now();
        let hits = provider.search(store, &request).await.expect("search");
        latencies.push(started.elapsed());
        found += hits
            .iter()
            .filter(|h| {
                h.chunk_id
                    .parse()
                    .is_ok_and(|id: usize| truth.contains(&id))
            })
            .count();
    }
    latencies.sort();
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        found as f64 / (K * data.queries.len()) as f64,
    )
}

/// `inline::sqlite-vec` with its default tuning; also times a restart (reopening the
/// database and loading the saved graph, through the first query).
async fn bench_sqlite(data: &Dataset) -> Row {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = SqliteVecConfig {
        db_path: Some(dir.path().join("bench.db").display().to_string()),
        ..SqliteVecConfig::default()
    };
    let provider = SqliteVecProvider::open(&config, None).await.expect("open");
    let mut row = bench_provider("inline::sqlite-vec", Arc::new(provider), data).await;
    // bench_provider dropped the provider, which saved its graph on the way out.
    let started = Instant::now();
    let reopened = SqliteVecProvider::open(&config, None)
        .await
        .expect("reopen");
    let store = format!("bench-{}", data.vectors.len());
    reopened
        .search(&store, &vector_query(data.queries[0].clone(), K))
        .await
        .expect("search after restart");
    row.note = format!(
        "restart to first result {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    row
}

/// Where `remote::pgvector` runs: the server in `PGVECTOR_BENCH_URL`
/// (`postgres://user:password@host:port/db`), else a throwaway cluster when PostgreSQL and
/// pgvector are installed (scripts/setup-postgres.sh), else nowhere (the row is skipped).
/// `PGVECTOR_BENCH_HNSW=m,ef_construction,ef_search` overrides the provider's HNSW defaults.
struct PgVectorTarget {
    config: PgVectorConfig,
    _server: Option<llama_stack_pg_test_server::PgTestServer>,
}

fn pgvector_target() -> Option<PgVectorTarget> {
    let (url, server) = match std::env::var("PGVECTOR_BENCH_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            if let Err(why) = llama_stack_pg_test_server::find_installation() {
                eprintln!("remote::pgvector skipped: {why}");
                return None;
            }
            let server = llama_stack_pg_test_server::PgTestServer::builder()
                .setting("shared_buffers", "1GB")
                .setting("maintenance_work_mem", "1GB")
                .start()
                .expect("a throwaway PostgreSQL for the bench");
            let db = server.create_database("bench").expect("bench database");
            (db.url(), Some(server))
        }
    };
    // postgres://user:password@host:port/db
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let (login, place) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = login.split_once(':').unwrap_or((login, ""));
    let (address, db) = place.split_once('/').unwrap_or((place, "postgres"));
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "5432"));
    let mut config = serde_json::json!({
        "host": host, "port": port, "db": db, "user": user, "password": password,
    });
    if let Ok(hnsw) = std::env::var("PGVECTOR_BENCH_HNSW") {
        let v: Vec<i64> = hnsw
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        assert_eq!(
            v.len(),
            3,
            "PGVECTOR_BENCH_HNSW is m,ef_construction,ef_search"
        );
        config["hnsw"] = serde_json::json!({"m": v[0], "ef_construction": v[1], "ef_search": v[2]});
    }
    let config = llama_stack_core::parse_config(&config).expect("pgvector bench config");
    Some(PgVectorTarget {
        config,
        _server: server,
    })
}

/// `remote::pgvector`; also times a restart (a new connection pool through the first query).
/// With `PGVECTOR_BENCH_EF_SEARCH=40,64,...` the same index is queried again at each
/// `hnsw.ef_search`, one extra row each (the insert rate is the one measured above).
async fn bench_pgvector(target: &PgVectorTarget, data: &Dataset) -> Vec<Row> {
    let provider = PgVectorProvider::connect(&target.config)
        .await
        .expect("connect remote::pgvector");
    let mut row = bench_provider("remote::pgvector", Arc::new(provider), data).await;
    let started = Instant::now();
    let reopened = PgVectorProvider::connect(&target.config)
        .await
        .expect("reconnect remote::pgvector");
    let store = format!("bench-{}", data.vectors.len());
    reopened
        .search(&store, &vector_query(data.queries[0].clone(), K))
        .await
        .expect("search after restart");
    let hnsw = &target.config.hnsw;
    row.note = format!(
        "m={}, ef_construction={}, ef_search={}; restart to first result {:.0} ms",
        hnsw.m,
        hnsw.ef_construction,
        hnsw.ef_search,
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut rows = vec![row];
    for ef_search in env_list("PGVECTOR_BENCH_EF_SEARCH", &[]) {
        let mut config = target.config.clone();
        config.hnsw.ef_search = ef_search as i64;
        let provider = PgVectorProvider::connect(&config)
            .await
            .expect("connect remote::pgvector");
        let (p50_ms, p99_ms, recall) = measure_queries(&provider, &store, data).await;
        let (keyword, hybrid) = (rows[0].keyword, rows[0].hybrid);
        let inserts_per_second = rows[0].inserts_per_second;
        rows.push(Row {
            provider: "remote::pgvector".to_string(),
            n: data.vectors.len(),
            inserts_per_second,
            p50_ms,
            p99_ms,
            recall,
            keyword,
            hybrid,
            note: format!("same index, ef_search={ef_search}; keyword and hybrid as above"),
        });
    }
    rows
}

/// `BENCH_ONLY=<name>` runs one provider (`sqlite-vec`, `pgvector`); unset runs all.
fn wanted(provider: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only == provider)
}

fn main() {
    let sizes = env_list("BENCH_SIZES", &[10_000, 100_000]);
    let queries = env_list("BENCH_QUERIES", &[500])[0].max(K);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();
    let pgvector = if wanted("pgvector") {
        pgvector_target()
    } else {
        None
    };
    for &n in &sizes {
        let started = Instant::now();
        let data = dataset(n, queries);
        eprintln!(
            "n = {n}: data and exact answers ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        if wanted("sqlite-vec") {
            rows.push(runtime.block_on(bench_sqlite(&data)));
            eprintln!("n = {n}: inline::sqlite-vec done");
        }
        if let Some(target) = pgvector.as_ref().filter(|_| wanted("pgvector")) {
            rows.extend(runtime.block_on(bench_pgvector(target, &data)));
            eprintln!("n = {n}: remote::pgvector done");
        }
        // Further providers go here, each behind its own condition.
    }

    println!(
        "\n{DIMENSION} dimensions, {CLUSTERS}-topic Gaussian mixture, {queries} queries, k = {K}, batches of {BATCH}, {} CPU threads\n",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| provider | N | insert (chunks/s) | query p50 (ms) | query p99 (ms) | recall@10 | notes |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.3} | {} |",
            r.provider, r.n, r.inserts_per_second, r.p50_ms, r.p99_ms, r.recall, r.note
        );
    }
    println!(
        "\nKeyword and hybrid queries (\"what is the <rare word> used for\"; \"the\" is in ~95% of chunks), k = {K}\n"
    );
    println!(
        "| provider | N | keyword p50 (ms) | keyword p99 (ms) | hybrid p50 (ms) | hybrid p99 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| !r.note.starts_with("same index")) {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.provider, r.n, r.keyword.p50_ms, r.keyword.p99_ms, r.hybrid.p50_ms, r.hybrid.p99_ms
        );
    }
}
