//! `/v1/vector-io/insert` and `/v1/vector-io/query`: embedding chunks, checking them against
//! the store, and searching in vector, keyword or hybrid mode.

use std::collections::HashMap;

use llama_stack_types::{
    EmbeddingsRequest, InsertChunksRequest, QueryChunksRequest, QueryChunksResponse,
};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::service::MemoryService;
use crate::service::{StoreRecord, VECTOR_DB, now_secs};
use crate::vector_io::{Chunk, Filter, ScoredChunk, SearchMode, SearchRequest, StoredChunk};
use llama_stack_core::access::Action;
use llama_stack_core::{Error, Result};

/// Texts embedded per call to the embedding model.
const EMBED_BATCH: usize = 64;
/// `text_truncation` that keeps the start of a text longer than the embedding model reads.
const TRUNCATE_KEEP_START: &str = "end";

/// How results are ranked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Vector,
    Keyword,
    /// Both, fused with reciprocal-rank fusion (`impact_factor`, 60 by default).
    HybridRrf {
        impact_factor: f32,
    },
    /// Both, min-max normalised and mixed: `alpha * vector + (1 - alpha) * keyword`.
    HybridWeighted {
        alpha: f32,
    },
}

/// The `params` of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryParams {
    pub max_chunks: usize,
    pub mode: Mode,
    pub score_threshold: f32,
}

impl Default for QueryParams {
    fn default() -> Self {
        QueryParams {
            max_chunks: 3,
            mode: Mode::Vector,
            score_threshold: 0.0,
        }
    }
}

fn param_error(key: &str, message: String) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), "params".into(), key.into()])
}

impl QueryParams {
    /// Reads `max_chunks`, `mode`, `score_threshold`, `reranker_type` and `reranker_params`.
    pub fn parse(params: Option<&Map<String, Value>>) -> Result<QueryParams> {
        let mut out = QueryParams::default();
        let Some(params) = params else {
            return Ok(out);
        };
        if let Some(v) = params.get("max_chunks").filter(|v| !v.is_null()) {
            out.max_chunks = v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                param_error(
                    "max_chunks",
                    format!("max_chunks must be a positive integer, got {v}"),
                )
            })? as usize;
        }
        if let Some(v) = params.get("score_threshold").filter(|v| !v.is_null()) {
            out.score_threshold = v.as_f64().ok_or_else(|| {
                param_error(
                    "score_threshold",
                    format!("score_threshold must be a number, got {v}"),
                )
            })? as f32;
        }
        let mode = params
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("vector");
        out.mode = match mode {
            "vector" => Mode::Vector,
            "keyword" => Mode::Keyword,
            "hybrid" => {
                let reranker = params
                    .get("reranker_type")
                    .and_then(Value::as_str)
                    .unwrap_or("rrf");
                let rp = params.get("reranker_params");
                let number = |key: &str| rp.and_then(|p| p.get(key)).and_then(Value::as_f64);
                match reranker {
                    "rrf" => Mode::HybridRrf {
                        impact_factor: number("impact_factor").unwrap_or(60.0) as f32,
                    },
                    "weighted" => {
                        let alpha = number("alpha").unwrap_or(0.5);
                        if !(0.0..=1.0).contains(&alpha) {
                            return Err(param_error(
                                "reranker_params",
                                format!("alpha must be between 0 and 1, got {alpha}"),
                            ));
                        }
                        Mode::HybridWeighted {
                            alpha: alpha as f32,
                        }
                    }
                    other => {
                        return Err(param_error(
                            "reranker_type",
                            format!("unknown reranker_type '{other}'; use 'rrf' or 'weighted'"),
                        ));
                    }
                }
            }
            other => {
                return Err(param_error(
                    "mode",
                    format!("unknown search mode '{other}'; use 'vector', 'keyword' or 'hybrid'"),
                ));
            }
        };
        Ok(out)
    }
}

/// Reciprocal-rank fusion of ranked lists of chunk ids: `sum(1 / (impact_factor + rank))`,
/// ranks from 1. Returns ids with fused scores, best first (ties by first appearance).
pub fn fuse_rrf(lists: &[Vec<String>], impact_factor: f32) -> Vec<(String, f32)> {
    let mut scores: Vec<(String, f32)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for list in lists {
        for (rank, id) in list.iter().enumerate() {
            let add = 1.0 / (impact_factor + rank as f32 + 1.0);
            match index.get(id) {
                Some(&i) => scores[i].1 += add,
                None => {
                    index.insert(id.clone(), scores.len());
                    scores.push((id.clone(), add));
                }
            }
        }
    }
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

/// Chunks to insert, before embedding.
pub(crate) struct PendingChunk {
    pub chunk: Chunk,
    pub file_id: Option<String>,
    /// Attributes filters see besides the chunk's metadata (a file's attributes).
    pub extra_attributes: Map<String, Value>,
}

impl MemoryService {
    /// `POST /v1/vector-io/insert`.
    pub async fn insert_chunks(&self, request: InsertChunksRequest) -> Result<()> {
        let (record, _) = self
            .resolve_as(Action::Update, VECTOR_DB, &request.vector_db_id)
            .await?;
        if let Some(ttl) = request.ttl_seconds
            && ttl <= 0
        {
            return Err(
                Error::invalid(format!("ttl_seconds must be positive, got {ttl}"))
                    .with_location(vec!["body".into(), "ttl_seconds".into()]),
            );
        }
        let mut pending = Vec::with_capacity(request.chunks.len());
        for (i, value) in request.chunks.into_iter().enumerate() {
            let chunk: Chunk = serde_json::from_value(value).map_err(|e| {
                Error::invalid(format!(
                    "chunk {i} is not a valid chunk ({{content, metadata, embedding}}): {e}"
                ))
                .with_location(vec!["body".into(), "chunks".into(), i.into()])
            })?;
            pending.push(PendingChunk {
                chunk,
                file_id: None,
                extra_attributes: Map::new(),
            });
        }
        let expires_at = request.ttl_seconds.map(|ttl| now_secs() + ttl);
        self.insert_pending(&record, pending, expires_at).await
    }

    /// Embeds what lacks an embedding, checks dimensions, and stores all chunks or none.
    pub(crate) async fn insert_pending(
        &self,
        record: &StoreRecord,
        pending: Vec<PendingChunk>,
        expires_at: Option<i64>,
    ) -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let (_, provider) = self.resolve_store(&record.identifier).await?;
        let dim = record.embedding_dimension as usize;
        let mut prepared = Vec::with_capacity(pending.len());
        for (i, p) in pending.into_iter().enumerate() {
            let mut chunk = p.chunk;
            if let Some(e) = &chunk.embedding
                && e.len() != dim
            {
                return Err(Error::invalid(format!(
                    "chunk {i} has an embedding of {} dimensions, but vector DB '{}' stores {dim}-dimensional embeddings (model '{}')",
                    e.len(),
                    record.identifier,
                    record.embedding_model
                ))
                .with_location(vec!["body".into(), "chunks".into(), i.into(), "embedding".into()]));
            }
            let text = chunk.content.as_text(" ");
            let chunk_id = chunk
                .chunk_id
                .clone()
                .or_else(|| match chunk.metadata.remove("chunk_id") {
                    Some(Value::String(s)) => Some(s),
                    Some(other) => Some(other.to_string()),
                    None => None,
                })
                .unwrap_or_else(|| derived_chunk_id(&chunk.metadata, &text));
            chunk.chunk_id = Some(chunk_id);
            prepared.push((chunk, text, p.file_id, p.extra_attributes));
        }
        let missing: Vec<usize> = prepared
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0.embedding.is_none())
            .map(|(i, _)| i)
            .collect();
        let mut computed: HashMap<usize, Vec<f32>> = HashMap::with_capacity(missing.len());
        let batches = missing.len().div_ceil(EMBED_BATCH);
        for (b, batch) in missing.chunks(EMBED_BATCH).enumerate() {
            let contents = batch
                .iter()
                .map(|&i| Value::String(prepared[i].1.clone()))
                .collect();
            let vectors = self
                .inference
                .embed(EmbeddingsRequest {
                    model_id: record.embedding_model.clone(),
                    contents,
                    // A 512-token chunk is often longer than the embedding model reads;
                    // upstream's sentence-transformers keeps the start, so do the same.
                    text_truncation: Some(TRUNCATE_KEEP_START.into()),
                    output_dimension: None,
                    task_type: None,
                })
                .await
                .map_err(|e| {
                    Error::new(
                        e.kind(),
                        format!(
                            "embedding chunks with '{}' failed: {}",
                            record.embedding_model,
                            e.message()
                        ),
                    )
                })?
                .vectors;
            for (&i, v) in batch.iter().zip(vectors) {
                if v.len() != dim {
                    return Err(Error::internal(format!(
                        "embedding model '{}' returned {} dimensions; vector DB '{}' expects {dim}",
                        record.embedding_model,
                        v.len(),
                        record.identifier
                    )));
                }
                computed.insert(i, v);
            }
            if batches > 4 {
                tracing::info!(store = %record.identifier, batch = b + 1, of = batches,
                    "Embedding chunks");
            }
        }
        let stored: Vec<StoredChunk> = prepared
            .into_iter()
            .enumerate()
            .map(|(i, (chunk, text, file_id, extra))| {
                let embedding = chunk
                    .embedding
                    .clone()
                    .or_else(|| computed.remove(&i))
                    .unwrap_or_default();
                let mut attributes = extra;
                for (k, v) in &chunk.metadata {
                    attributes.entry(k.clone()).or_insert_with(|| v.clone());
                }
                StoredChunk {
                    chunk_id: chunk.chunk_id.clone().unwrap_or_default(),
                    text,
                    document: serde_json::to_value(&chunk).unwrap_or(Value::Null),
                    attributes,
                    embedding,
                    file_id,
                    expires_at,
                }
            })
            .collect();
        let count = stored.len();
        provider
            .insert(&record.provider_resource_id, stored)
            .await?;
        tracing::debug!(store = %record.identifier, chunks = count, "Inserted chunks");
        Ok(())
    }

    /// `POST /v1/vector-io/query`.
    pub async fn query_chunks(&self, request: QueryChunksRequest) -> Result<QueryChunksResponse> {
        let params = QueryParams::parse(request.params.as_ref())?;
        let text = request.query.as_text(" ");
        let hits = self
            .search_store(VECTOR_DB, &request.vector_db_id, &text, &params, None)
            .await?;
        let mut chunks = Vec::with_capacity(hits.len());
        let mut scores = Vec::with_capacity(hits.len());
        for hit in hits {
            chunks.push(hit.document);
            scores.push(hit.score);
        }
        Ok(QueryChunksResponse { chunks, scores })
    }

    /// Searches one store the caller may read as `resource_type`, in any mode, dropping hits
    /// under the score threshold.
    pub(crate) async fn search_store(
        &self,
        resource_type: &str,
        store_id: &str,
        text: &str,
        params: &QueryParams,
        filter: Option<Filter>,
    ) -> Result<Vec<ScoredChunk>> {
        let span = search_span(store_id, mode_label(params.mode));
        self.search_store_in_span(resource_type, store_id, text, params, filter)
            .instrument(span)
            .await
    }

    async fn search_store_in_span(
        &self,
        resource_type: &str,
        store_id: &str,
        text: &str,
        params: &QueryParams,
        filter: Option<Filter>,
    ) -> Result<Vec<ScoredChunk>> {
        let started = std::time::Instant::now();
        let (record, provider) = self
            .resolve_as(Action::Read, resource_type, store_id)
            .await?;
        tracing::Span::current().record(
            "llama_stack.vector_io.provider",
            record.provider_id.as_str(),
        );
        let k = params.max_chunks;
        let needs_vector = !matches!(params.mode, Mode::Keyword);
        let embedding = if needs_vector {
            Some(self.embed_query(&record, text).await?)
        } else {
            None
        };
        let search = |mode: SearchMode| SearchRequest {
            mode,
            embedding: embedding.clone(),
            text: text.to_string(),
            k,
            filter: filter.clone(),
        };
        let id = &record.provider_resource_id;
        let mut hits = match params.mode {
            Mode::Vector => provider.search(id, &search(SearchMode::Vector)).await?,
            Mode::Keyword => provider.search(id, &search(SearchMode::Keyword)).await?,
            Mode::HybridRrf { impact_factor } => {
                let (vector, keyword) = (search(SearchMode::Vector), search(SearchMode::Keyword));
                let (v, kw) =
                    tokio::try_join!(provider.search(id, &vector), provider.search(id, &keyword))?;
                let lists = [ids(&v), ids(&kw)];
                let fused = fuse_rrf(&lists, impact_factor);
                pick(fused, v.into_iter().chain(kw), k)
            }
            Mode::HybridWeighted { alpha } => {
                let (vector, keyword) = (search(SearchMode::Vector), search(SearchMode::Keyword));
                let (v, kw) =
                    tokio::try_join!(provider.search(id, &vector), provider.search(id, &keyword))?;
                let mut mixed: HashMap<String, f32> = HashMap::new();
                for (hits, weight) in [(&v, alpha), (&kw, 1.0 - alpha)] {
                    for (id, s) in normalized(hits) {
                        *mixed.entry(id).or_default() += weight * s;
                    }
                }
                let mut fused: Vec<(String, f32)> = mixed.into_iter().collect();
                fused.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                pick(fused, v.into_iter().chain(kw), k)
            }
        };
        hits.retain(|h| h.score >= params.score_threshold);
        hits.truncate(k);
        llama_stack_core::metrics::vector_query(mode_label(params.mode), started.elapsed());
        Ok(hits)
    }

    pub(crate) async fn embed_query(&self, record: &StoreRecord, text: &str) -> Result<Vec<f32>> {
        let mut vectors = self
            .inference
            .embed(EmbeddingsRequest {
                model_id: record.embedding_model.clone(),
                contents: vec![Value::String(text.to_string())],
                text_truncation: Some(TRUNCATE_KEEP_START.into()),
                output_dimension: None,
                task_type: None,
            })
            .await?
            .vectors;
        vectors
            .pop()
            .ok_or_else(|| Error::internal("the embedding model returned no vector for the query"))
    }
}

/// The `mode` label of a search, in metrics and spans.
fn mode_label(mode: Mode) -> &'static str {
    match mode {
        Mode::Vector => "vector",
        Mode::Keyword => "keyword",
        Mode::HybridRrf { .. } | Mode::HybridWeighted { .. } => "hybrid",
    }
}

/// The span of one store search, the query's embedding included, named as the OpenTelemetry
/// database conventions name a query, for trace export.
fn search_span(store_id: &str, mode: &'static str) -> tracing::Span {
    tracing::info_span!(
        target: "llama_stack::memory",
        "vector_query",
        otel.name = %format_args!("query {store_id}"),
        db.operation.name = "query",
        db.collection.name = store_id,
        llama_stack.vector_io.search_mode = mode,
        llama_stack.vector_io.provider = tracing::field::Empty,
    )
}

fn ids(hits: &[ScoredChunk]) -> Vec<String> {
    hits.iter().map(|h| h.chunk_id.clone()).collect()
}

/// Min-max normalised scores; a single hit (or equal scores) counts as 1.
fn normalized(hits: &[ScoredChunk]) -> Vec<(String, f32)> {
    let (lo, hi) = hits.iter().fold((f32::MAX, f32::MIN), |(lo, hi), h| {
        (lo.min(h.score), hi.max(h.score))
    });
    hits.iter()
        .map(|h| {
            let s = if hi > lo {
                (h.score - lo) / (hi - lo)
            } else {
                1.0
            };
            (h.chunk_id.clone(), s)
        })
        .collect()
}

/// The fused top `k` as hits carrying the fused score.
fn pick(
    fused: Vec<(String, f32)>,
    hits: impl Iterator<Item = ScoredChunk>,
    k: usize,
) -> Vec<ScoredChunk> {
    let mut by_id: HashMap<String, ScoredChunk> = HashMap::new();
    for h in hits {
        by_id.entry(h.chunk_id.clone()).or_insert(h);
    }
    fused
        .into_iter()
        .take(k)
        .filter_map(|(id, score)| {
            by_id.remove(&id).map(|mut h| {
                h.score = score;
                h
            })
        })
        .collect()
}

/// A stable id for a chunk without one: the same document text gets the same id, so
/// inserting it again replaces it rather than duplicating it.
fn derived_chunk_id(metadata: &Map<String, Value>, text: &str) -> String {
    match metadata.get("document_id") {
        Some(doc) => {
            let doc = doc
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| doc.to_string());
            uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("{doc}:{text}").as_bytes(),
            )
            .to_string()
        }
        None => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rrf_rewards_agreement() {
        let fused = fuse_rrf(
            &[
                vec!["a".into(), "b".into(), "c".into()],
                vec!["c".into(), "b".into(), "d".into()],
            ],
            60.0,
        );
        let order: Vec<&str> = fused.iter().map(|(id, _)| id.as_str()).collect();
        // c: ranks 3 and 1 (1/63 + 1/61) edges out b: ranks 2 and 2 (2/62).
        assert_eq!(order[..2], ["c", "b"], "{fused:?}");
        assert!((fused[0].1 - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-6);
        assert!((fused[1].1 - 2.0 / 62.0).abs() < 1e-6);
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn params_are_checked_with_their_location() {
        let p = |v: Value| QueryParams::parse(v.as_object());
        assert_eq!(p(json!({})).unwrap(), QueryParams::default());
        let h = p(json!({"mode": "hybrid", "max_chunks": 7})).unwrap();
        assert_eq!(
            h.mode,
            Mode::HybridRrf {
                impact_factor: 60.0
            }
        );
        assert_eq!(h.max_chunks, 7);
        let err = p(json!({"mode": "semantic"})).unwrap_err();
        assert!(
            err.message().contains("unknown search mode 'semantic'"),
            "{err}"
        );
        assert_eq!(err.location().unwrap()[2], "mode");
        assert!(p(json!({"max_chunks": 0})).is_err());
        assert!(p(json!({"mode": "hybrid", "reranker_type": "weighted", "reranker_params": {"alpha": 2}})).is_err());
    }

    #[test]
    fn derived_ids_are_stable_per_document_text() {
        let m = json!({"document_id": "doc1"}).as_object().unwrap().clone();
        assert_eq!(derived_chunk_id(&m, "x"), derived_chunk_id(&m, "x"));
        assert_ne!(derived_chunk_id(&m, "x"), derived_chunk_id(&m, "y"));
    }
}
