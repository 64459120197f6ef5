//! The tokenizer seen as bytes: what each token id spells, in a trie the mask computation walks.

use std::collections::HashMap;
use std::sync::Arc;

use llguidance::ParserFactory;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use tokenizers::{DecoderWrapper, Tokenizer};

use crate::Error;

/// A tokenizer's vocabulary prepared for constrained decoding: the bytes of every token, a
/// trie over them, the end-of-sequence tokens, and the grammar compiler's shared state.
///
/// Build it once per tokenizer (it takes a few hundred milliseconds for 128k tokens) and
/// share it behind an [`Arc`] with every [`crate::Constraint`].
pub struct Vocabulary {
    factory: ParserFactory,
    eos_tokens: Vec<u32>,
    size: usize,
}

impl std::fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabulary")
            .field("size", &self.size)
            .field("eos_tokens", &self.eos_tokens)
            .finish_non_exhaustive()
    }
}

impl Vocabulary {
    /// Reads a Hugging Face tokenizer (byte-level BPE such as Llama 3's, or SentencePiece
    /// with byte fallback). `eos_tokens` are the ids that may end the output once it is
    /// complete (for Llama 3: `<|end_of_text|>`, `<|eom_id|>`, `<|eot_id|>`); at least one.
    ///
    /// Special tokens other than these are never allowed inside constrained output.
    pub fn from_tokenizer(tokenizer: &Tokenizer, eos_tokens: &[u32]) -> Result<Self, Error> {
        let token_bytes = token_bytes(tokenizer)?;
        Self::build(token_bytes, eos_tokens, Some(tokenizer.clone()))
    }

    /// A vocabulary from the bytes each token id spells, for tokenizers that are not Hugging
    /// Face ones. Ids whose bytes start with `0xFF` are special tokens (never part of
    /// constrained text); an empty entry is an unused id.
    pub fn from_token_bytes(token_bytes: Vec<Vec<u8>>, eos_tokens: &[u32]) -> Result<Self, Error> {
        Self::build(token_bytes, eos_tokens, None)
    }

    fn build(
        token_bytes: Vec<Vec<u8>>,
        eos_tokens: &[u32],
        tokenizer: Option<Tokenizer>,
    ) -> Result<Self, Error> {
        let size = token_bytes.len();
        let Some(&first_eos) = eos_tokens.first() else {
            return Err(Error::Tokenizer(
                "at least one end-of-sequence token is needed".into(),
            ));
        };
        if let Some(&bad) = eos_tokens.iter().find(|&&t| t as usize >= size) {
            return Err(Error::Tokenizer(format!(
                "end-of-sequence token {bad} is outside the vocabulary of {size} tokens"
            )));
        }
        let info = TokRxInfo::new(size as u32, first_eos);
        let trie = TokTrie::from(&info, &token_bytes).with_eos_tokens(eos_tokens);
        let env: TokEnv = Arc::new(TrieEnv { trie, tokenizer });
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| Error::Tokenizer(e.to_string()))?;
        // Errors come back as values; llguidance must not print to stderr from a server.
        factory.quiet();
        Ok(Self {
            factory,
            eos_tokens: eos_tokens.to_vec(),
            size,
        })
    }

    /// Number of token ids, the length of every [`crate::TokenSet`].
    pub fn size(&self) -> usize {
        self.size
    }

    /// The end-of-sequence tokens given at construction.
    pub fn eos_tokens(&self) -> &[u32] {
        &self.eos_tokens
    }

    /// Whether `token` is one of the end-of-sequence tokens.
    pub fn is_eos(&self, token: u32) -> bool {
        self.eos_tokens.contains(&token)
    }

    /// The bytes `token` spells, or `None` for a special or unknown token.
    pub fn token_bytes(&self, token: u32) -> Option<&[u8]> {
        let trie = self.factory.tok_env().tok_trie();
        if token as usize >= self.size || trie.is_special_token(token) {
            return None;
        }
        Some(trie.token(token))
    }

    /// The text `tokens` spell, invalid UTF-8 replaced; special tokens are left out.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let bytes: Vec<u8> = tokens
            .iter()
            .filter_map(|&t| self.token_bytes(t))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub(crate) fn factory(&self) -> &ParserFactory {
        &self.factory
    }
}

/// The trie plus, when there is one, the real tokenizer: llguidance tokenizes the bytes a
/// grammar forces (`{"name":"` after `{`) and offers them as the only allowed token, and that
/// token must be the one the model would have been trained on.
struct TrieEnv {
    trie: TokTrie,
    tokenizer: Option<Tokenizer>,
}

impl TokenizerEnv for TrieEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        match &self.tokenizer {
            Some(tokenizer) => self.trie.tokenize_with_greedy_fallback(bytes, |text| {
                tokenizer
                    .encode(text, false)
                    .map(|encoding| encoding.get_ids().to_vec())
                    // Unreachable for valid UTF-8; an empty answer makes llguidance fall back
                    // to letting the model choose the tokenization.
                    .unwrap_or_default()
            }),
            None => self.trie.greedy_tokenize(bytes),
        }
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.tokenizer.is_some()
    }
}

/// The bytes each token id spells. Byte-level BPE vocabularies store bytes as printable
/// stand-in characters (GPT-2's table); SentencePiece ones store text with `▁` for a space and
/// `<0xNN>` for raw bytes.
fn token_bytes(tokenizer: &Tokenizer) -> Result<Vec<Vec<u8>>, Error> {
    let decoding = Decoding::of(tokenizer)?;
    let added = tokenizer.get_added_tokens_decoder();
    let vocab = tokenizer.get_vocab(true);
    let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut bytes = vec![Vec::new(); size];
    let byte_of_char = byte_level_table();
    for (piece, id) in vocab {
        let entry = &mut bytes[id as usize];
        if let Some(token) = added.get(&id) {
            let mut content = token.content.as_bytes().to_vec();
            if token.special {
                content.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
            }
            *entry = content;
            continue;
        }
        *entry = match decoding {
            Decoding::ByteLevel => piece
                .chars()
                .map(|c| byte_of_char.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| {
                    Error::Tokenizer(format!("token {id} ({piece:?}) is not byte-level encoded"))
                })?,
            Decoding::ByteFallback { space } => match parse_byte_piece(&piece) {
                Some(byte) => vec![byte],
                None => piece.replace(space, " ").into_bytes(),
            },
        };
    }
    Ok(bytes)
}

#[derive(Clone, Copy)]
enum Decoding {
    ByteLevel,
    ByteFallback { space: char },
}

impl Decoding {
    fn of(tokenizer: &Tokenizer) -> Result<Self, Error> {
        fn visit(decoder: &DecoderWrapper, byte_level: &mut bool, fallback: &mut bool) {
            match decoder {
                DecoderWrapper::ByteLevel(_) => *byte_level = true,
                DecoderWrapper::ByteFallback(_) => *fallback = true,
                DecoderWrapper::Sequence(sequence) => {
                    for inner in sequence.get_decoders() {
                        visit(inner, byte_level, fallback);
                    }
                }
                _ => {}
            }
        }
        let (mut byte_level, mut fallback) = (false, false);
        if let Some(decoder) = tokenizer.get_decoder() {
            visit(decoder, &mut byte_level, &mut fallback);
        }
        if byte_level {
            Ok(Decoding::ByteLevel)
        } else if fallback {
            Ok(Decoding::ByteFallback { space: '▁' })
        } else {
            Err(Error::Tokenizer(
                "only byte-level BPE and byte-fallback tokenizers are supported (the decoder has \
                 neither a ByteLevel nor a ByteFallback step)"
                    .into(),
            ))
        }
    }
}

/// `<0x0A>` → 0x0A.
fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-to-character table, inverted: printable Latin-1 bytes stand for themselves,
/// the others are shifted to U+0100 and up in byte order.
fn byte_level_table() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b as char, b)
            } else {
                let c = char::from_u32(next).expect("U+0100..U+0143 are characters");
                next += 1;
                (c, b)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_matches_gpt2() {
        let table = byte_level_table();
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'a'], b'a');
        assert_eq!(table.len(), 256);
    }

    #[test]
    fn byte_pieces() {
        assert_eq!(parse_byte_piece("<0x0A>"), Some(b'\n'));
        assert_eq!(parse_byte_piece("<0x0A"), None);
        assert_eq!(parse_byte_piece("hello"), None);
    }

    #[test]
    fn eos_must_be_in_vocabulary() {
        let bytes = vec![b"a".to_vec(), b"\xFF<eos>".to_vec()];
        assert!(Vocabulary::from_token_bytes(bytes.clone(), &[]).is_err());
        assert!(Vocabulary::from_token_bytes(bytes.clone(), &[2]).is_err());
        let vocabulary = Vocabulary::from_token_bytes(bytes, &[1]).unwrap();
        assert_eq!(vocabulary.size(), 2);
        assert!(vocabulary.is_eos(1));
        assert_eq!(vocabulary.token_bytes(1), None);
        assert_eq!(vocabulary.decode(&[0, 1, 0]), "aa");
    }
}
