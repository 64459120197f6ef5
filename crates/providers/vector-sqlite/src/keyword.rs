//! Keyword search planning: which words of a query FTS5 ranks, so that a question full of
//! common words ("what is the ... used for") does not make FTS5 score most of the store.
//!
//! FTS5's `bm25()` scores a chunk as a sum over the query's phrases of
//! `idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len / avg_len))`, where `f` is how often the
//! phrase occurs in the chunk. That fraction stays below `k1 + 1`, so a phrase can add at most
//! `(k1 + 1) * idf` to any chunk ([`bound`]), and for a word in most chunks that is near 0.
//! A query is first ranked on its rarest phrases only (those that match at most
//! [`RANK_BUDGET`] rows between them). A chunk that matches none of them scores below the
//! sum of the bounds of the phrases left out; when the k-th chunk found scores more than
//! that, no chunk left out can reach the top k, and FTS5 never looks at the rows that only
//! common words match. Otherwise a second pass leaves out only the common phrases whose
//! bounds sum below the k-th score found (adding phrases only raises scores, so that pass
//! settles), and when none fit the whole query is ranked as before. FTS5 computes each
//! ranked phrase's IDF by walking its whole posting list, once per query; the bounds need
//! the document frequencies of the phrases left out too, which is why [`TermStats`] caches
//! them.
//!
//! What this gives up: ranking the whole query would also return only chunks that match a
//! ranked phrase, but which of those make the top k, their order and their scores now come
//! from the ranked phrases alone; the words left out (each worth at most `(k1 + 1) * idf`,
//! little for common words) no longer count.

use std::collections::HashMap;
use std::sync::Mutex;

/// Matches (summed over phrases) up to which a query is simply ranked whole, and at most
/// what a first pass ranks (unless its rarest phrase alone matches more). Ranking costs a
/// few microseconds a row, so a first pass stays within a few milliseconds.
pub(crate) const RANK_BUDGET: i64 = 2000;

/// FTS5's bm25 constant `k1`; `(K1 + 1) * idf` bounds what one phrase adds to a score.
const K1: f64 = 1.2;

/// Relative margin for comparing our bounds with scores SQLite computed.
const MARGIN: f64 = 1e-9;

/// Phrases per query; more words add cost and hardly change a ranking.
const MAX_PHRASES: usize = 64;

/// Cached document frequencies per database, beyond which the cache starts over.
const MAX_CACHED_PHRASES: usize = 4096;

/// Each word of free text as an FTS5 phrase. Each word is quoted, so punctuation and FTS5
/// operators in user text (`AND`, `NEAR(`, `*`, `"`) are plain words, never syntax.
pub(crate) fn phrases(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_PHRASES)
        .map(|w| format!("\"{w}\""))
        .collect()
}

/// An FTS5 query matching any of `phrases`.
pub(crate) fn any_of<'a>(phrases: impl IntoIterator<Item = &'a String>) -> String {
    phrases
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// FTS5's IDF for a phrase in `df` of `rows` rows, floored as FTS5 floors it.
fn idf(rows: i64, df: i64) -> f64 {
    let idf = ((rows - df) as f64 + 0.5).ln() - (df as f64 + 0.5).ln();
    if idf <= 0.0 { 1e-6 } else { idf }
}

/// More than any chunk's score can gain from one phrase.
fn bound(rows: i64, df: i64) -> f64 {
    if df == 0 {
        0.0
    } else {
        (K1 + 1.0) * idf(rows, df)
    }
}

/// What the term statistics say about a query's phrases.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    rows: i64,
    dfs: Vec<i64>,
    /// Phrase indices, rarest first (ties by position).
    order: Vec<usize>,
}

/// One pass: the phrases FTS5 ranks, and the most that the ones left out can add up to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pass {
    pub kept: Vec<usize>,
    pub left_out_bound: f64,
}

impl Plan {
    /// `rows` in the full-text index, `dfs[i]` of them matching phrase `i`.
    pub fn new(rows: i64, dfs: Vec<i64>) -> Self {
        let mut order: Vec<usize> = (0..dfs.len()).collect();
        order.sort_by_key(|&i| (dfs[i], i));
        Plan { rows, dfs, order }
    }

    /// Keeps the `keep` rarest phrases, in query order.
    fn keeping(&self, keep: usize) -> Pass {
        let mut kept = self.order[..keep].to_vec();
        kept.sort_unstable();
        let left_out_bound = self.order[keep..]
            .iter()
            .map(|&i| bound(self.rows, self.dfs[i]))
            .sum();
        Pass {
            kept,
            left_out_bound,
        }
    }

    /// The rarest phrases that match at most [`RANK_BUDGET`] rows together (at least one);
    /// `None` when ranking the whole query costs no more than that, or nothing is left out.
    pub fn first(&self) -> Option<Pass> {
        if self.dfs.iter().sum::<i64>() <= RANK_BUDGET {
            return None;
        }
        let mut matched = 0;
        let mut keep = 0;
        for &i in &self.order {
            if keep > 0 && matched + self.dfs[i] > RANK_BUDGET {
                break;
            }
            matched += self.dfs[i];
            keep += 1;
        }
        (keep < self.dfs.len()).then(|| self.keeping(keep))
    }

    /// Whether a pass whose k-th chunk scored `kth_score` found the true top k: nothing
    /// left out can lift a chunk that matched no kept phrase to that score.
    pub fn settles(pass: &Pass, kth_score: f64) -> bool {
        kth_score > pass.left_out_bound * (1.0 + MARGIN)
    }

    /// After a pass that did not settle, with `kth_score` its k-th score (0 when it found
    /// fewer than k): leaves out only the most common phrases whose bounds sum below it, so
    /// the pass settles whatever it finds (scores only grow as phrases are added). `None`
    /// when not even the most common phrase fits: rank the whole query.
    pub fn second(&self, kth_score: f64) -> Option<Pass> {
        let mut total = 0.0;
        let mut left_out = 0;
        for &i in self.order.iter().rev() {
            total += bound(self.rows, self.dfs[i]);
            if total * (1.0 + MARGIN) >= kth_score {
                break;
            }
            left_out += 1;
        }
        (left_out > 0).then(|| self.keeping(self.dfs.len() - left_out))
    }

    #[cfg(test)]
    pub fn dfs(&self) -> &[i64] {
        &self.dfs
    }
}

/// Document frequencies of phrases, as FTS5 counts them for its IDF, cached until the
/// chunks change. Chunks are never updated in place and row ids never come back, so the
/// newest row id with the row count identifies the set of rows, and with it the index
/// (whichever process wrote it).
#[derive(Default)]
pub(crate) struct TermStats {
    cached: Mutex<Cached>,
}

/// The version is `(newest row id, row count)`.
#[derive(Default)]
struct Cached {
    version: Option<(i64, i64)>,
    dfs: HashMap<String, i64>,
}

impl TermStats {
    /// The version the cache holds, with the cached frequency of each phrase (if any).
    pub fn lookup(&self, phrases: &[String]) -> (Option<(i64, i64)>, Vec<Option<i64>>) {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        let dfs = phrases.iter().map(|p| cached.dfs.get(p).copied()).collect();
        (cached.version, dfs)
    }

    /// Records frequencies counted at `version`, dropping those of any other version.
    pub fn store(&self, version: (i64, i64), counted: impl IntoIterator<Item = (String, i64)>) {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.version != Some(version) || cached.dfs.len() > MAX_CACHED_PHRASES {
            cached.dfs.clear();
            cached.version = Some(version);
        }
        cached.dfs.extend(counted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_quote_every_word() {
        assert_eq!(any_of(&phrases("What's C++?")), r#""What" OR "s" OR "C""#);
        assert_eq!(any_of(&phrases("NEAR( a*")), r#""NEAR" OR "a""#);
        assert!(phrases(" ?! ").is_empty());
    }

    #[test]
    fn idf_and_bounds_follow_fts5() {
        assert!((idf(100, 10) - (90.5f64 / 10.5).ln()).abs() < 1e-12);
        assert_eq!(idf(100, 60), 1e-6);
        assert_eq!(bound(100, 0), 0.0);
        assert!(bound(100_000, 100) > bound(100_000, 1000));
    }

    /// 100k rows: "what" "is" "the" in 44k, 44k, 95k; one rare word in 116.
    fn question() -> Plan {
        Plan::new(100_000, vec![44_000, 44_000, 95_000, 116])
    }

    #[test]
    fn small_queries_are_ranked_whole() {
        assert!(Plan::new(5, vec![1, 2, 0]).first().is_none());
        assert!(Plan::new(100_000, vec![600, 700]).first().is_none());
    }

    #[test]
    fn the_rare_words_are_ranked_first() {
        let plan = question();
        let pass = plan.first().unwrap();
        assert_eq!(pass.kept, [3]);
        // Two words at 44% and one at 95%: about 2.2 * (0.24 + 0.24 + 0).
        assert!((pass.left_out_bound - 2.2 * 2.0 * (56_000.5f64 / 44_000.5).ln()).abs() < 1e-5);
        assert!(Plan::settles(&pass, 6.0));
        assert!(!Plan::settles(&pass, 1.0));
        // Rare words within the budget together are ranked together, in query order.
        let plan = Plan::new(100_000, vec![900, 44_000, 800, 50_000, 300]);
        assert_eq!(plan.first().unwrap().kept, [0, 2, 4]);
    }

    #[test]
    fn a_second_pass_leaves_out_only_what_fits_under_the_kth_score() {
        let plan = question();
        let first = plan.first().unwrap();
        // The 95% word's bound is ~0; one 44% word's is ~0.53.
        let second = plan.second(0.4).unwrap();
        assert_eq!(second.kept, [0, 1, 3]);
        assert!(Plan::settles(&second, 0.4));
        assert!(second.left_out_bound < first.left_out_bound);
        let second = plan.second(0.6).unwrap();
        assert_eq!(second.kept, [0, 3]);
        assert!(Plan::settles(&second, 0.6));
        // Fewer than k found: nothing may be left out but words no chunk has.
        assert!(plan.second(0.0).is_none());
        let absent = Plan::new(100_000, vec![0, 44_000, 5_000]);
        assert_eq!(absent.first().unwrap().kept, [0]);
        assert!(absent.second(0.0).is_none());
    }

    #[test]
    fn the_cache_starts_over_when_the_rows_change() {
        let stats = TermStats::default();
        let words = vec!["\"the\"".to_string(), "\"kalo\"".to_string()];
        assert_eq!(stats.lookup(&words), (None, vec![None, None]));
        stats.store((10, 10), [(words[0].clone(), 9)]);
        assert_eq!(stats.lookup(&words), (Some((10, 10)), vec![Some(9), None]));
        stats.store((10, 10), [(words[1].clone(), 1)]);
        assert_eq!(stats.lookup(&words).1, vec![Some(9), Some(1)]);
        stats.store((11, 11), [(words[1].clone(), 2)]);
        assert_eq!(stats.lookup(&words), (Some((11, 11)), vec![None, Some(2)]));
    }
}
