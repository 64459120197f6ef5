//! The tokenizer chunking counts with: Meta's Llama 3 tiktoken tokenizer, run by tiktoken-rs,
//! with the same input splitting as Meta's `Tokenizer.encode` so token counts match upstream
//! exactly, even on megabytes of text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use llama_stack_llama3::{BASE_VOCAB_SIZE, LLAMA3_SPLIT_PATTERN, special_token_strings};
use tiktoken_rs::CoreBPE;

use crate::DocumentError;

/// Meta's tokenizer hands tiktoken at most this many characters at a time.
const MAX_ENCODE_CHARS: usize = 400_000;
/// ... and cuts runs of whitespace or non-whitespace longer than this (tiktoken issue 195).
const MAX_CONSECUTIVE_CHARS: usize = 25_000;

/// A byte-pair tokenizer: the Llama 3 one, or cl100k_base when the Llama 3 file is missing.
/// Cheap to clone.
#[derive(Clone)]
pub struct Tokenizer {
    name: String,
    bpe: Arc<CoreBPE>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("name", &self.name)
            .finish()
    }
}

/// Where the Llama 3 tokenizer is looked for: `LLAMA3_TOKENIZER_MODEL`, else
/// `~/.llama/tokenizer/llama3/tokenizer.model` (where `scripts/fetch-tokenizer.sh` puts it).
pub fn default_tokenizer_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LLAMA3_TOKENIZER_MODEL").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".llama/tokenizer/llama3/tokenizer.model"))
}

impl Tokenizer {
    /// The Llama 3 tokenizer from `LLAMA3_TOKENIZER_MODEL` or
    /// `~/.llama/tokenizer/llama3/tokenizer.model`; when that cannot be read, cl100k_base with
    /// a warning saying how to get the real one (token counts then differ from upstream's).
    pub fn load_default() -> (Tokenizer, Option<String>) {
        let problem = match default_tokenizer_path() {
            Some(path) => match Tokenizer::from_llama3_file(&path) {
                Ok(tokenizer) => return (tokenizer, None),
                Err(err) => err.to_string(),
            },
            None => "neither LLAMA3_TOKENIZER_MODEL nor HOME is set".to_string(),
        };
        let warning = format!(
            "the Llama 3 tokenizer is not available ({problem}); chunking and token counts use \
             cl100k_base instead and will differ from upstream Llama Stack. Run \
             scripts/fetch-tokenizer.sh or set LLAMA3_TOKENIZER_MODEL to Meta's tokenizer.model"
        );
        (Tokenizer::cl100k_fallback(), Some(warning))
    }

    /// [`Tokenizer::load_default`], loaded once per process (loading parses 128,000 ranks).
    pub fn shared_default() -> &'static (Tokenizer, Option<String>) {
        static SHARED: OnceLock<(Tokenizer, Option<String>)> = OnceLock::new();
        SHARED.get_or_init(Tokenizer::load_default)
    }

    /// Meta's Llama 3 `tokenizer.model` (tiktoken format) with its 256 special tokens.
    pub fn from_llama3_file(path: &Path) -> Result<Tokenizer, DocumentError> {
        let contents = std::fs::read_to_string(path).map_err(|e| {
            DocumentError::Invalid(format!(
                "cannot read the Llama 3 tokenizer at {}: {e}",
                path.display()
            ))
        })?;
        let ranks = llama_stack_llama3::tiktoken_ranks(&contents).map_err(|e| {
            DocumentError::Invalid(format!(
                "{} is not the Llama 3 tokenizer: {e}",
                path.display()
            ))
        })?;
        let specials: HashMap<String, u32> = special_token_strings()
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), BASE_VOCAB_SIZE + i as u32))
            .collect();
        let bpe = CoreBPE::new(
            ranks.into_iter().collect(),
            specials.into_iter().collect(),
            LLAMA3_SPLIT_PATTERN,
        )
        .map_err(|e| DocumentError::Invalid(format!("cannot build the Llama 3 tokenizer: {e}")))?;
        Ok(Tokenizer {
            name: "Llama 3 (tiktoken)".to_string(),
            bpe: Arc::new(bpe),
        })
    }

    fn cl100k_fallback() -> Tokenizer {
        // The table ships inside tiktoken-rs, so this cannot fail short of a broken build.
        let bpe = tiktoken_rs::cl100k_base().expect("tiktoken-rs ships cl100k_base");
        Tokenizer {
            name: "cl100k_base (fallback)".to_string(),
            bpe: Arc::new(bpe),
        }
    }

    /// "Llama 3 (tiktoken)" or "cl100k_base (fallback)".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Token ids of `text` without BOS/EOS. Special-token text such as `<|eot_id|>` is encoded
    /// as ordinary text, as upstream's `encode(bos=False, eos=False)` does.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(text.len() / 3);
        for piece in pieces(text) {
            tokens.extend(self.bpe.encode_ordinary(piece));
        }
        tokens
    }

    /// The text of `tokens`; bytes that do not form UTF-8 (a window cut inside a character)
    /// become U+FFFD, as tiktoken's `errors="replace"` does. Unknown ids are skipped.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let bytes = match self.bpe.decode_bytes(tokens) {
            Ok(bytes) => bytes,
            Err(_) => tokens
                .iter()
                .filter_map(|t| self.bpe.decode_bytes(std::slice::from_ref(t)).ok())
                .flatten()
                .collect(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Number of tokens [`Tokenizer::encode`] gives.
    pub fn count(&self, text: &str) -> usize {
        pieces(text).map(|p| self.bpe.count_ordinary(p)).sum()
    }
}

/// The substrings Meta's `Tokenizer.encode` hands tiktoken one at a time: blocks of 400,000
/// characters, each cut wherever a run of whitespace or of non-whitespace exceeds 25,000
/// characters. Cutting changes tokens at the cuts, so it is reproduced exactly.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    blocks(text).flat_map(split_long_runs)
}

fn blocks(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .nth(MAX_ENCODE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (block, tail) = rest.split_at(end);
        rest = tail;
        Some(block)
    })
}

/// Python's `str.isspace`: Unicode White_Space plus the four ASCII separators 0x1C-0x1F.
fn python_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn split_long_runs(block: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut run_is_space = block.chars().next().is_some_and(python_isspace);
    let mut run_len = 0usize;
    let mut slice_start = 0usize;
    for (index, c) in block.char_indices() {
        let is_space = python_isspace(c);
        if is_space != run_is_space {
            run_len = 1;
            run_is_space = is_space;
        } else {
            run_len += 1;
            if run_len > MAX_CONSECUTIVE_CHARS {
                out.push(&block[slice_start..index]);
                slice_start = index;
                run_len = 1;
            }
        }
    }
    out.push(&block[slice_start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_are_cut_like_upstream() {
        let text = "a".repeat(60_000);
        let lens: Vec<usize> = split_long_runs(&text).iter().map(|p| p.len()).collect();
        assert_eq!(lens, [25_000, 25_000, 10_000]);
        let text = format!("{} {}", "b".repeat(25_000), "c".repeat(10));
        assert_eq!(split_long_runs(&text).len(), 1);
        assert_eq!(split_long_runs(""), [""]);
        let text = "é".repeat(MAX_ENCODE_CHARS + 5);
        let lens: Vec<usize> = blocks(&text).map(|b| b.chars().count()).collect();
        assert_eq!(lens, [MAX_ENCODE_CHARS, 5]);
    }

    #[test]
    fn fallback_round_trips() {
        let tokenizer = Tokenizer::cl100k_fallback();
        let ids = tokenizer.encode("hello world <|endoftext|>");
        assert_eq!(tokenizer.decode(&ids), "hello world <|endoftext|>");
        assert_eq!(tokenizer.count("hello world"), 2);
        assert_eq!(tokenizer.name(), "cl100k_base (fallback)");
    }
}
