//! Converting Meta's tiktoken `tokenizer.model` into a Hugging Face
//! `tokenizer.json`, so Rust inference engines built on the `tokenizers`
//! crate can use the real Llama 3 tokenizer without the Hub.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::special::{BASE_VOCAB_SIZE, BEGIN_OF_TEXT, END_OF_TEXT, special_token_strings};

/// The pre-tokenization regex of the Llama 3 tokenizer (`pat_str` in Meta's
/// `tokenizer.py`). It needs look-ahead, which the `tokenizers` crate's
/// Oniguruma backend provides.
pub const LLAMA3_SPLIT_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Context length of the Llama 3.1+ models.
pub const MODEL_MAX_LENGTH: u32 = 131_072;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.model line {line}: expected `<base64 token> <rank>`")]
    MalformedLine { line: usize },
    #[error("tokenizer.model line {line}: token is not valid base64: {source}")]
    InvalidBase64 {
        line: usize,
        source: base64::DecodeError,
    },
    #[error("tokenizer.model line {line}: token or rank appears twice")]
    Duplicate { line: usize },
    #[error(
        "tokenizer.model has {found} ranks numbered {lowest}..={highest}; the Llama 3 tokenizer has exactly 0..={} \
         (is this the right file? scripts/fetch-tokenizer.sh fetches it)",
        BASE_VOCAB_SIZE - 1
    )]
    NotLlama3 {
        found: usize,
        lowest: u32,
        highest: u32,
    },
    #[error("GGUF merge `{0}` is not two tokens separated by a space")]
    GgufMerge(String),
}

/// Byte sequences indexed by rank, as read from a tiktoken file.
struct Ranks {
    by_rank: Vec<Vec<u8>>,
    rank_of: HashMap<Vec<u8>, u32>,
}

fn read_ranks(contents: &str) -> Result<Ranks, TokenizerError> {
    let mut rank_of = HashMap::new();
    let (mut lowest, mut highest) = (u32::MAX, 0);
    for (index, line) in contents.lines().enumerate() {
        let line_no = index + 1;
        let mut fields = line.split_whitespace();
        let (token, rank) = match (fields.next(), fields.next(), fields.next()) {
            (None, ..) => continue,
            (Some(token), Some(rank), None) => (token, rank),
            _ => return Err(TokenizerError::MalformedLine { line: line_no }),
        };
        let rank: u32 = rank
            .parse()
            .map_err(|_| TokenizerError::MalformedLine { line: line_no })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|source| TokenizerError::InvalidBase64 {
                line: line_no,
                source,
            })?;
        if rank_of.insert(bytes, rank).is_some() {
            return Err(TokenizerError::Duplicate { line: line_no });
        }
        lowest = lowest.min(rank);
        highest = highest.max(rank);
    }
    let found = rank_of.len();
    // Ranks double as token ids, and the special tokens' ids assume exactly
    // 128,000 ranks before them, so anything else cannot be rendered correctly.
    if found != BASE_VOCAB_SIZE as usize || lowest != 0 || highest != BASE_VOCAB_SIZE - 1 {
        return Err(TokenizerError::NotLlama3 {
            found,
            lowest: lowest.min(highest),
            highest,
        });
    }
    let mut by_rank = vec![Vec::new(); found];
    for (bytes, &rank) in &rank_of {
        by_rank[rank as usize] = bytes.clone();
    }
    Ok(Ranks { by_rank, rank_of })
}

/// The 128,000 byte-pair ranks of a Llama 3 tiktoken file (`base64 rank` lines), checked the
/// same way the conversion checks them, for tiktoken-style encoders that need the raw table.
pub fn tiktoken_ranks(contents: &str) -> Result<HashMap<Vec<u8>, u32>, TokenizerError> {
    Ok(read_ranks(contents)?.rank_of)
}

/// GPT-2's reversible byte-to-character map: printable Latin-1 bytes stand
/// for themselves, the rest are shifted to code points from U+0100, so every
/// byte sequence is a printable string.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next_shifted = 256u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            byte as u32
        } else {
            next_shifted += 1;
            next_shifted - 1
        };
        table[byte as usize] = char::from_u32(code).expect("all codes are below 0x200");
    }
    table
}

/// The merge list tiktoken implies. tiktoken has no merges, only ranks: it
/// joins the adjacent pair whose joined bytes have the lowest rank. A BPE
/// model applies merges in list order, so listing, for every token in rank
/// order, each way of splitting it into two tokens gives the same result
/// (ties within one token ordered by the halves' ranks, as transformers'
/// TikTokenConverter does).
fn recover_merges(ranks: &Ranks) -> Vec<(&[u8], &[u8])> {
    let mut merges = Vec::new();
    let mut local = Vec::new();
    for token in &ranks.by_rank {
        local.clear();
        for split in 1..token.len() {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (ranks.rank_of.get(left), ranks.rank_of.get(right)) {
                local.push((l, r, left, right));
            }
        }
        local.sort_by_key(|&(l, r, ..)| (l, r));
        merges.extend(local.iter().map(|&(_, _, left, right)| (left, right)));
    }
    merges
}

/// A `tokenizer.json` equivalent to the Llama 3 tiktoken tokenizer whose file
/// contents are given.
///
/// Byte-level BPE over the 128,000 ranks with `ignore_merges` (tiktoken takes
/// a whole pre-token that is in the vocabulary as one token, before any
/// merging), the Llama 3 split regex, and the 256 special tokens as added
/// tokens at 128000 and up. There is no post-processor: callers add
/// `<|begin_of_text|>` themselves, as [`crate::render_chat`] does.
pub fn hf_tokenizer_json_from_tiktoken(
    tiktoken_file_contents: &str,
) -> Result<Value, TokenizerError> {
    let ranks = read_ranks(tiktoken_file_contents)?;
    let table = byte_to_char_table();
    let to_string = |bytes: &[u8]| -> String { bytes.iter().map(|&b| table[b as usize]).collect() };

    let vocab: Map<String, Value> = ranks
        .by_rank
        .iter()
        .enumerate()
        .map(|(rank, bytes)| (to_string(bytes), Value::from(rank)))
        .collect();
    let merges: Vec<Value> = recover_merges(&ranks)
        .into_iter()
        .map(|(left, right)| json!([to_string(left), to_string(right)]))
        .collect();
    let added_tokens: Vec<Value> = special_token_strings()
        .iter()
        .enumerate()
        .map(|(i, content)| {
            json!({
                "id": BASE_VOCAB_SIZE as usize + i,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true,
            })
        })
        .collect();

    Ok(tokenizer_json(vocab, merges, added_tokens))
}

/// A `tokenizer.json` from the tokenizer a GGUF file embeds (`tokenizer.ggml.tokens`,
/// `tokenizer.ggml.merges`, `tokenizer.ggml.token_type`), for GGUF files of the Llama 3
/// family (`tokenizer.ggml.pre = llama-bpe`). Tokens of type 3 (control) and 4 (user defined)
/// become added tokens, as llama.cpp treats them.
pub fn hf_tokenizer_json_from_gguf(
    tokens: &[String],
    merges: &[String],
    token_types: &[i32],
) -> Result<Value, TokenizerError> {
    let vocab: Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(id, token)| (token.clone(), Value::from(id)))
        .collect();
    let mut pairs = Vec::with_capacity(merges.len());
    for merge in merges {
        let (left, right) = merge
            .split_once(' ')
            .ok_or_else(|| TokenizerError::GgufMerge(merge.clone()))?;
        pairs.push(json!([left, right]));
    }
    let added_tokens: Vec<Value> = tokens
        .iter()
        .enumerate()
        .filter(|(id, _)| matches!(token_types.get(*id), Some(3) | Some(4)))
        .map(|(id, content)| {
            json!({
                "id": id,
                "content": content,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true,
            })
        })
        .collect();
    Ok(tokenizer_json(vocab, pairs, added_tokens))
}

fn tokenizer_json(
    vocab: Map<String, Value>,
    merges: Vec<Value>,
    added_tokens: Vec<Value>,
) -> Value {
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": { "Regex": LLAMA3_SPLIT_PATTERN },
                    "behavior": "Isolated",
                    "invert": false,
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": false,
                    "trim_offsets": true,
                    "use_regex": false,
                },
            ],
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": true,
            "use_regex": true,
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": true,
            "vocab": vocab,
            "merges": merges,
        },
    })
}

/// A `tokenizer_config.json` to sit next to the converted `tokenizer.json`.
/// Decoding must not "clean up" spaces before punctuation, since tiktoken
/// reproduces text exactly.
pub fn tokenizer_config_json() -> Value {
    let added_tokens_decoder: Map<String, Value> = special_token_strings()
        .iter()
        .enumerate()
        .map(|(i, content)| {
            let entry = json!({
                "content": content,
                "lstrip": false,
                "normalized": false,
                "rstrip": false,
                "single_word": false,
                "special": true,
            });
            ((BASE_VOCAB_SIZE as usize + i).to_string(), entry)
        })
        .collect();
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": special_token_strings()[(BEGIN_OF_TEXT - BASE_VOCAB_SIZE) as usize],
        "eos_token": special_token_strings()[(END_OF_TEXT - BASE_VOCAB_SIZE) as usize],
        "model_max_length": MODEL_MAX_LENGTH,
        "clean_up_tokenization_spaces": false,
        "model_input_names": ["input_ids", "attention_mask"],
        "added_tokens_decoder": added_tokens_decoder,
    })
}

#[cfg(test)]
#[path = "tokenizer_tests.rs"]
mod tests;
