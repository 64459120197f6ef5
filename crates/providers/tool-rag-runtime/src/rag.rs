//! The RAG tool: `rag-tool/insert` (documents → overlapping token chunks → vector DB) and
//! `rag-tool/query` / `knowledge_search` (search several DBs, render the results as the
//! model reads them).

use std::sync::Arc;

use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_documents::{FetchPolicy, python_repr};
use llama_stack_memory::{MemoryApi, Mode, QueryParams, document_text};
use llama_stack_types::{
    InterleavedContent, RagDocument, RagInsertRequest, RagQueryRequest, RagQueryResult,
};
use serde_json::{Map, Value, json};

use crate::jobs::{RagJobs, goes_to_background, loaded_bytes};

/// The default chunk size of `rag-tool/insert`; the overlap is a quarter of it.
pub const DEFAULT_CHUNK_TOKENS: usize = 512;
pub const DEFAULT_CHUNK_TEMPLATE: &str =
    "Result {index}\nContent: {chunk.content}\nMetadata: {metadata}\n";

/// `query_config` of the RAG tool.
#[derive(Debug, Clone, PartialEq)]
pub struct RagQueryConfig {
    pub max_tokens_in_context: usize,
    pub max_chunks: usize,
    pub chunk_template: String,
    pub mode: Mode,
    /// Joins the query's content items (the `default` query generator).
    pub separator: String,
}

impl Default for RagQueryConfig {
    fn default() -> Self {
        RagQueryConfig {
            max_tokens_in_context: 4096,
            max_chunks: 5,
            chunk_template: DEFAULT_CHUNK_TEMPLATE.into(),
            mode: Mode::Vector,
            separator: " ".into(),
        }
    }
}

impl RagQueryConfig {
    pub fn parse(value: Option<&Value>) -> Result<RagQueryConfig> {
        let mut out = RagQueryConfig::default();
        let Some(obj) = value.filter(|v| !v.is_null()) else {
            return Ok(out);
        };
        let at = |key: &str, msg: String| {
            Error::invalid(msg).with_location(vec![
                "body".into(),
                "query_config".into(),
                key.into(),
            ])
        };
        let obj = obj
            .as_object()
            .ok_or_else(|| at("", format!("query_config must be an object, got {obj}")))?;
        let positive = |key: &str| -> Result<Option<usize>> {
            match obj.get(key).filter(|v| !v.is_null()) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| at(key, format!("{key} must be a positive integer, got {v}"))),
            }
        };
        if let Some(n) = positive("max_tokens_in_context")? {
            out.max_tokens_in_context = n;
        }
        if let Some(n) = positive("max_chunks")? {
            out.max_chunks = n;
        }
        if let Some(t) = obj.get("chunk_template").filter(|v| !v.is_null()) {
            let t = t
                .as_str()
                .ok_or_else(|| at("chunk_template", "chunk_template must be a string".into()))?;
            if !t.contains("{chunk.content}") || !t.contains("{index}") {
                return Err(at(
                    "chunk_template",
                    "chunk_template must contain {chunk.content} and {index}".into(),
                ));
            }
            out.chunk_template = t.to_string();
        }
        if let Some(generator) = obj.get("query_generator_config").filter(|v| !v.is_null()) {
            match generator.get("type").and_then(Value::as_str) {
                Some("default") | None => {
                    if let Some(sep) = generator.get("separator").and_then(Value::as_str) {
                        out.separator = sep.to_string();
                    }
                }
                Some("llm") => {
                    return Err(Error::unsupported(
                        "query_generator_config type 'llm' is not supported yet; use {\"type\": \"default\"}",
                    ));
                }
                Some(other) => {
                    return Err(at(
                        "query_generator_config",
                        format!("unknown query generator '{other}'; use 'default'"),
                    ));
                }
            }
        }
        let mut params = Map::new();
        for key in ["mode", "reranker_type", "reranker_params"] {
            if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
                params.insert(key.into(), v.clone());
            }
        }
        if let Some(ranker) = obj.get("ranker").filter(|v| !v.is_null()) {
            if let Some(t) = ranker.get("type") {
                params.insert("reranker_type".into(), t.clone());
            }
            params.insert("reranker_params".into(), ranker.clone());
        }
        out.mode = QueryParams::parse(Some(&params))?.mode;
        Ok(out)
    }
}

/// `chunk_template.format(index=.., chunk=.., metadata=..)` for the three fields upstream
/// templates use, with `{{`/`}}` escapes.
fn format_template(template: &str, index: usize, content: &str, metadata: &str) -> String {
    const FIELDS: [&str; 3] = ["{index}", "{chunk.content}", "{metadata}"];
    let mut out = String::with_capacity(template.len() + content.len() + metadata.len());
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            out.push('{');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            out.push('}');
            rest = r;
        } else if let Some(field) = FIELDS.iter().find(|f| rest.starts_with(**f)) {
            match *field {
                "{index}" => out.push_str(&index.to_string()),
                "{chunk.content}" => out.push_str(content),
                _ => out.push_str(metadata),
            }
            rest = &rest[field.len()..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The `knowledge_search` text items for chunks (best first) and the query.
pub fn render_knowledge_search(
    chunks: &[(Value, f32)],
    query: &str,
    config: &RagQueryConfig,
) -> (Vec<Value>, Map<String, Value>) {
    let mut items = vec![json!({"type": "text", "text": format!(
        "knowledge_search tool found {} chunks:\nBEGIN of knowledge_search tool results.\n",
        chunks.len()
    )})];
    let mut tokens = 0u64;
    let mut document_ids = Vec::new();
    let mut contents = Vec::new();
    let mut scores = Vec::new();
    for (i, (chunk, score)) in chunks.iter().enumerate() {
        let metadata = chunk
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        tokens += metadata
            .get("token_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        tokens += metadata
            .get("metadata_token_count")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if tokens > config.max_tokens_in_context as u64 {
            tracing::warn!(
                tokens,
                limit = config.max_tokens_in_context,
                "knowledge_search results cut at max_tokens_in_context"
            );
            break;
        }
        let shown: Map<String, Value> = metadata
            .iter()
            .filter(|(k, _)| *k != "token_count" && *k != "metadata_token_count")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let content = chunk
            .get("content")
            .cloned()
            .and_then(|c| serde_json::from_value::<InterleavedContent>(c).ok())
            .map(|c| c.as_text(" "))
            .unwrap_or_default();
        items.push(json!({"type": "text", "text": format_template(
            &config.chunk_template, i + 1, &content, &python_repr(&Value::Object(shown)))}));
        document_ids.push(metadata.get("document_id").cloned().unwrap_or(Value::Null));
        contents.push(chunk.get("content").cloned().unwrap_or(Value::Null));
        scores.push(json!(score));
    }
    items.push(json!({"type": "text", "text": "END of knowledge_search tool results.\n"}));
    items.push(json!({"type": "text", "text": format!(
        "The above results were retrieved to help answer the user's query: \"{query}\". Use them as supporting information only in answering this query.\n"
    )}));
    let mut meta = Map::new();
    meta.insert("document_ids".into(), Value::Array(document_ids));
    meta.insert("chunks".into(), Value::Array(contents));
    meta.insert("scores".into(), Value::Array(scores));
    (items, meta)
}

/// The RAG tool over the memory API, with the limits for loading documents by URL.
pub struct RagTool {
    pub memory: Arc<dyn MemoryApi>,
    pub fetch: FetchPolicy,
    /// Background inserts, where the distribution has a metadata store to keep them in.
    pub jobs: Option<Arc<RagJobs>>,
}

/// Cuts one loaded document into chunks and stores them in one insert call, so that it is
/// stored whole or not at all; answers how many chunks it made.
pub(crate) async fn insert_document(
    memory: &dyn MemoryApi,
    store_id: &str,
    document_id: &str,
    text: String,
    metadata: &Map<String, Value>,
    size: usize,
) -> Result<usize> {
    let chunks = memory
        .chunk_document(document_id, text, metadata, size, size / 4)
        .await?;
    let n = chunks.len();
    memory.insert_chunks_into(store_id, chunks).await?;
    Ok(n)
}

impl RagTool {
    /// The checks before any document is loaded: the vector DB is writable by the caller and
    /// the chunk size usable. Answers the chunk size.
    async fn check_insert(&self, request: &RagInsertRequest) -> Result<usize> {
        self.memory
            .check_store_writable(&request.vector_db_id)
            .await?;
        let size = request.chunk_size_in_tokens.unwrap_or(DEFAULT_CHUNK_TOKENS);
        if size < 4 {
            return Err(Error::invalid(format!(
                "chunk_size_in_tokens must be at least 4, got {size}"
            ))
            .with_location(vec!["body".into(), "chunk_size_in_tokens".into()]));
        }
        Ok(size)
    }

    /// Each document's text, or why it could not be loaded.
    async fn load(&self, documents: &[RagDocument]) -> Vec<Result<String>> {
        let mut texts = Vec::with_capacity(documents.len());
        for doc in documents {
            texts.push(document_text(doc, &self.fetch).await);
        }
        texts
    }

    /// `POST /v1/tool-runtime/rag-tool/insert`, always inline. Each document is loaded and
    /// chunked on its own; documents that fail are reported together after the others are
    /// inserted.
    pub async fn rag_insert(&self, request: RagInsertRequest) -> Result<()> {
        let size = self.check_insert(&request).await?;
        let texts = self.load(&request.documents).await;
        self.insert_loaded(&request, texts, size).await
    }

    /// `POST /v1/tool-runtime/rag-tool/insert` over HTTP: inline (answering `None`) unless the
    /// documents' loaded text is over `background_insert_bytes`; then a background job,
    /// answered at once with its object.
    pub async fn rag_insert_or_job(&self, request: RagInsertRequest) -> Result<Option<Value>> {
        let size = self.check_insert(&request).await?;
        let texts = self.load(&request.documents).await;
        match &self.jobs {
            Some(jobs) if goes_to_background(jobs.bound, loaded_bytes(&texts)) => jobs
                .create(&request.vector_db_id, size, &request.documents, texts)
                .await
                .map(Some),
            _ => self
                .insert_loaded(&request, texts, size)
                .await
                .map(|()| None),
        }
    }

    async fn insert_loaded(
        &self,
        request: &RagInsertRequest,
        texts: Vec<Result<String>>,
        size: usize,
    ) -> Result<()> {
        let store_id = request.vector_db_id.as_str();
        let total = request.documents.len();
        let mut failures = Vec::new();
        let mut inserted_chunks = 0usize;
        for (i, (doc, text)) in request.documents.iter().zip(texts).enumerate() {
            let result = match text {
                Ok(text) => {
                    insert_document(
                        self.memory.as_ref(),
                        store_id,
                        &doc.document_id,
                        text,
                        &doc.metadata,
                        size,
                    )
                    .await
                }
                Err(err) => Err(err),
            };
            match result {
                Ok(n) => {
                    inserted_chunks += n;
                    tracing::info!(store = %store_id, document = %doc.document_id,
                        progress = %format!("{}/{total}", i + 1), chunks = n, "Ingested document");
                }
                Err(err) => {
                    tracing::warn!(store = %store_id, document = %doc.document_id,
                        progress = %format!("{}/{total}", i + 1), error = %err.message(), "Document not ingested");
                    failures.push(err);
                }
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let kind = if failures.len() == total {
            failures[0].kind()
        } else {
            ErrorKind::InvalidRequest
        };
        Err(Error::new(
            kind,
            format!(
                "{} of {total} documents were not inserted ({} chunks from the others were): {}",
                failures.len(),
                inserted_chunks,
                failures
                    .iter()
                    .map(|e| e.message().to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        ))
    }

    /// `POST /v1/tool-runtime/rag-tool/query`.
    pub async fn rag_query(&self, request: RagQueryRequest) -> Result<RagQueryResult> {
        let config = RagQueryConfig::parse(request.query_config.as_ref())?;
        if request.vector_db_ids.is_empty() {
            return Err(
                Error::invalid("vector_db_ids must name at least one vector DB")
                    .with_location(vec!["body".into(), "vector_db_ids".into()]),
            );
        }
        let query = request.content.as_text(&config.separator);
        let params = QueryParams {
            max_chunks: config.max_chunks,
            mode: config.mode,
            score_threshold: 0.0,
        };
        let mut all: Vec<(Value, f32)> = Vec::new();
        for id in &request.vector_db_ids {
            for hit in self.memory.search_chunks(id, &query, &params).await? {
                all.push((hit.document, hit.score));
            }
        }
        if all.is_empty() {
            return Ok(RagQueryResult {
                content: None,
                metadata: Map::new(),
            });
        }
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        all.truncate(config.max_chunks);
        let (items, metadata) = render_knowledge_search(&all, &query, &config);
        Ok(RagQueryResult {
            content: Some(Value::Array(items)),
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_results_as_upstream() {
        let chunks = vec![
            (
                json!({"content": "Paris is in France.", "metadata": {"document_id": "doc1", "token_count": 5, "metadata_token_count": 3, "author": "x"}}),
                2.0,
            ),
            (
                json!({"content": "Berlin is in Germany.", "metadata": {"document_id": "doc2", "token_count": 5, "metadata_token_count": 3}}),
                1.0,
            ),
        ];
        let (items, meta) =
            render_knowledge_search(&chunks, "capital?", &RagQueryConfig::default());
        let texts: Vec<&str> = items.iter().map(|i| i["text"].as_str().unwrap()).collect();
        assert_eq!(
            texts[0],
            "knowledge_search tool found 2 chunks:\nBEGIN of knowledge_search tool results.\n"
        );
        assert_eq!(
            texts[1],
            "Result 1\nContent: Paris is in France.\nMetadata: {'document_id': 'doc1', 'author': 'x'}\n"
        );
        assert_eq!(texts[3], "END of knowledge_search tool results.\n");
        assert_eq!(
            texts[4],
            "The above results were retrieved to help answer the user's query: \"capital?\". Use them as supporting information only in answering this query.\n"
        );
        assert_eq!(meta["document_ids"], json!(["doc1", "doc2"]));
    }

    #[test]
    fn stops_at_the_token_budget() {
        let chunk = |id: &str| {
            (
                json!({"content": "x", "metadata": {"document_id": id, "token_count": 60, "metadata_token_count": 10}}),
                1.0,
            )
        };
        let config = RagQueryConfig {
            max_tokens_in_context: 150,
            ..Default::default()
        };
        let (items, meta) =
            render_knowledge_search(&[chunk("a"), chunk("b"), chunk("c")], "q", &config);
        assert_eq!(items.len(), 5, "header, two results, footer and query line");
        assert_eq!(meta["document_ids"], json!(["a", "b"]));
    }

    #[test]
    fn templates_format_like_python() {
        assert_eq!(
            format_template("{{x}} {index}: {chunk.content} {metadata}", 3, "c", "{}"),
            "{x} 3: c {}"
        );
        let err =
            RagQueryConfig::parse(Some(&json!({"chunk_template": "{metadata}"}))).unwrap_err();
        assert!(err.message().contains("{chunk.content}"));
    }
}
