//! Tokens and overlapped chunks against upstream's, computed by Python's tiktoken with Meta's
//! Llama 3 `tokenizer.model` (`tests/data/make_chunk_expectations.py` wrote the expectations).
//! Needs the tokenizer file that `scripts/fetch-tokenizer.sh` downloads.

use std::sync::OnceLock;

use llama_stack_documents::{DocumentError, TextChunk, Tokenizer, overlapped_chunks};
use serde_json::Value;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let (tokenizer, warning) = Tokenizer::load_default();
        assert!(
            warning.is_none(),
            "these tests need the real Llama 3 tokenizer: {}",
            warning.unwrap_or_default()
        );
        tokenizer
    })
}

fn expectations() -> Vec<Value> {
    serde_json::from_str(include_str!("../data/chunk_expectations.json")).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn tokens_and_chunks_match_upstream() {
    let tokenizer = tokenizer();
    assert_eq!(tokenizer.name(), "Llama 3 (tiktoken)");
    let mut checked = 0;
    for case in expectations() {
        let name = case["name"].as_str().unwrap();
        let Some(text) = case["text"].as_str() else {
            continue;
        };
        let size = case["size"].as_u64().unwrap() as usize;
        let overlap = case["overlap"].as_u64().unwrap() as usize;
        let tokens = tokenizer.encode(text);
        assert_eq!(tokens, ids(&case["tokens"]), "{name}: token ids");
        assert_eq!(tokenizer.count(text), tokens.len(), "{name}: count");
        let expected: Vec<TextChunk> = case["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| TextChunk {
                text: c["text"].as_str().unwrap().to_string(),
                token_count: c["token_count"].as_u64().unwrap() as usize,
            })
            .collect();
        let chunks = overlapped_chunks(tokenizer, text, size, overlap).unwrap();
        assert_eq!(chunks.len(), expected.len(), "{name}: number of chunks");
        for (i, (got, want)) in chunks.iter().zip(&expected).enumerate() {
            assert_eq!(got, want, "{name}: chunk {i}");
        }
        checked += 1;
    }
    assert!(checked >= 7);
}

#[test]
fn long_runs_and_long_texts_are_cut_like_upstream() {
    let tokenizer = tokenizer();
    let cases = expectations();
    let case = |name: &str| cases.iter().find(|c| c["name"] == name).unwrap().clone();

    let long_run = format!("{} end {}tail", "x".repeat(25_010), " ".repeat(25_005));
    assert_eq!(
        tokenizer.encode(&long_run),
        ids(&case("long_runs")["tokens"])
    );

    let big: String = "The quick brown fox jumps over the lazy dog. "
        .repeat(9000)
        .chars()
        .take(400_003)
        .collect::<String>()
        + "ending words";
    let started = std::time::Instant::now();
    let tokens = tokenizer.encode(&big);
    let elapsed = started.elapsed();
    let expected = case("over_400k_chars");
    assert_eq!(tokens.len() as u64, expected["token_len"].as_u64().unwrap());
    let checksum = tokens.iter().enumerate().fold(0u128, |sum, (i, &t)| {
        (sum + (i as u128 + 1) * t as u128) % (1u128 << 61)
    });
    assert_eq!(checksum as u64, expected["checksum"].as_u64().unwrap());
    // Megabytes of text must be practical to ingest even in a debug build.
    assert!(elapsed.as_secs() < 10, "encoding 400 kB took {elapsed:?}");
}

#[test]
fn special_token_text_is_ordinary_text_and_decode_round_trips() {
    let tokenizer = tokenizer();
    let text = "<|begin_of_text|>hello<|eot_id|>";
    let tokens = tokenizer.encode(text);
    assert!(tokens.iter().all(|&t| t < 128_000), "{tokens:?}");
    assert_eq!(tokenizer.decode(&tokens), text);
    assert_eq!(tokenizer.decode(&[128_009]), "<|eot_id|>");
}

#[test]
fn chunk_size_must_exceed_overlap() {
    for (size, overlap) in [(0, 0), (128, 128), (100, 200)] {
        let err = overlapped_chunks(tokenizer(), "some text", size, overlap).unwrap_err();
        assert!(matches!(err, DocumentError::Invalid(_)), "{err}");
    }
    assert!(
        overlapped_chunks(tokenizer(), "", 512, 128)
            .unwrap()
            .is_empty()
    );
}
