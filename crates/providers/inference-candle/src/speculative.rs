//! Prompt-lookup speculative decoding (`speculative: {type: ngram}`).
//!
//! A greedy sequence whose last tokens appeared earlier in its prompt or output likely goes on
//! as it did then: document QA quotes its document, code edits copy code. The engine drafts the
//! tokens that followed the latest earlier occurrence of the sequence's last n-gram, reads the
//! last token and the draft in one forward pass (decode reads every weight once per pass, so
//! several positions cost little more than one), and keeps the drafted tokens the model itself
//! picks, plus the model's own token at the first disagreement. Every kept token is the one
//! greedy decoding would have produced, so the output is the same with the option on or off;
//! a pass whose draft is rejected at once still yields its one token.

use serde::Deserialize;

use llama_stack_core::ConfigIssue;

/// How far back a draft is looked for: the search is linear in it, per decode step.
const SEARCH_WINDOW: usize = 4096;

/// `speculative:` in the `inline::candle` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SpeculativeConfig {
    /// Prompt lookup: drafts copied from the sequence's own earlier tokens.
    Ngram {
        /// Most tokens drafted per pass (1 to 16).
        #[serde(default = "default_max_draft")]
        max_draft_tokens: usize,
        /// Longest n-gram matched (1 to 8); shorter ones are tried when it finds nothing.
        #[serde(default = "default_ngram")]
        ngram_size: usize,
    },
}

fn default_max_draft() -> usize {
    4
}

fn default_ngram() -> usize {
    3
}

impl SpeculativeConfig {
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let SpeculativeConfig::Ngram {
            max_draft_tokens,
            ngram_size,
        } = *self;
        let mut issues = Vec::new();
        if !(1..=16).contains(&max_draft_tokens) {
            issues.push(ConfigIssue::new(
                "speculative.max_draft_tokens",
                format!("must be between 1 and 16, got {max_draft_tokens}"),
            ));
        }
        if !(1..=8).contains(&ngram_size) {
            issues.push(ConfigIssue::new(
                "speculative.ngram_size",
                format!("must be between 1 and 8, got {ngram_size}"),
            ));
        }
        issues
    }
}

/// The draft for a sequence of `tokens`: up to `max` tokens that followed an earlier
/// occurrence of its last n-gram, for the longest n-gram (up to `ngram`) that has one. Of its
/// occurrences the latest with a whole draft after it wins (recent text predicts best), else
/// the one with the longest.
pub(crate) fn draft(tokens: &[u32], ngram: usize, max: usize) -> Vec<u32> {
    let len = tokens.len();
    let from = len.saturating_sub(SEARCH_WINDOW);
    for n in (1..=ngram.min(len.saturating_sub(1))).rev() {
        let key = &tokens[len - n..];
        let mut best: &[u32] = &[];
        // An occurrence must end before the key starts... or overlap it, as in a run.
        for start in (from..len - n).rev() {
            if &tokens[start..start + n] != key {
                continue;
            }
            let follow = &tokens[start + n..(start + n + max).min(len)];
            if follow.len() > best.len() {
                best = follow;
            }
            if best.len() == max {
                break;
            }
        }
        if !best.is_empty() {
            return best.to_vec();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_latest_match_of_the_longest_ngram() {
        // "1 2 3 4 5 ... 1 2 3" → "4 5"; the later "2 3 9" loses to the trigram match.
        let tokens = [1, 2, 3, 4, 5, 6, 2, 3, 9, 1, 2, 3];
        assert_eq!(draft(&tokens, 3, 2), vec![4, 5]);
        assert_eq!(draft(&tokens, 3, 10), vec![4, 5, 6, 2, 3, 9, 1, 2, 3]);
        // With bigrams only, the latest "2 3" is followed by 9.
        assert_eq!(draft(&tokens, 2, 3), vec![9, 1, 2]);
    }

    #[test]
    fn falls_back_to_shorter_ngrams_and_may_find_nothing() {
        assert_eq!(draft(&[7, 8, 5, 6, 8], 3, 2), vec![5, 6]);
        assert!(draft(&[1, 2, 3, 4], 3, 4).is_empty());
        assert!(draft(&[1], 3, 4).is_empty());
        assert!(draft(&[], 3, 4).is_empty());
    }

    #[test]
    fn a_run_of_one_token_drafts_more_of_it() {
        assert_eq!(draft(&[5, 5, 5, 5], 3, 4), vec![5]);
        assert_eq!(draft(&[5, 5, 5, 5, 5, 5, 5], 2, 3), vec![5, 5, 5]);
    }

    #[test]
    fn config_reads_upstream_style_and_checks_ranges() {
        let c: SpeculativeConfig =
            serde_json::from_value(serde_json::json!({"type": "ngram"})).unwrap();
        assert_eq!(
            c,
            SpeculativeConfig::Ngram {
                max_draft_tokens: 4,
                ngram_size: 3
            }
        );
        assert!(c.issues().is_empty());
        let bad = SpeculativeConfig::Ngram {
            max_draft_tokens: 0,
            ngram_size: 9,
        };
        assert_eq!(bad.issues().len(), 2);
        assert!(
            serde_json::from_value::<SpeculativeConfig>(serde_json::json!({"type": "eagle"}))
                .is_err()
        );
    }
}
