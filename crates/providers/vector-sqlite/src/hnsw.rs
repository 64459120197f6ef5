//! An HNSW graph (Malkov & Yashunin) over one store's embeddings, keyed by the chunk's SQLite
//! row id.
//!
//! Deletion marks a node as a tombstone: it keeps routing searches through its links but is
//! never returned, and [`Hnsw::compacted`] rebuilds the graph without tombstones once they
//! pile up. Row ids are never reused (AUTOINCREMENT), so a replaced chunk is a tombstone plus
//! a new node, and comparing row-id sets is enough to reconcile the graph with the database.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

use crate::distance::l2_squared;

/// "No node", as an entry point or in serialized form.
pub(crate) const NO_NODE: u32 = u32::MAX;
/// Levels above this are never drawn; with M ≥ 4 reaching it needs ~10^9 nodes anyway.
const MAX_LEVEL: usize = 16;
/// An `expires_at` that never comes.
pub(crate) const NEVER: i64 = i64::MAX;

/// Build parameters, fixed for a graph's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per node on upper layers; layer 0 keeps twice as many.
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
}

/// A candidate: squared distance and node.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}
impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// One bit per node, allocated per search so concurrent readers need no shared scratch space.
struct Visited(Vec<u64>);

impl Visited {
    fn new(nodes: usize) -> Self {
        Visited(vec![0; nodes.div_ceil(64)])
    }
    /// Marks `node`, returning whether it was unmarked.
    #[inline]
    fn insert(&mut self, node: u32) -> bool {
        let (word, bit) = (node as usize / 64, 1u64 << (node % 64));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

/// The graph. Field layout is what [`crate::index_file`] writes.
#[derive(Debug, Clone)]
pub struct Hnsw {
    pub(crate) dimension: usize,
    pub(crate) params: HnswParams,
    /// Node-major, `dimension` floats each.
    pub(crate) vectors: Vec<f32>,
    pub(crate) rowids: Vec<i64>,
    pub(crate) expires: Vec<i64>,
    pub(crate) deleted: Vec<bool>,
    pub(crate) levels: Vec<u8>,
    /// Per node `2m + 1` slots: the link count, then the links.
    pub(crate) layer0: Vec<u32>,
    /// Per node, for each level 1..=level: `m + 1` slots, count then links.
    pub(crate) upper: Vec<Vec<u32>>,
    pub(crate) entry: u32,
    pub(crate) max_level: usize,
    by_rowid: HashMap<i64, u32>,
    live: usize,
    rng: u64,
}

impl Hnsw {
    pub fn new(dimension: usize, params: HnswParams) -> Self {
        Hnsw {
            dimension,
            params,
            vectors: Vec::new(),
            rowids: Vec::new(),
            expires: Vec::new(),
            deleted: Vec::new(),
            levels: Vec::new(),
            layer0: Vec::new(),
            upper: Vec::new(),
            entry: NO_NODE,
            max_level: 0,
            by_rowid: HashMap::new(),
            live: 0,
            rng: 0x2545_F491_4F6C_DD1D,
        }
    }

    /// Rebuilds the derived lookups after the stored fields were filled in by a loader.
    pub(crate) fn finish_loading(&mut self) {
        self.by_rowid = self
            .rowids
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .map(|(i, &r)| (r, i as u32))
            .collect();
        self.live = self.by_rowid.len();
        self.rng ^= self.rowids.len() as u64;
    }

    pub(crate) fn layer0_slots(&self) -> usize {
        2 * self.params.m + 1
    }

    pub(crate) fn upper_slots(&self) -> usize {
        self.params.m + 1
    }

    /// Nodes including tombstones.
    pub fn node_count(&self) -> usize {
        self.rowids.len()
    }

    /// Nodes that are not tombstones (expired ones included).
    pub fn live_count(&self) -> usize {
        self.live
    }

    pub fn tombstone_count(&self) -> usize {
        self.node_count() - self.live
    }

    pub fn contains(&self, rowid: i64) -> bool {
        self.by_rowid.contains_key(&rowid)
    }

    /// Row ids of all live nodes.
    pub fn live_rowids(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_rowid.keys().copied()
    }

    fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dimension;
        &self.vectors[start..start + self.dimension]
    }

    fn distance(&self, query: &[f32], node: u32) -> f32 {
        l2_squared(query, self.vector(node))
    }

    /// Squared distance from `query` to the live node of `rowid`.
    pub fn distance_to(&self, rowid: i64, query: &[f32]) -> Option<f32> {
        self.by_rowid.get(&rowid).map(|&n| self.distance(query, n))
    }

    fn links(&self, node: u32, level: usize) -> &[u32] {
        let slots = if level == 0 {
            let base = node as usize * self.layer0_slots();
            &self.layer0[base..base + self.layer0_slots()]
        } else {
            let base = (level - 1) * self.upper_slots();
            &self.upper[node as usize][base..base + self.upper_slots()]
        };
        &slots[1..1 + slots[0] as usize]
    }

    fn set_links(&mut self, node: u32, level: usize, links: &[u32]) {
        let slots = if level == 0 {
            let width = self.layer0_slots();
            let base = node as usize * width;
            &mut self.layer0[base..base + width]
        } else {
            let width = self.upper_slots();
            let base = (level - 1) * width;
            &mut self.upper[node as usize][base..base + width]
        };
        slots[0] = links.len() as u32;
        slots[1..1 + links.len()].copy_from_slice(links);
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: the level draw only needs to be geometric, not cryptographic.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let bits = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let uniform = (bits as f64 + 0.5) / (1u64 << 53) as f64;
        let level_mult = 1.0 / (self.params.m.max(2) as f64).ln();
        ((-uniform.ln() * level_mult) as usize).min(MAX_LEVEL)
    }

    /// Adds a vector. A row id that is already present is replaced (its old node becomes a
    /// tombstone). `vector` must be `dimension` long.
    pub fn insert(&mut self, rowid: i64, vector: &[f32], expires_at: Option<i64>) {
        assert_eq!(vector.len(), self.dimension, "checked by the caller");
        self.remove(rowid);
        let level = self.random_level();
        let node = self.rowids.len() as u32;
        self.vectors.extend_from_slice(vector);
        self.rowids.push(rowid);
        self.expires.push(expires_at.unwrap_or(NEVER));
        self.deleted.push(false);
        self.levels.push(level as u8);
        self.layer0
            .extend(std::iter::repeat_n(0, self.layer0_slots()));
        self.upper.push(vec![0; level * self.upper_slots()]);
        self.by_rowid.insert(rowid, node);
        self.live += 1;

        if self.entry == NO_NODE {
            self.entry = node;
            self.max_level = level;
            return;
        }
        let query = vector;
        let mut nearest = Near(self.distance(query, self.entry), self.entry);
        for lc in (level + 1..=self.max_level).rev() {
            nearest = self.greedy(query, nearest, lc);
        }
        let mut entry_points = vec![nearest];
        for lc in (0..=level.min(self.max_level)).rev() {
            let found = self.search_layer(
                query,
                &entry_points,
                self.params.ef_construction,
                lc,
                |_| true,
            );
            let chosen = self.select_neighbours(&found, self.params.m);
            self.set_links(node, lc, &chosen);
            let capacity = if lc == 0 {
                2 * self.params.m
            } else {
                self.params.m
            };
            for &neighbour in &chosen {
                self.link_back(neighbour, node, lc, capacity);
            }
            entry_points = found;
        }
        if level > self.max_level {
            self.max_level = level;
            self.entry = node;
        }
    }

    /// Adds `node` to `neighbour`'s links at `level`, pruning with the heuristic when full.
    fn link_back(&mut self, neighbour: u32, node: u32, level: usize, capacity: usize) {
        let mut links = self.links(neighbour, level).to_vec();
        if links.len() < capacity {
            links.push(node);
        } else {
            let base = self.vector(neighbour);
            let mut candidates: Vec<Near> = links
                .iter()
                .chain(std::iter::once(&node))
                .map(|&n| Near(l2_squared(base, self.vector(n)), n))
                .collect();
            candidates.sort_unstable();
            links = self.select_neighbours(&candidates, capacity);
        }
        self.set_links(neighbour, level, &links);
    }

    /// The neighbour-selection heuristic: keep a candidate only when it is closer to the new
    /// node than to every neighbour already kept, which spreads links across directions and
    /// keeps clustered data navigable. `candidates` are sorted nearest first.
    fn select_neighbours(&self, candidates: &[Near], m: usize) -> Vec<u32> {
        if candidates.len() <= m {
            return candidates.iter().map(|c| c.1).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for candidate in candidates {
            if kept.len() >= m {
                break;
            }
            let vector = self.vector(candidate.1);
            if kept.iter().all(|&k| self.distance(vector, k) > candidate.0) {
                kept.push(candidate.1);
            }
        }
        kept
    }

    fn greedy(&self, query: &[f32], mut nearest: Near, level: usize) -> Near {
        loop {
            let mut moved = false;
            for &n in self.links(nearest.1, level) {
                let d = self.distance(query, n);
                if d < nearest.0 {
                    nearest = Near(d, n);
                    moved = true;
                }
            }
            if !moved {
                return nearest;
            }
        }
    }

    /// Best-first search of one layer. Every node routes the search; only nodes passing
    /// `accept` enter the result, which holds up to `ef` nodes, nearest first.
    fn search_layer(
        &self,
        query: &[f32],
        entry_points: &[Near],
        ef: usize,
        level: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Near> {
        let mut visited = Visited::new(self.node_count());
        let mut candidates: BinaryHeap<Reverse<Near>> = BinaryHeap::new();
        let mut results: BinaryHeap<Near> = BinaryHeap::new();
        for &ep in entry_points {
            if visited.insert(ep.1) {
                candidates.push(Reverse(ep));
                if accept(ep.1) {
                    results.push(ep);
                }
            }
        }
        while results.len() > ef {
            results.pop();
        }
        let mut bound = bound_of(&results, ef);
        while let Some(Reverse(current)) = candidates.pop() {
            if current.0 > bound {
                break;
            }
            for &n in self.links(current.1, level) {
                if !visited.insert(n) {
                    continue;
                }
                let d = self.distance(query, n);
                if d < bound {
                    candidates.push(Reverse(Near(d, n)));
                    if accept(n) {
                        results.push(Near(d, n));
                        if results.len() > ef {
                            results.pop();
                        }
                        bound = bound_of(&results, ef);
                    }
                }
            }
        }
        results.into_sorted_vec()
    }

    /// The `k` nearest live, unexpired nodes as (squared distance, row id), nearest first.
    /// Fewer than `k` means the search reached every such node it could.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, now: i64) -> Vec<(f32, i64)> {
        if self.entry == NO_NODE || k == 0 {
            return Vec::new();
        }
        let mut nearest = Near(self.distance(query, self.entry), self.entry);
        for level in (1..=self.max_level).rev() {
            nearest = self.greedy(query, nearest, level);
        }
        let accept = |n: u32| !self.deleted[n as usize] && self.expires[n as usize] > now;
        let mut found = self.search_layer(query, &[nearest], ef.max(k), 0, accept);
        found.truncate(k);
        found
            .into_iter()
            .map(|Near(d, n)| (d, self.rowids[n as usize]))
            .collect()
    }

    /// Makes the node of `rowid` a tombstone. Returns whether it was live.
    pub fn remove(&mut self, rowid: i64) -> bool {
        match self.by_rowid.remove(&rowid) {
            Some(node) => {
                self.deleted[node as usize] = true;
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// A new graph holding only the live nodes.
    pub fn compacted(&self) -> Hnsw {
        let mut fresh = Hnsw::new(self.dimension, self.params);
        fresh.rng = self.rng;
        for node in 0..self.node_count() {
            if !self.deleted[node] {
                let expires = self.expires[node];
                fresh.insert(
                    self.rowids[node],
                    self.vector(node as u32),
                    (expires != NEVER).then_some(expires),
                );
            }
        }
        fresh
    }
}

/// The distance a new candidate must beat: the worst result once `ef` are held.
fn bound_of(results: &BinaryHeap<Near>, ef: usize) -> f32 {
    if results.len() < ef {
        f32::INFINITY
    } else {
        results.peek().map_or(f32::INFINITY, |w| w.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    fn exact(data: &[Vec<f32>], q: &[f32], k: usize, skip: &[usize]) -> Vec<i64> {
        let mut all: Vec<(f32, i64)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(i, v)| (l2_squared(q, v), i as i64))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0));
        all.into_iter().take(k).map(|x| x.1).collect()
    }

    fn recall(graph: &Hnsw, data: &[Vec<f32>], queries: &[Vec<f32>], skip: &[usize]) -> f64 {
        let mut hits = 0;
        for q in queries {
            let want = exact(data, q, 10, skip);
            let got: Vec<i64> = graph
                .search(q, 10, 64, 0)
                .into_iter()
                .map(|x| x.1)
                .collect();
            hits += got.iter().filter(|r| want.contains(r)).count();
        }
        hits as f64 / (10 * queries.len()) as f64
    }

    fn build(data: &[Vec<f32>]) -> Hnsw {
        let mut graph = Hnsw::new(
            data[0].len(),
            HnswParams {
                m: 12,
                ef_construction: 100,
            },
        );
        for (i, v) in data.iter().enumerate() {
            graph.insert(i as i64, v, None);
        }
        graph
    }

    #[test]
    fn search_matches_exact_search() {
        let data = points(2000, 24, 1);
        let graph = build(&data);
        let queries = points(50, 24, 2);
        let r = recall(&graph, &data, &queries, &[]);
        assert!(r >= 0.95, "recall {r}");
        let (d, rowid) = graph.search(&data[77], 1, 16, 0)[0];
        assert_eq!(rowid, 77);
        assert_eq!(d, 0.0);
    }

    #[test]
    fn tombstones_and_expiry_are_skipped_and_compaction_drops_them() {
        let data = points(600, 8, 3);
        let mut graph = build(&data);
        let removed: Vec<usize> = (0..600).step_by(3).collect();
        for &i in &removed {
            assert!(graph.remove(i as i64));
        }
        assert!(!graph.remove(0), "already removed");
        assert_eq!(graph.live_count(), 400);
        let queries = points(20, 8, 4);
        for q in &queries {
            let got = graph.search(q, 10, 32, 0);
            assert!(got.iter().all(|(_, r)| *r % 3 != 0), "tombstone returned");
        }
        assert!(recall(&graph, &data, &queries, &removed) >= 0.9);

        let compact = graph.compacted();
        assert_eq!(compact.node_count(), 400);
        assert_eq!(compact.tombstone_count(), 0);
        assert!(recall(&compact, &data, &queries, &removed) >= 0.9);

        let mut expiring = Hnsw::new(2, graph.params);
        expiring.insert(1, &[0.0, 0.0], Some(100));
        expiring.insert(2, &[1.0, 0.0], None);
        let at = |now| -> Vec<i64> {
            expiring
                .search(&[0.0, 0.0], 5, 8, now)
                .into_iter()
                .map(|x| x.1)
                .collect()
        };
        assert_eq!(at(99), [1, 2]);
        assert_eq!(at(100), [2]);
    }

    #[test]
    fn reinserting_a_rowid_replaces_its_vector() {
        let mut graph = build(&points(50, 4, 5));
        graph.insert(7, &[9.0, 9.0, 9.0, 9.0], None);
        assert_eq!(graph.live_count(), 50);
        assert_eq!(graph.search(&[9.0, 9.0, 9.0, 9.0], 1, 8, 0)[0], (0.0, 7));
    }

    #[test]
    fn small_graphs_return_everything_when_k_is_large() {
        let data = points(30, 4, 6);
        let graph = build(&data);
        assert_eq!(graph.search(&data[0], 100, 8, 0).len(), 30);
    }
}
