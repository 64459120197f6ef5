//! Vector DBs, chunks, search settings and RAG documents.

use llama_stack_core::{Error, Result};
use llama_stack_memory::vector_io::Chunk;
use llama_stack_types as types;
use serde_json::{Map, Value as Json, json};

use super::content::{content_from_pb, content_to_json, content_to_pb, json_content_to_pb};
use super::enum_value;
use super::json::{map_to_struct, opt_struct, opt_struct_to_map};
use crate::pb;

pub(crate) fn vector_db_to_pb(db: types::VectorDb) -> pb::VectorDb {
    pb::VectorDb {
        identifier: db.identifier,
        provider_resource_id: db.provider_resource_id,
        provider_id: db.provider_id,
        embedding_model: db.embedding_model,
        embedding_dimension: db.embedding_dimension,
        vector_db_name: db.vector_db_name,
    }
}

pub(crate) fn register_vector_db_from_pb(
    request: pb::RegisterVectorDbRequest,
) -> types::RegisterVectorDbRequest {
    types::RegisterVectorDbRequest {
        vector_db_id: request.vector_db_id,
        embedding_model: request.embedding_model,
        embedding_dimension: request.embedding_dimension,
        provider_id: request.provider_id,
        provider_vector_db_id: request.provider_vector_db_id,
        vector_db_name: request.vector_db_name,
    }
}

/// The core checks chunks as JSON, each with its index in errors.
fn chunk_from_pb(chunk: pb::Chunk) -> Result<Json> {
    let chunk = Chunk {
        content: content_from_pb(chunk.content)?,
        metadata: opt_struct_to_map(chunk.metadata),
        embedding: (!chunk.embedding.is_empty()).then_some(chunk.embedding),
        chunk_id: chunk.chunk_id,
        chunk_metadata: opt_struct(chunk.chunk_metadata),
    };
    serde_json::to_value(chunk).map_err(|e| Error::internal(format!("chunk to JSON: {e}")))
}

/// Stored chunks come back as the JSON they were inserted as.
fn chunk_to_pb(value: Json) -> Result<pb::Chunk> {
    let chunk: Chunk = serde_json::from_value(value)
        .map_err(|e| Error::internal(format!("a stored chunk does not read back: {e}")))?;
    Ok(pb::Chunk {
        content: Some(content_to_pb(chunk.content)),
        metadata: Some(map_to_struct(&chunk.metadata)),
        embedding: chunk.embedding.unwrap_or_default(),
        chunk_id: chunk.chunk_id,
        chunk_metadata: chunk.chunk_metadata.as_ref().map(map_to_struct),
    })
}

pub(crate) fn insert_from_pb(
    request: pb::InsertChunksRequest,
) -> Result<types::InsertChunksRequest> {
    Ok(types::InsertChunksRequest {
        vector_db_id: request.vector_db_id,
        chunks: request
            .chunks
            .into_iter()
            .map(chunk_from_pb)
            .collect::<Result<_>>()?,
        ttl_seconds: request.ttl_seconds,
    })
}

/// `mode`, `reranker_type` and `reranker_params`, the keys both query params and the RAG
/// query config read.
fn search_settings(
    mode: i32,
    ranker: Option<pb::Ranker>,
    out: &mut Map<String, Json>,
) -> Result<()> {
    use pb::ranker::Ranker;
    let mode = match enum_value(mode, "mode")? {
        pb::SearchMode::Unspecified => None,
        pb::SearchMode::Vector => Some("vector"),
        pb::SearchMode::Keyword => Some("keyword"),
        pb::SearchMode::Hybrid => Some("hybrid"),
    };
    if let Some(mode) = mode {
        out.insert("mode".into(), json!(mode));
    }
    let (kind, params) = match ranker.and_then(|r| r.ranker) {
        None => return Ok(()),
        Some(Ranker::Rrf(rrf)) => ("rrf", json!({"impact_factor": rrf.impact_factor})),
        Some(Ranker::Weighted(weighted)) => ("weighted", json!({"alpha": weighted.alpha})),
    };
    out.insert("reranker_type".into(), json!(kind));
    out.insert("reranker_params".into(), params);
    Ok(())
}

pub(crate) fn query_from_pb(request: pb::QueryChunksRequest) -> Result<types::QueryChunksRequest> {
    let mut params = Map::new();
    if let Some(max) = request.max_chunks {
        params.insert("max_chunks".into(), json!(max));
    }
    if let Some(threshold) = request.score_threshold {
        params.insert("score_threshold".into(), json!(threshold));
    }
    search_settings(request.mode, request.ranker, &mut params)?;
    Ok(types::QueryChunksRequest {
        vector_db_id: request.vector_db_id,
        query: content_from_pb(request.query)?,
        params: (!params.is_empty()).then_some(params),
    })
}

pub(crate) fn query_response_to_pb(
    response: types::QueryChunksResponse,
) -> Result<pb::QueryChunksResponse> {
    Ok(pb::QueryChunksResponse {
        chunks: response
            .chunks
            .into_iter()
            .map(chunk_to_pb)
            .collect::<Result<_>>()?,
        scores: response.scores,
    })
}

/// A document's content as the core reads it: content, or `{"uri": ...}`.
pub(crate) fn document_content(content: Option<pb::rag_document::Content>) -> Result<Json> {
    use pb::rag_document::Content;
    match content {
        Some(Content::Inline(content)) => Ok(content_to_json(&content_from_pb(Some(content))?)),
        Some(Content::Uri(uri)) => Ok(json!({"uri": uri})),
        None => Err(Error::invalid("a document needs inline content or a uri")),
    }
}

pub(crate) fn rag_insert_from_pb(request: pb::RagInsertRequest) -> Result<types::RagInsertRequest> {
    let documents = request
        .documents
        .into_iter()
        .map(|doc| {
            Ok(types::RagDocument {
                content: document_content(doc.content).map_err(|e| {
                    Error::invalid(format!("document '{}': {}", doc.document_id, e.message()))
                })?,
                document_id: doc.document_id,
                mime_type: doc.mime_type,
                metadata: opt_struct_to_map(doc.metadata),
            })
        })
        .collect::<Result<_>>()?;
    Ok(types::RagInsertRequest {
        documents,
        vector_db_id: request.vector_db_id,
        chunk_size_in_tokens: request.chunk_size_in_tokens.map(|n| n as usize),
    })
}

pub(crate) fn rag_query_from_pb(request: pb::RagQueryRequest) -> Result<types::RagQueryRequest> {
    let query_config = match request.query_config {
        None => None,
        Some(config) => {
            let mut out = Map::new();
            if let Some(n) = config.max_tokens_in_context {
                out.insert("max_tokens_in_context".into(), json!(n));
            }
            if let Some(n) = config.max_chunks {
                out.insert("max_chunks".into(), json!(n));
            }
            if let Some(template) = config.chunk_template {
                out.insert("chunk_template".into(), json!(template));
            }
            if let Some(separator) = config.query_separator {
                out.insert(
                    "query_generator_config".into(),
                    json!({"type": "default", "separator": separator}),
                );
            }
            search_settings(config.mode, config.ranker, &mut out)?;
            Some(Json::Object(out))
        }
    };
    Ok(types::RagQueryRequest {
        content: content_from_pb(request.content)?,
        vector_db_ids: request.vector_db_ids,
        query_config,
    })
}

pub(crate) fn rag_result_to_pb(result: types::RagQueryResult) -> Result<pb::RagQueryResponse> {
    Ok(pb::RagQueryResponse {
        content: result.content.map(json_content_to_pb).transpose()?,
        metadata: Some(map_to_struct(&result.metadata)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_settings_use_the_json_keys() {
        let request = query_from_pb(pb::QueryChunksRequest {
            vector_db_id: "db".into(),
            query: None,
            max_chunks: Some(2),
            score_threshold: None,
            mode: pb::SearchMode::Hybrid as i32,
            ranker: Some(pb::Ranker {
                ranker: Some(pb::ranker::Ranker::Weighted(pb::WeightedRanker {
                    alpha: Some(0.25),
                })),
            }),
        })
        .unwrap();
        assert_eq!(
            Json::Object(request.params.unwrap()),
            json!({"max_chunks": 2, "mode": "hybrid", "reranker_type": "weighted",
                   "reranker_params": {"alpha": 0.25}})
        );
    }

    #[test]
    fn chunks_round_trip_through_the_stored_json() {
        let chunk = pb::Chunk {
            content: super::super::content::content_to_pb("text".into()).into(),
            metadata: Some(map_to_struct(
                json!({"document_id": "d"}).as_object().unwrap(),
            )),
            embedding: vec![0.5, 0.25],
            chunk_id: Some("c1".into()),
            chunk_metadata: None,
        };
        assert_eq!(
            chunk_to_pb(chunk_from_pb(chunk.clone()).unwrap()).unwrap(),
            chunk
        );
    }

    #[test]
    fn a_document_needs_content() {
        let err = document_content(None).unwrap_err();
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::InvalidRequest);
    }
}
