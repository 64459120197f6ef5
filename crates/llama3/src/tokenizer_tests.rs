//! Checks against the real Llama 3 tokenizer. They need Meta's
//! `tokenizer.model`, which `scripts/fetch-tokenizer.sh` downloads.

use std::path::PathBuf;
use std::sync::OnceLock;

use llama_stack_types::Message;
use tokenizers::Tokenizer;

use super::*;
use crate::prompt::{ModelFamily, RenderOptions, encode_pieces, render_chat};
use crate::special::{EOT_ID, special_token_name};

fn tokenizer_model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("LLAMA3_TOKENIZER_MODEL") {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".llama/tokenizer/llama3/tokenizer.model")
}

fn tiktoken_contents() -> &'static str {
    static CONTENTS: OnceLock<String> = OnceLock::new();
    CONTENTS.get_or_init(|| {
        let path = tokenizer_model_path();
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read the Llama 3 tokenizer at {} ({e}); run scripts/fetch-tokenizer.sh \
                 (or point LLAMA3_TOKENIZER_MODEL at a copy)",
                path.display()
            )
        })
    })
}

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let json = hf_tokenizer_json_from_tiktoken(tiktoken_contents()).expect("converts");
        let bytes = serde_json::to_vec(&json).expect("serialises");
        Tokenizer::from_bytes(bytes).expect("tokenizers loads the converted file")
    })
}

fn encode(text: &str) -> Vec<u32> {
    tokenizer()
        .encode(text, false)
        .expect("encodes")
        .get_ids()
        .to_vec()
}

fn decode(ids: &[u32]) -> String {
    tokenizer().decode(ids, false).expect("decodes")
}

#[test]
fn role_names_and_header_newlines() {
    assert_eq!(encode("system"), [9125]);
    assert_eq!(encode("user"), [882]);
    assert_eq!(encode("assistant"), [78191]);
    assert_eq!(encode("ipython"), [23799, 4690]);
    assert_eq!(encode("\n\n"), [271]);
}

/// Ids computed with tiktoken 0.14 from the same `tokenizer.model` and the
/// Llama 3 split regex.
#[test]
fn ids_match_tiktoken() {
    let cases: &[(&str, &[u32])] = &[
        ("Hello, world!", &[9906, 11, 1917, 0]),
        (
            "The year 2024 had 366 days.",
            &[791, 1060, 220, 2366, 19, 1047, 220, 18044, 2919, 13],
        ),
        (
            "I'll say it's fine, they've said.",
            &[40, 3358, 2019, 433, 596, 7060, 11, 814, 3077, 1071, 13],
        ),
        (
            "  indented\n\n\tcode()  ",
            &[220, 1280, 16243, 271, 44443, 368, 256],
        ),
        (
            "Zürich → 東京 🚀",
            &[57, 5297, 718, 11651, 119109, 11410, 248, 222],
        ),
        ("Hi<|eot_id|>there", &[13347, 128_009, 19041]),
    ];
    for (text, expected) in cases {
        assert_eq!(encode(text), *expected, "{text:?}");
    }
}

#[test]
fn mixed_text_round_trips() {
    let text = "fn main() {\n    let x: Vec<u8> = vec![1, 2, 3];\n    println!(\"{x:?}\");\n}\n\n\
                Numbers: 3.14159, 1234567890, -42, 0x1F.\n\
                Contractions: I'm, you're, we'll, they'd, it's, can't, WON'T.\n\
                Unicode: naïve café, Ελληνικά, русский, 日本語のテキスト, العربية, emoji 🦙🔥👍🏽.\n\
                Whitespace:   three spaces,\ttab,\r\nCRLF,    \n  trailing   \n\n\n\n";
    let ids = encode(text);
    assert!(ids.len() > 100);
    assert_eq!(decode(&ids), text);
}

#[test]
fn special_token_strings_encode_to_their_ids() {
    for id in [
        128_000, 128_001, 128_006, 128_007, 128_008, 128_009, 128_010, 128_011, 128_100, 128_255,
    ] {
        let name = special_token_name(id).unwrap();
        assert_eq!(encode(&name), [id], "{name}");
    }
    let ids = encode("Hi<|eot_id|>there");
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[1], EOT_ID);
    assert_eq!(decode(&ids), "Hi<|eot_id|>there");
    assert_eq!(tokenizer().get_vocab_size(true), 128_256);
}

#[test]
fn rendered_dialog_has_the_expected_frame() {
    let messages = [
        Message::system("You are a helpful assistant."),
        Message::user("What is the capital of France?"),
    ];
    let options = RenderOptions::new(ModelFamily::Llama3_1);
    let ids = encode_pieces(&render_chat(&messages, &options), encode);
    assert_eq!(ids[..5], [128_000, 128_006, 9125, 128_007, 271]);
    assert!(
        ids.windows(4).any(|w| w == [128_006, 882, 128_007, 271]),
        "{ids:?}"
    );
    assert_eq!(ids[ids.len() - 4..], [128_006, 78191, 128_007, 271]);
    assert_eq!(ids.iter().filter(|&&id| id == EOT_ID).count(), 2);
}

#[test]
fn converted_json_shape() {
    let json = hf_tokenizer_json_from_tiktoken(tiktoken_contents()).unwrap();
    assert_eq!(json["model"]["vocab"].as_object().unwrap().len(), 128_000);
    assert_eq!(json["model"]["ignore_merges"], true);
    assert_eq!(json["added_tokens"].as_array().unwrap().len(), 256);
    assert_eq!(json["added_tokens"][9]["content"], "<|eot_id|>");
    assert_eq!(json["added_tokens"][9]["id"], 128_009);
    assert!(json["post_processor"].is_null());
    // The first merges join the lowest-ranked multi-byte tokens: "  " (rank
    // 256) is two spaces, written as GPT-2's stand-in character for space.
    assert_eq!(json["model"]["merges"][0], serde_json::json!(["Ġ", "Ġ"]));
}

#[test]
fn config_names_the_specials() {
    let config = tokenizer_config_json();
    assert_eq!(config["bos_token"], "<|begin_of_text|>");
    assert_eq!(config["eos_token"], "<|end_of_text|>");
    assert_eq!(config["model_max_length"], 131_072);
    assert_eq!(
        config["added_tokens_decoder"]["128009"]["content"],
        "<|eot_id|>"
    );
}

#[test]
fn rejects_files_that_are_not_the_llama3_tokenizer() {
    assert!(matches!(
        hf_tokenizer_json_from_tiktoken("IQ== 0\nIg== 1\n"),
        Err(TokenizerError::NotLlama3 { found: 2, .. })
    ));
    assert!(matches!(
        hf_tokenizer_json_from_tiktoken("IQ==\n"),
        Err(TokenizerError::MalformedLine { line: 1 })
    ));
    assert!(matches!(
        hf_tokenizer_json_from_tiktoken("IQ== 0\n!!!! 1\n"),
        Err(TokenizerError::InvalidBase64 { line: 2, .. })
    ));
    assert!(matches!(
        hf_tokenizer_json_from_tiktoken("IQ== 0\nIQ== 1\n"),
        Err(TokenizerError::Duplicate { line: 2 })
    ));
}

#[test]
fn byte_table_is_gpt2s() {
    let table = byte_to_char_table();
    assert_eq!(table[b' ' as usize], 'Ġ');
    assert_eq!(table[b'\n' as usize], 'Ċ');
    assert_eq!(table[b'a' as usize], 'a');
    assert_eq!(table[0], 'Ā');
    let unique: std::collections::HashSet<char> = table.iter().copied().collect();
    assert_eq!(unique.len(), 256);
}
