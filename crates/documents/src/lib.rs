//! Documents for the memory APIs: loading a URI (`data:`, `http(s)`), extracting text from
//! plain text, markdown, HTML and PDF, and cutting text into overlapping token windows with
//! the Llama 3 tokenizer, exactly as upstream's `make_overlapped_chunks` does.
//!
//! Owns the fetch policy that keeps document URLs from reaching private networks (SSRF), and
//! the Python `repr` of JSON values that upstream renders chunk metadata with. Of the
//! workspace it depends only on `llama-stack-llama3` (the tokenizer tables); never on core, a
//! provider or a transport (core depends on this crate).

mod addresses;
mod chunk;
mod data_url;
mod extract;
mod fetch;
mod html;
mod python_repr;
mod tokenizer;

use std::time::Duration;

pub use addresses::{AddressClass, classify_ip};
pub use chunk::{TextChunk, overlapped_chunks};
pub use extract::extract_text;
pub use fetch::{checked_destination, load_uri};
pub use python_repr::python_repr;
pub use tokenizer::Tokenizer;

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
    /// Largest body accepted, in bytes; larger documents are refused while streaming.
    pub max_bytes: u64,
    /// Budget for the whole fetch, redirects included.
    pub timeout: Duration,
    /// Where these limits are configured, named in the errors that hit them.
    pub settings: FetchSettings,
}

/// The names an error gives for the setting behind each limit of a [`FetchPolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSettings {
    /// What is fetched: "a document", "an image".
    pub item: &'static str,
    /// The config block holding the settings.
    pub place: &'static str,
    pub max_bytes: &'static str,
    pub timeout: &'static str,
    pub allow_private_addresses: &'static str,
}

impl FetchSettings {
    /// The rag-runtime tool provider's document settings.
    pub const RAG_RUNTIME: FetchSettings = FetchSettings {
        item: "a document",
        place: "the rag-runtime provider config",
        max_bytes: "max_document_bytes",
        timeout: "fetch_timeout_seconds",
        allow_private_addresses: "allow_private_addresses",
    };
}

impl Default for FetchPolicy {
    fn default() -> Self {
        FetchPolicy {
            allow_private_addresses: false,
            max_bytes: 50 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            settings: FetchSettings::RAG_RUNTIME,
        }
    }
}

/// Bytes loaded from a URI.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The document; text declared in another charset has been converted to UTF-8.
    pub bytes: Vec<u8>,
    /// From the data URL or the `Content-Type` header, without parameters.
    pub mime_type: Option<String>,
}
