//! Prompt tokenization.
//!
//! Special tokens enter a prompt only where the chat format puts them. A user who types
//! `<|eot_id|>` gets those characters encoded as plain text, as Meta's tokenizer does (it
//! allows no special tokens inside text); otherwise message text could forge turn boundaries.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use llama_stack_core::{Error, Result};
use llama_stack_llama3::Piece;
use tokenizers::Tokenizer;

use crate::model_files::{TokenizerSource, tokenizer_json};

pub(crate) struct PromptTokenizer {
    full: Arc<Tokenizer>,
    source: TokenizerSource,
    /// The same tokenizer without its added tokens; built on first need, as parsing the
    /// vocabulary again costs most of a second.
    plain: OnceLock<std::result::Result<Tokenizer, String>>,
}

impl PromptTokenizer {
    pub fn new(full: Arc<Tokenizer>, source: TokenizerSource) -> Self {
        PromptTokenizer {
            full,
            source,
            plain: OnceLock::new(),
        }
    }

    fn plain(&self) -> Result<&Tokenizer> {
        self.plain
            .get_or_init(|| {
                let mut json = tokenizer_json(&self.source).map_err(|e| e.to_string())?;
                json["added_tokens"] = serde_json::Value::Array(Vec::new());
                Tokenizer::from_str(&json.to_string()).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| {
                Error::internal(format!(
                    "cannot build the plain-text tokenizer from {:?}: {e}",
                    self.source
                ))
            })
    }

    fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        let holds_special = self
            .full
            .get_added_tokens_decoder()
            .values()
            .any(|t| text.contains(t.content.as_str()));
        let tokenizer = if holds_special {
            self.plain()?
        } else {
            &self.full
        };
        let encoding = tokenizer
            .encode_fast(text, false)
            .map_err(|e| Error::internal(format!("tokenization failed: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a rendered prompt.
    pub fn encode(&self, pieces: &[Piece]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Special(id) => ids.push(*id),
                Piece::Text(text) => ids.extend(self.encode_text(text)?),
            }
        }
        Ok(ids)
    }
}
