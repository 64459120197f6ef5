//! OpenAI vector stores (`/v1/vector_stores`): create, list, get, update, delete and search.

use serde_json::{Map, Value, json};

use crate::chunks::{Mode, QueryParams};
use crate::service::MemoryService;
use crate::service::{StoreRecord, VECTOR_STORE, now_secs};
use crate::vector_dbs::{NewStore, expires_at};
use crate::vector_io::Filter;
use llama_stack_core::access::Action;
use llama_stack_core::{Error, Result};

fn body_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

/// A list page query (`limit`, `order`, `after`, `before`).
#[derive(Debug, Clone, Default)]
pub struct PageQuery {
    pub limit: Option<usize>,
    pub order: Option<String>,
    pub after: Option<String>,
    pub before: Option<String>,
    /// `last_id` as upstream answered it up to 0.2.23 (and its v0.2.14 tests pin): the last
    /// item after `after` and before `before`, past the page when there is more. Current
    /// upstream and OpenAI answer the page's last item.
    pub last_of_window: bool,
}

/// Orders items (each with `id` and `created_at`) and cuts one page, OpenAI-style.
pub(crate) fn page(mut items: Vec<Value>, query: &PageQuery) -> Result<Value> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(
            Error::invalid(format!("limit must be between 1 and 100, got {limit}"))
                .with_location(vec!["query".into(), "limit".into()]),
        );
    }
    let desc = match query.order.as_deref().unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(
                Error::invalid(format!("order must be 'asc' or 'desc', got '{other}'"))
                    .with_location(vec!["query".into(), "order".into()]),
            );
        }
    };
    let key = |v: &Value| {
        (
            v["created_at"].as_i64().unwrap_or(0),
            v["id"].as_str().unwrap_or("").to_string(),
        )
    };
    items.sort_by_key(key);
    if desc {
        items.reverse();
    }
    let position = |id: &str| items.iter().position(|v| v["id"] == id);
    let start = match &query.after {
        Some(id) => position(id).map(|p| p + 1).unwrap_or(items.len()),
        None => 0,
    };
    let end = match &query.before {
        Some(id) => position(id).unwrap_or(items.len()),
        None => items.len(),
    };
    let window: Vec<Value> = items
        .get(start..end.max(start))
        .unwrap_or_default()
        .to_vec();
    let has_more = window.len() > limit;
    let window_last = window.last().map(|v| v["id"].clone());
    let data: Vec<Value> = window.into_iter().take(limit).collect();
    let last_id = if query.last_of_window {
        window_last
    } else {
        data.last().map(|v| v["id"].clone())
    };
    Ok(json!({
        "object": "list",
        "data": data,
        "first_id": data.first().map(|v| v["id"].clone()),
        "last_id": last_id,
        "has_more": has_more,
    }))
}

impl MemoryService {
    /// The OpenAI vector store object of a store.
    pub(crate) async fn vector_store_object(&self, record: &StoreRecord) -> Result<Value> {
        let files = self.store_file_records(&record.identifier).await?;
        let count = |status: &str| files.iter().filter(|f| f.status == status).count();
        let usage: u64 = files.iter().map(|f| f.usage_bytes).sum();
        Ok(json!({
            "id": record.identifier,
            "object": "vector_store",
            "created_at": record.created_at,
            "name": record.name,
            "usage_bytes": usage,
            "file_counts": {
                "completed": count("completed"),
                "cancelled": count("cancelled"),
                "failed": count("failed"),
                "in_progress": count("in_progress"),
                "total": files.len(),
            },
            "status": "completed",
            "expires_after": record.expires_after,
            "expires_at": record.expires_at,
            "last_active_at": record.last_active_at,
            "metadata": record.metadata,
        }))
    }

    /// `POST /v1/vector_stores`. `embedding_model`, `embedding_dimension` and `provider_id`
    /// may come as extra body fields or inside `metadata`.
    pub async fn create_vector_store(&self, body: Map<String, Value>) -> Result<Value> {
        let metadata = match body.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(body_error(
                    "metadata",
                    format!("metadata must be an object, got {other}"),
                ));
            }
        };
        let pick = |key: &str| -> Option<Value> {
            body.get(key)
                .filter(|v| !v.is_null())
                .or_else(|| metadata.get(key))
                .cloned()
        };
        let text = |key: &str| -> Result<Option<String>> {
            match pick(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(body_error(
                    key,
                    format!("{key} must be a string, got {other}"),
                )),
            }
        };
        let dimension = match pick("embedding_dimension") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|d| *d > 0)
                    .ok_or_else(|| {
                        body_error(
                            "embedding_dimension",
                            format!("embedding_dimension must be a positive integer, got {v}"),
                        )
                    })? as u32,
            ),
        };
        let file_ids: Vec<String> = match body.get("file_ids") {
            None | Some(Value::Null) => vec![],
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
                body_error(
                    "file_ids",
                    format!("file_ids must be a list of file ids, got {v}"),
                )
            })?,
        };
        let chunking = body
            .get("chunking_strategy")
            .cloned()
            .filter(|v| !v.is_null());
        let chunk_sizes = chunking_sizes(chunking.as_ref())?;
        let id = format!("vs_{}", uuid::Uuid::new_v4());
        let name = text("name")?;
        let record = self
            .create_store(NewStore {
                resource_type: VECTOR_STORE,
                identifier: id,
                embedding_model: text("embedding_model")?,
                embedding_dimension: dimension,
                provider_id: text("provider_id")?,
                provider_resource_id: None,
                name,
                metadata,
                expires_after: body.get("expires_after").cloned().filter(|v| !v.is_null()),
            })
            .await?;
        let total = file_ids.len();
        for (i, file_id) in file_ids.iter().enumerate() {
            tracing::info!(store = %record.identifier, file = %file_id,
                progress = %format!("{}/{total}", i + 1), "Attaching file");
            match self
                .attach_file(&record, file_id, Map::new(), chunking.clone(), chunk_sizes)
                .await
            {
                // The store is made with the files that exist; one that does not is recorded
                // as failed, as upstream does, rather than failing the whole creation.
                Err(err) if err.kind() == llama_stack_core::ErrorKind::NotFound => {
                    self.record_missing_file(&record, file_id, chunking.clone(), &err)
                        .await?;
                }
                other => {
                    other?;
                }
            }
        }
        self.vector_store_object(&record).await
    }

    /// The vector stores the caller may read, paged after filtering.
    pub async fn list_vector_stores(&self, query: &PageQuery) -> Result<Value> {
        let records = self.readable_stores(VECTOR_STORE).await;
        let mut items = Vec::with_capacity(records.len());
        for r in &records {
            items.push(self.vector_store_object(r).await?);
        }
        page(items, query)
    }

    pub async fn get_vector_store(&self, id: &str) -> Result<Value> {
        let (record, _) = self.resolve_as(Action::Read, VECTOR_STORE, id).await?;
        self.vector_store_object(&record).await
    }

    /// `POST /v1/vector_stores/{id}`: `name`, `expires_after`, `metadata`.
    pub async fn update_vector_store(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        let (mut record, _) = self.resolve_as(Action::Update, VECTOR_STORE, id).await?;
        if let Some(name) = body.get("name") {
            record.name = match name {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => {
                    return Err(body_error(
                        "name",
                        format!("name must be a string, got {other}"),
                    ));
                }
            };
        }
        if let Some(meta) = body.get("metadata") {
            record.metadata = match meta {
                Value::Null => Map::new(),
                Value::Object(m) => m.clone(),
                other => {
                    return Err(body_error(
                        "metadata",
                        format!("metadata must be an object, got {other}"),
                    ));
                }
            };
        }
        if let Some(exp) = body.get("expires_after") {
            record.expires_at = expires_at(Some(exp), now_secs())?;
            record.expires_after = Some(exp.clone()).filter(|v| !v.is_null());
        }
        record.last_active_at = Some(now_secs());
        self.save_store(&record).await?;
        self.vector_store_object(&record).await
    }

    pub async fn delete_vector_store(&self, id: &str) -> Result<Value> {
        let (record, provider) = self.resolve_as(Action::Delete, VECTOR_STORE, id).await?;
        self.remove_store(&record, provider).await?;
        Ok(json!({"id": id, "object": "vector_store.deleted", "deleted": true}))
    }

    /// `POST /v1/vector_stores/{id}/search`.
    pub async fn search_vector_store(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        let queries: Vec<String> = match body.get("query") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items))
                if !items.is_empty() && items.iter().all(Value::is_string) =>
            {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            }
            Some(other) => {
                return Err(body_error(
                    "query",
                    format!("query must be a string or a list of strings, got {other}"),
                ));
            }
            None => return Err(body_error("query", "query is required")),
        };
        let max = match body.get("max_num_results").filter(|v| !v.is_null()) {
            None => 10,
            Some(v) => v.as_u64().filter(|n| (1..=50).contains(n)).ok_or_else(|| {
                body_error(
                    "max_num_results",
                    format!("max_num_results must be between 1 and 50, got {v}"),
                )
            })? as usize,
        };
        if body.get("rewrite_query").and_then(Value::as_bool) == Some(true) {
            return Err(Error::unsupported(
                "rewrite_query is not supported; send the query as it should be searched",
            ));
        }
        let mode = match body
            .get("search_mode")
            .and_then(Value::as_str)
            .unwrap_or("vector")
        {
            "vector" => Mode::Vector,
            "keyword" => Mode::Keyword,
            "hybrid" => Mode::HybridRrf {
                impact_factor: 60.0,
            },
            other => {
                return Err(body_error(
                    "search_mode",
                    format!("search_mode must be 'vector', 'keyword' or 'hybrid', got '{other}'"),
                ));
            }
        };
        let ranking = body.get("ranking_options").filter(|v| !v.is_null());
        let score_threshold = ranking
            .and_then(|r| r.get("score_threshold"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0) as f32;
        let filter = match body.get("filters").filter(|v| !v.is_null()) {
            Some(f) => Some(Filter::parse(f, "filters")?),
            None => None,
        };
        let text = queries.join(" ");
        let params = QueryParams {
            max_chunks: max,
            mode,
            score_threshold,
        };
        let hits = self
            .search_store(VECTOR_STORE, id, &text, &params, filter)
            .await?;
        let data: Vec<Value> = hits
            .into_iter()
            .map(|hit| {
                let content = hit.document.get("content").cloned().unwrap_or(Value::Null);
                let text = serde_json::from_value::<llama_stack_types::InterleavedContent>(content)
                    .map(|c| c.as_text(" "))
                    .unwrap_or_default();
                json!({
                    "file_id": hit.file_id.clone().or_else(|| hit.attributes.get("document_id").and_then(Value::as_str).map(str::to_string)).unwrap_or_default(),
                    "filename": hit.attributes.get("filename").and_then(Value::as_str).unwrap_or(""),
                    "score": hit.score,
                    "attributes": hit.attributes,
                    "content": [{"type": "text", "text": text}],
                })
            })
            .collect();
        Ok(json!({
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": data,
            "has_more": false,
            "next_page": null,
        }))
    }
}

/// `(max_chunk_size_tokens, chunk_overlap_tokens)` of a chunking strategy; `auto` is 800/400.
pub(crate) fn chunking_sizes(strategy: Option<&Value>) -> Result<(usize, usize)> {
    let Some(strategy) = strategy else {
        return Ok((800, 400));
    };
    let bad = |m: String| body_error("chunking_strategy", m);
    match strategy.get("type").and_then(Value::as_str) {
        Some("auto") => Ok((800, 400)),
        Some("static") => {
            let s = strategy
                .get("static")
                .ok_or_else(|| bad("a static chunking_strategy needs a `static` object".into()))?;
            let size = s
                .get("max_chunk_size_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(800) as usize;
            let overlap = s
                .get("chunk_overlap_tokens")
                .and_then(Value::as_u64)
                .unwrap_or(400) as usize;
            if !(100..=4096).contains(&size) {
                return Err(bad(format!(
                    "max_chunk_size_tokens must be between 100 and 4096, got {size}"
                )));
            }
            if overlap > size / 2 {
                return Err(bad(format!(
                    "chunk_overlap_tokens must not exceed half of max_chunk_size_tokens ({size}), got {overlap}"
                )));
            }
            Ok((size, overlap))
        }
        _ => Err(bad(format!(
            "chunking_strategy must be {{\"type\": \"auto\"}} or {{\"type\": \"static\", \"static\": {{...}}}}, got {strategy}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_like_openai() {
        let items: Vec<Value> = (0..5)
            .map(|i| json!({"id": format!("x{i}"), "created_at": i}))
            .collect();
        let p = page(
            items.clone(),
            &PageQuery {
                limit: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p["data"].as_array().unwrap().len(), 2);
        assert_eq!(p["first_id"], "x4");
        assert_eq!(
            (p["last_id"].as_str(), p["has_more"].as_bool()),
            (Some("x3"), Some(true))
        );
        let legacy = PageQuery {
            limit: Some(2),
            last_of_window: true,
            ..Default::default()
        };
        assert_eq!(page(items.clone(), &legacy).unwrap()["last_id"], "x0");
        let p = page(
            items,
            &PageQuery {
                limit: Some(10),
                order: Some("asc".into()),
                after: Some("x2".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p["first_id"], "x3");
        assert_eq!(p["has_more"], false);
    }

    #[test]
    fn chunking_strategies() {
        assert_eq!(chunking_sizes(None).unwrap(), (800, 400));
        assert_eq!(chunking_sizes(Some(&json!({"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}))).unwrap(), (200, 50));
        assert!(
            chunking_sizes(Some(
                &json!({"type": "static", "static": {"max_chunk_size_tokens": 50}})
            ))
            .is_err()
        );
    }
}
