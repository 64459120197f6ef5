//! Test data shared by the checks and the benchmark: chunk builders, a seeded generator of
//! clustered unit vectors (shaped like sentence embeddings) and exact nearest-neighbour search
//! to measure recall against.

use std::time::{SystemTime, UNIX_EPOCH};

use llama_stack_memory::{
    vector_io::Filter, vector_io::ScoredChunk, vector_io::SearchMode, vector_io::SearchRequest,
    vector_io::StoredChunk,
};
use serde_json::{Map, Value, json};

/// A chunk with a document shaped like the stack's (`content`, `metadata`, `chunk_id`), no
/// attributes, no file and no expiry.
pub fn chunk(id: &str, text: &str, embedding: Vec<f32>) -> StoredChunk {
    StoredChunk {
        chunk_id: id.to_string(),
        text: text.to_string(),
        document: json!({"content": text, "metadata": {"document_id": id}, "chunk_id": id}),
        attributes: Map::new(),
        embedding,
        file_id: None,
        expires_at: None,
    }
}

/// `chunk` with filterable attributes (an object literal).
pub fn with_attributes(mut chunk: StoredChunk, attributes: Value) -> StoredChunk {
    chunk.attributes = attributes
        .as_object()
        .cloned()
        .expect("attributes are a JSON object");
    chunk
}

/// `chunk` belonging to a vector store file.
pub fn with_file(mut chunk: StoredChunk, file_id: &str) -> StoredChunk {
    chunk.file_id = Some(file_id.to_string());
    chunk
}

/// A `dimension`-long vector with 1.0 at `hot` and 0.0 elsewhere.
pub fn one_hot(dimension: usize, hot: usize) -> Vec<f32> {
    let mut v = vec![0.0; dimension];
    v[hot % dimension] = 1.0;
    v
}

/// A vector search for the `k` nearest chunks to `embedding`.
pub fn vector_query(embedding: Vec<f32>, k: usize) -> SearchRequest {
    SearchRequest {
        mode: SearchMode::Vector,
        embedding: Some(embedding),
        text: String::new(),
        k,
        filter: None,
    }
}

/// A keyword search for `text`.
pub fn keyword_query(text: &str, k: usize) -> SearchRequest {
    SearchRequest {
        mode: SearchMode::Keyword,
        embedding: None,
        text: text.to_string(),
        k,
        filter: None,
    }
}

/// The same request restricted by a filter given as OpenAI filter JSON.
pub fn filtered(mut request: SearchRequest, filter: Value) -> SearchRequest {
    request.filter = Some(Filter::parse(&filter, "filters").expect("a valid test filter"));
    request
}

/// The chunk ids of search hits, best first.
pub fn ids(hits: &[ScoredChunk]) -> Vec<String> {
    hits.iter().map(|h| h.chunk_id.clone()).collect()
}

/// Unix seconds now.
pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Euclidean distance.
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The score the trait prescribes for vector search: 1 / L2 distance, floored at 1e-6.
pub fn expected_score(a: &[f32], b: &[f32]) -> f32 {
    1.0 / l2(a, b).max(1e-6)
}

/// Indices of the `k` nearest `data` rows to `query` by brute force, nearest first.
pub fn exact_top_k(data: &[Vec<f32>], query: &[f32], k: usize) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let d: f32 = v.iter().zip(query).map(|(x, y)| (x - y) * (x - y)).sum();
            (d, i)
        })
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| a.0.total_cmp(&b.0));
    scored.truncate(k);
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// A small deterministic generator (SplitMix64), so every run and every provider sees the same
/// data without pulling a random-number crate into the suite.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// Unit vectors drawn from a Gaussian mixture: like real sentence embeddings they crowd
/// around topics instead of spreading uniformly, which is what makes ANN recall non-trivial.
#[derive(Debug, Clone)]
pub struct ClusteredVectors {
    dimension: usize,
    centers: Vec<Vec<f32>>,
    /// Noise norm relative to the (unit) centre norm.
    spread: f32,
    rng: SeededRng,
}

impl ClusteredVectors {
    /// `clusters` random unit centres; points are centre + Gaussian noise of norm ≈ `spread`,
    /// normalized.
    pub fn new(dimension: usize, clusters: usize, spread: f32, seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let centers = (0..clusters.max(1))
            .map(|_| normalized((0..dimension).map(|_| rng.gaussian()).collect()))
            .collect();
        ClusteredVectors {
            dimension,
            centers,
            spread,
            rng,
        }
    }

    /// The next vector.
    pub fn sample(&mut self) -> Vec<f32> {
        let center = &self.centers[self.rng.below(self.centers.len())];
        let scale = self.spread / (self.dimension as f32).sqrt();
        let point = center
            .iter()
            .map(|c| c + self.rng.gaussian() * scale)
            .collect();
        normalized(point)
    }

    /// The next `n` vectors.
    pub fn take(&mut self, n: usize) -> Vec<Vec<f32>> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// `v` scaled to unit length (unchanged when zero).
pub fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_and_unit_length() {
        let a = ClusteredVectors::new(16, 4, 0.5, 7).take(3);
        let b = ClusteredVectors::new(16, 4, 0.5, 7).take(3);
        assert_eq!(a, b);
        for v in &a {
            let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn exact_top_k_orders_by_distance() {
        let data = vec![vec![0.0, 0.0], vec![3.0, 0.0], vec![1.0, 0.0]];
        assert_eq!(exact_top_k(&data, &[0.9, 0.0], 2), vec![2, 0]);
        assert_eq!(exact_top_k(&data, &[0.0, 0.0], 10).len(), 3);
    }
}
