//! Overlapping token windows, as upstream's `make_overlapped_chunks`
//! (`providers/utils/memory/vector_store.py`) cuts documents.

use crate::{DocumentError, Tokenizer};

/// A token window of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    /// The decoded window; a character cut at either edge shows as U+FFFD, as upstream's does.
    pub text: String,
    /// Tokens in the window (`size`, fewer for the last windows).
    pub token_count: usize,
}

/// Windows `tokens[i..i + size]` for `i` in `0, size - overlap, 2 * (size - overlap), ...`
/// over the whole token list, each decoded: exactly upstream's
/// `for i in range(0, len(tokens), window_len - overlap_len)`. The last windows are shorter
/// and overlap each other, as upstream's do. Empty text gives no chunks; `size` must be larger
/// than `overlap`.
pub fn overlapped_chunks(
    tokenizer: &Tokenizer,
    text: &str,
    size: usize,
    overlap: usize,
) -> Result<Vec<TextChunk>, DocumentError> {
    if size == 0 || overlap >= size {
        return Err(DocumentError::Invalid(format!(
            "a chunk of {size} tokens cannot overlap the next by {overlap}; the chunk size must \
             be larger than the overlap (upstream uses 512 and 128, or 800 and 400)"
        )));
    }
    let tokens = tokenizer.encode(text);
    let step = size - overlap;
    Ok((0..tokens.len())
        .step_by(step)
        .map(|start| {
            let window = &tokens[start..tokens.len().min(start + size)];
            TextChunk {
                text: tokenizer.decode(window),
                token_count: window.len(),
            }
        })
        .collect())
}
