//! Documents for the memory APIs: loading a URI (`data:`, `http(s)`), extracting text from
//! plain text, markdown, HTML and PDF, and cutting text into overlapping token windows with
//! the Llama 3 tokenizer.

use std::time::Duration;

/// What went wrong with one document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The document or URI is malformed or of an unsupported kind.
    #[error("{0}")]
    Invalid(String),
    /// The URI points at an address the fetch policy refuses.
    #[error("{0}")]
    Forbidden(String),
    /// The document is larger than the fetch policy allows.
    #[error("{0}")]
    TooLarge(String),
    /// The remote server failed or timed out.
    #[error("{0}")]
    Fetch(String),
}

/// Limits on fetching `http(s)` documents.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Allow loopback, private, link-local and other non-public addresses.
    pub allow_private_addresses: bool,
    pub max_bytes: u64,
    pub timeout: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_private_addresses: false,
            max_bytes: 50 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Bytes loaded from a URI.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub bytes: Vec<u8>,
    /// From the data URL or the `Content-Type` header, without parameters.
    pub mime_type: Option<String>,
}

/// Loads a `data:` or `http(s)` URI.
pub async fn load_uri(_uri: &str, _policy: &FetchPolicy) -> Result<Loaded, DocumentError> {
    Err(DocumentError::Invalid("loading URIs is not built yet".into()))
}

/// The text of a document, chosen by MIME type, then file name, then content sniffing.
pub fn extract_text(
    bytes: &[u8],
    _mime_type: Option<&str>,
    _file_name: Option<&str>,
) -> Result<String, DocumentError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| DocumentError::Invalid(e.to_string()))
}

/// A token window of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    pub text: String,
    pub token_count: usize,
}

/// The tokenizer chunking counts with.
pub struct Tokenizer {
    name: String,
}

impl Tokenizer {
    /// The Llama 3 tokenizer from `LLAMA3_TOKENIZER_MODEL` or
    /// `~/.llama/tokenizer/llama3/tokenizer.model`; when neither exists, a fallback with a
    /// warning message saying how to get the real one.
    pub fn load_default() -> (Tokenizer, Option<String>) {
        (
            Tokenizer {
                name: "whitespace".into(),
            },
            Some("not built".into()),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn count(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

/// Windows of `size` tokens advancing by `size - overlap`.
pub fn overlapped_chunks(
    _tokenizer: &Tokenizer,
    text: &str,
    _size: usize,
    _overlap: usize,
) -> Vec<TextChunk> {
    vec![TextChunk {
        text: text.to_string(),
        token_count: text.split_whitespace().count(),
    }]
}

/// Python's `repr` of a JSON value (`{'a': 1, 'b': True, 'c': None}`), as upstream renders
/// chunk metadata into prompts.
pub fn python_repr(value: &serde_json::Value) -> String {
    value.to_string()
}
