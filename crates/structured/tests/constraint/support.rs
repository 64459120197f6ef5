//! The real Llama 3 vocabulary and a random sampler that walks a constraint to its end.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use llama_stack_structured::{Constraint, Error, Vocabulary};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizers::Tokenizer;

/// The Llama 3 tokenizer and its vocabulary, or `None` (with the reason printed) when
/// `tokenizer.model` has not been fetched.
pub fn llama3() -> Option<&'static (Tokenizer, Arc<Vocabulary>)> {
    static LLAMA3: OnceLock<Option<(Tokenizer, Arc<Vocabulary>)>> = OnceLock::new();
    let loaded = LLAMA3.get_or_init(|| {
        let path = tokenizer_model_path();
        let Ok(contents) = std::fs::read_to_string(&path) else {
            return None;
        };
        let json = llama_stack_llama3::hf_tokenizer_json_from_tiktoken(&contents)
            .expect("tokenizer.model converts");
        let tokenizer: Tokenizer = serde_json::to_string(&json)
            .unwrap()
            .parse()
            .expect("tokenizer.json loads");
        let vocabulary = Vocabulary::from_tokenizer(&tokenizer, &llama_stack_llama3::STOP_TOKENS)
            .expect("the Llama 3 vocabulary is byte-level");
        Some((tokenizer, Arc::new(vocabulary)))
    });
    if loaded.is_none() {
        eprintln!(
            "skipped: the Llama 3 tokenizer is missing at {}: run scripts/fetch-tokenizer.sh",
            tokenizer_model_path().display()
        );
    }
    loaded.as_ref()
}

pub fn vocabulary() -> Option<Arc<Vocabulary>> {
    llama3().map(|(_, vocabulary)| vocabulary.clone())
}

fn tokenizer_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LLAMA3_TOKENIZER_MODEL") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".llama/tokenizer/llama3/tokenizer.model")
}

/// Feeds `text` through the constraint, at each step taking the longest allowed token that
/// spells a prefix of what is left. Fails with the byte offset where no allowed token fits.
pub fn feed(constraint: &mut Constraint, text: &str) -> Result<(), usize> {
    let vocabulary = constraint.vocabulary().clone();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let allowed = constraint.allowed_tokens().expect("mask");
        let token = allowed
            .iter()
            .filter_map(|t| Some((t, vocabulary.token_bytes(t)?)))
            .filter(|(_, bytes)| !bytes.is_empty() && rest.starts_with(bytes))
            .max_by_key(|(_, bytes)| bytes.len());
        let Some((token, bytes)) = token else {
            return Err(text.len() - rest.len());
        };
        rest = &rest[bytes.len()..];
        constraint
            .accept(token)
            .expect("an allowed token is accepted");
    }
    Ok(())
}

/// How a random walk ended.
#[derive(Debug)]
pub struct Walk {
    pub text: String,
    /// The walk sampled an end-of-sequence token or the constraint finished.
    pub ended: bool,
}

/// Bytes that end strings and containers or separate items: preferring tokens made only of
/// these steers a uniform sampler, which would otherwise write strings forever, to an end.
/// The backslash is there to make escapes common.
const CLOSING: &[u8] = b"\"]},\\";

/// Samples allowed tokens until an end-of-sequence token, a finished constraint or
/// `max_steps`. At every step: a disallowed token is refused and changes nothing, and
/// `check_prefix` sees the text so far and whether an end-of-sequence token is allowed.
pub fn random_walk(
    constraint: &mut Constraint,
    seed: u64,
    max_steps: usize,
    mut check_prefix: impl FnMut(&str, bool),
) -> Walk {
    let vocabulary = constraint.vocabulary().clone();
    let closing = closing_tokens(&vocabulary);
    let eos = vocabulary.eos_tokens()[0];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tokens = Vec::new();
    for step in 0..max_steps {
        let allowed = constraint
            .allowed_tokens()
            .expect("mask")
            .as_words()
            .to_vec();
        let text = vocabulary.decode(&tokens);
        let eos_allowed = contains(&allowed, eos);
        check_prefix(&text, eos_allowed);
        if constraint.is_finished() {
            let only_eos: Vec<u32> = constraint.allowed_tokens().unwrap().iter().collect();
            assert_eq!(only_eos, vocabulary.eos_tokens(), "{text:?}");
            return Walk { text, ended: true };
        }
        // The closer to the step limit, the harder the walk is pushed to an end.
        let urgency = step as f64 / max_steps as f64;
        if eos_allowed && rng.random_bool(0.3 + 0.7 * urgency) {
            constraint.accept(eos).expect("EOS is allowed");
            assert!(constraint.is_finished());
            return Walk { text, ended: true };
        }
        if step % 5 == 0 {
            reject_one_disallowed(constraint, &mut rng, &allowed);
        }

        let allowed_closing: Vec<u32> = allowed.iter().zip(&closing).map(|(a, c)| a & c).collect();
        let pool = if count(&allowed_closing) > 0 && rng.random_bool(0.25 + 0.75 * urgency) {
            &allowed_closing
        } else {
            &allowed
        };
        let token = nth_member(pool, rng.random_range(0..count(pool)));
        constraint
            .accept(token)
            .expect("an allowed token is accepted");
        if vocabulary.is_eos(token) {
            return Walk { text, ended: true };
        }
        tokens.push(token);
    }
    let text = vocabulary.decode(&tokens);
    Walk { text, ended: false }
}

/// The tokens spelled only with [`CLOSING`] bytes, as bitset words.
fn closing_tokens(vocabulary: &Vocabulary) -> Vec<u32> {
    let mut words = vec![0u32; vocabulary.size().div_ceil(32)];
    for token in 0..vocabulary.size() as u32 {
        if vocabulary
            .token_bytes(token)
            .is_some_and(|b| !b.is_empty() && b.iter().all(|c| CLOSING.contains(c)))
        {
            words[token as usize / 32] |= 1 << (token % 32);
        }
    }
    words
}

fn contains(words: &[u32], token: u32) -> bool {
    words
        .get(token as usize / 32)
        .is_some_and(|w| w & (1 << (token % 32)) != 0)
}

fn count(words: &[u32]) -> usize {
    words.iter().map(|w| w.count_ones() as usize).sum()
}

fn nth_member(words: &[u32], mut n: usize) -> u32 {
    for (index, &word) in words.iter().enumerate() {
        let ones = word.count_ones() as usize;
        if n < ones {
            let mut word = word;
            for _ in 0..n {
                word &= word - 1;
            }
            return index as u32 * 32 + word.trailing_zeros();
        }
        n -= ones;
    }
    panic!("the set has fewer members")
}

/// A token outside the allowed set is refused, and the allowed set stays what it was.
fn reject_one_disallowed(constraint: &mut Constraint, rng: &mut StdRng, allowed: &[u32]) {
    let size = constraint.vocabulary().size() as u32;
    let token = loop {
        let candidate = rng.random_range(0..size);
        if !contains(allowed, candidate) {
            break candidate;
        }
    };
    assert_eq!(
        constraint.accept(token),
        Err(Error::TokenNotAllowed { token })
    );
    assert_eq!(constraint.allowed_tokens().unwrap().as_words(), allowed);
}
