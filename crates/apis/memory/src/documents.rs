//! Loading a document's text: inline text or content items, or a `data:` or `http(s)` URI
//! fetched under the SSRF policy and extracted by MIME type, and cut into overlapping token
//! windows. The RAG runtime's insert, vector store files and an agent turn's attached
//! documents all read documents this way.

use llama_stack_core::{Error, ErrorKind, Result, now_secs};
use llama_stack_documents::{DocumentError, FetchPolicy, overlapped_chunks, python_repr};
use llama_stack_types::{InterleavedContent, RagDocument};
use serde_json::{Map, Value, json};

use crate::service::MemoryService;
use crate::vector_io::Chunk;

/// A document failure as a domain error naming the document.
pub fn document_error(document_id: &str, err: DocumentError) -> Error {
    let kind = match err {
        DocumentError::Invalid(_) | DocumentError::TooLarge(_) => ErrorKind::InvalidRequest,
        DocumentError::Forbidden(_) => ErrorKind::Forbidden,
        DocumentError::Fetch(_) => ErrorKind::Upstream,
    };
    Error::new(kind, format!("document '{document_id}': {err}"))
}

/// The text of one RAG document: inline text or items, or a `data:`/`http(s)` URI loaded
/// and extracted by MIME type.
pub async fn document_text(doc: &RagDocument, policy: &FetchPolicy) -> Result<String> {
    let uri = match &doc.content {
        Value::String(s)
            if ["http://", "https://", "data:"]
                .iter()
                .any(|p| s.starts_with(p)) =>
        {
            Some(s.clone())
        }
        Value::Object(o) if o.contains_key("uri") && !o.contains_key("type") => {
            o.get("uri").and_then(Value::as_str).map(str::to_string)
        }
        _ => None,
    };
    let Some(uri) = uri else {
        let content: InterleavedContent =
            serde_json::from_value(doc.content.clone()).map_err(|e| {
                Error::invalid(format!(
                    "document '{}': content must be text, content items or {{\"uri\": ...}}: {e}",
                    doc.document_id
                ))
            })?;
        let text = content.as_text(" ");
        // Inline markup says what it is through mime_type; read it as a fetched page would be,
        // so tags and scripts stay out of the chunks.
        return match doc.mime_type.as_deref() {
            Some(mime) if mime.to_ascii_lowercase().contains("html") => {
                let (mime, id) = (mime.to_string(), doc.document_id.clone());
                tokio::task::spawn_blocking(move || {
                    llama_stack_documents::extract_text(text.as_bytes(), Some(&mime), None)
                        .map_err(|e| document_error(&id, e))
                })
                .await
                .map_err(|e| Error::internal(format!("text extraction task failed: {e}")))?
            }
            _ => Ok(text),
        };
    };
    let loaded = llama_stack_documents::load_uri(&uri, policy)
        .await
        .map_err(|e| document_error(&doc.document_id, e))?;
    let mime = doc.mime_type.clone().or(loaded.mime_type);
    // A data: URL has no file name, and its tail is payload, not something to show.
    let name = (!uri.starts_with("data:"))
        .then(|| uri.rsplit('/').next().map(str::to_string))
        .flatten();
    let id = doc.document_id.clone();
    tokio::task::spawn_blocking(move || {
        llama_stack_documents::extract_text(&loaded.bytes, mime.as_deref(), name.as_deref())
            .map_err(|e| document_error(&id, e))
    })
    .await
    .map_err(|e| Error::internal(format!("text extraction task failed: {e}")))?
}

impl MemoryService {
    /// Cuts a document into overlapping token windows with the upstream metadata.
    pub async fn chunk_document(
        &self,
        document_id: &str,
        text: String,
        metadata: &Map<String, Value>,
        size: usize,
        overlap: usize,
    ) -> Result<Vec<Chunk>> {
        let tokenizer = self.chunk_tokenizer();
        let metadata_repr = python_repr(&Value::Object(metadata.clone()));
        let (windows, metadata_tokens) = tokio::task::spawn_blocking(move || {
            let windows = overlapped_chunks(&tokenizer, &text, size, overlap);
            (windows, tokenizer.count(&metadata_repr))
        })
        .await
        .map_err(|e| Error::internal(format!("chunking task failed: {e}")))?;
        let windows = windows.map_err(|e| document_error(document_id, e))?;
        let tokenizer_name = self.chunk_tokenizer().name().to_string();
        let now = now_secs();
        let step = size - overlap;
        Ok(windows
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let mut meta = metadata.clone();
                meta.insert("document_id".into(), json!(document_id));
                meta.insert("token_count".into(), json!(w.token_count));
                meta.insert("metadata_token_count".into(), json!(metadata_tokens));
                let start = i * step;
                let window = format!("{start}-{}", start + w.token_count);
                let chunk_id = uuid::Uuid::new_v5(
                    &uuid::Uuid::NAMESPACE_OID,
                    format!("{document_id}:{window}:{}", w.text).as_bytes(),
                )
                .to_string();
                let mut chunk_metadata = Map::new();
                chunk_metadata.insert("chunk_id".into(), json!(chunk_id));
                chunk_metadata.insert("document_id".into(), json!(document_id));
                chunk_metadata.insert(
                    "source".into(),
                    metadata.get("source").cloned().unwrap_or(Value::Null),
                );
                chunk_metadata.insert("created_timestamp".into(), json!(now));
                chunk_metadata.insert("updated_timestamp".into(), json!(now));
                chunk_metadata.insert("chunk_window".into(), json!(window));
                chunk_metadata.insert("chunk_tokenizer".into(), json!(tokenizer_name));
                chunk_metadata.insert("content_token_count".into(), json!(w.token_count));
                chunk_metadata.insert("metadata_token_count".into(), json!(metadata_tokens));
                Chunk {
                    content: InterleavedContent::Text(w.text),
                    metadata: meta,
                    embedding: None,
                    chunk_id: Some(chunk_id),
                    chunk_metadata: Some(chunk_metadata),
                }
            })
            .collect())
    }
}
