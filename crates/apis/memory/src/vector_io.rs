//! The vector IO provider trait: where chunks and their embeddings are kept and searched.
//!
//! Providers store vectors and text only. Embedding, chunking, hybrid fusion and the wire
//! shapes of vector DBs and vector stores live in the stack, so every provider behaves the
//! same and the conformance suite (`llama-stack-vector-conformance`) checks them all alike.

use async_trait::async_trait;
use serde_json::{Map, Value};

use llama_stack_core::{Error, Result};

/// A chunk as clients send it to `/v1/vector-io/insert`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub content: llama_stack_types::InterleavedContent,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_metadata: Option<Map<String, Value>>,
}

/// One store's index as a provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// The store's id (a vector DB id or a `vs_…` vector store id).
    pub store_id: String,
    /// Length of every embedding in the store.
    pub dimension: usize,
}

/// A chunk ready to be stored: embedded, identified and with its searchable text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredChunk {
    /// Unique within the store; inserting an existing id replaces that chunk.
    pub chunk_id: String,
    /// The text keyword search indexes.
    pub text: String,
    /// The chunk as returned to clients, stored verbatim.
    pub document: Value,
    /// What search filters are evaluated against (chunk metadata and file attributes).
    pub attributes: Map<String, Value>,
    /// Exactly the store's dimension long.
    pub embedding: Vec<f32>,
    /// The vector store file this chunk came from, if any.
    pub file_id: Option<String>,
    /// Unix seconds after which the chunk is no longer returned (`ttl_seconds`).
    pub expires_at: Option<i64>,
}

/// How a search ranks chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Nearest embeddings by L2 distance; score = 1 / distance (distance floored at 1e-6).
    Vector,
    /// Full-text match; score = a positive relevance (BM25 or ts_rank), higher is better.
    Keyword,
}

/// One search against one store.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub mode: SearchMode,
    /// The query embedding; required for [`SearchMode::Vector`].
    pub embedding: Option<Vec<f32>>,
    /// The query text; used by [`SearchMode::Keyword`].
    pub text: String,
    /// At most this many results.
    pub k: usize,
    /// Only chunks whose attributes match are returned.
    pub filter: Option<Filter>,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunk {
    pub chunk_id: String,
    pub document: Value,
    pub attributes: Map<String, Value>,
    pub file_id: Option<String>,
    pub score: f32,
}

/// Which chunks to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkSelector {
    Ids(Vec<String>),
    /// Every chunk of one vector store file.
    File(String),
}

#[async_trait]
pub trait VectorIoProvider: Send + Sync {
    /// Creates the store's index, or opens it when it exists with the same dimension. An
    /// existing store with another dimension is an [`Error::invalid`].
    async fn create_store(&self, store: &StoreSpec) -> Result<()>;
    /// Deletes the store and all its chunks; deleting a missing store is not an error.
    async fn delete_store(&self, store_id: &str) -> Result<()>;
    /// Inserts all chunks or none (one transaction). Every embedding has the store's
    /// dimension; the stack checks this before calling. Durable once it returns.
    async fn insert(&self, store_id: &str, chunks: Vec<StoredChunk>) -> Result<()>;
    /// The best `k` matches, best first, excluding expired chunks. An unknown store is an
    /// [`Error::not_found`].
    async fn search(&self, store_id: &str, request: &SearchRequest) -> Result<Vec<ScoredChunk>>;
    /// Deletes the selected chunks, returning how many existed.
    async fn delete_chunks(&self, store_id: &str, selector: &ChunkSelector) -> Result<u64>;
    /// How many live (unexpired) chunks the store holds.
    async fn count(&self, store_id: &str) -> Result<u64>;
}

/// A comparison operator of an OpenAI vector store search filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    /// The attribute (a string or list) contains the value, or the value (a list) contains
    /// the attribute.
    In,
    Nin,
}

/// An OpenAI vector store search filter: a comparison or a compound of filters.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare {
        key: String,
        op: CompareOp,
        value: Value,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

impl Filter {
    /// Parses `{"type":"eq","key":..,"value":..}` or `{"type":"and"|"or","filters":[..]}`.
    /// `at` names where the filter came from, for the error message.
    pub fn parse(value: &Value, at: &str) -> Result<Filter> {
        let bad = |what: String| {
            Error::invalid(format!(
                "{at}: {what}. A filter is {{\"type\": \"eq\"|\"ne\"|\"gt\"|\"gte\"|\"lt\"|\"lte\"|\"in\"|\"nin\", \"key\": ..., \"value\": ...}} or {{\"type\": \"and\"|\"or\", \"filters\": [...]}}"
            ))
        };
        let obj = value
            .as_object()
            .ok_or_else(|| bad(format!("expected an object, got {value}")))?;
        let typed = obj.get("type").is_some_and(Value::is_string)
            && (obj.contains_key("key") || obj.contains_key("filters"));
        if !typed {
            // A plain map (`{"topic": "ai"}`), as 0.2-era clients send: equality on each key.
            if obj.is_empty() {
                return Err(bad("an empty filter".into()));
            }
            let all: Vec<Filter> = obj
                .iter()
                .map(|(key, value)| Filter::Compare {
                    key: key.clone(),
                    op: CompareOp::Eq,
                    value: value.clone(),
                })
                .collect();
            return Ok(if all.len() == 1 {
                all.into_iter().next().unwrap_or(Filter::And(Vec::new()))
            } else {
                Filter::And(all)
            });
        }
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("missing `type`".into()))?;
        let op = match kind {
            "and" | "or" => {
                let items = obj
                    .get("filters")
                    .and_then(Value::as_array)
                    .ok_or_else(|| bad(format!("`{kind}` needs a `filters` list")))?;
                let parsed = items
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Filter::parse(f, &format!("{at}.filters[{i}]")))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(if kind == "and" {
                    Filter::And(parsed)
                } else {
                    Filter::Or(parsed)
                });
            }
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "gt" => CompareOp::Gt,
            "gte" => CompareOp::Gte,
            "lt" => CompareOp::Lt,
            "lte" => CompareOp::Lte,
            "in" => CompareOp::In,
            "nin" => CompareOp::Nin,
            other => return Err(bad(format!("unknown filter type `{other}`"))),
        };
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("`{kind}` needs a string `key`")))?;
        let value = obj
            .get("value")
            .cloned()
            .ok_or_else(|| bad(format!("`{kind}` needs a `value`")))?;
        Ok(Filter::Compare {
            key: key.to_string(),
            op,
            value,
        })
    }

    /// Whether a chunk with these attributes passes. A missing attribute fails every
    /// comparison except `ne` and `nin`.
    pub fn matches(&self, attributes: &Map<String, Value>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(attributes)),
            Filter::Or(any) => any.iter().any(|f| f.matches(attributes)),
            Filter::Compare { key, op, value } => {
                let Some(actual) = attributes.get(key) else {
                    return matches!(op, CompareOp::Ne | CompareOp::Nin);
                };
                match op {
                    CompareOp::Eq => loose_eq(actual, value),
                    CompareOp::Ne => !loose_eq(actual, value),
                    CompareOp::Gt => compare(actual, value).is_some_and(|o| o.is_gt()),
                    CompareOp::Gte => compare(actual, value).is_some_and(|o| o.is_ge()),
                    CompareOp::Lt => compare(actual, value).is_some_and(|o| o.is_lt()),
                    CompareOp::Lte => compare(actual, value).is_some_and(|o| o.is_le()),
                    CompareOp::In => contains(actual, value),
                    CompareOp::Nin => !contains(actual, value),
                }
            }
        }
    }
}

fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn contains(actual: &Value, value: &Value) -> bool {
    match (actual, value) {
        (_, Value::Array(options)) => options.iter().any(|o| loose_eq(actual, o)),
        (Value::Array(items), _) => items.iter().any(|i| loose_eq(i, value)),
        (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn comparison_and_compound_filters() {
        let a = attrs(json!({"author": "ann", "year": 2021, "tags": ["x", "y"]}));
        let f = |v: Value| Filter::parse(&v, "filters").unwrap();
        assert!(f(json!({"type": "eq", "key": "author", "value": "ann"})).matches(&a));
        assert!(!f(json!({"type": "eq", "key": "author", "value": "bob"})).matches(&a));
        assert!(f(json!({"type": "gte", "key": "year", "value": 2021.0})).matches(&a));
        assert!(!f(json!({"type": "gt", "key": "year", "value": 2021})).matches(&a));
        assert!(f(json!({"type": "in", "key": "tags", "value": "y"})).matches(&a));
        assert!(f(json!({"type": "in", "key": "author", "value": ["bob", "ann"]})).matches(&a));
        assert!(f(json!({"type": "ne", "key": "missing", "value": 1})).matches(&a));
        assert!(!f(json!({"type": "eq", "key": "missing", "value": 1})).matches(&a));
        let both = f(json!({"type": "and", "filters": [
            {"type": "eq", "key": "author", "value": "ann"},
            {"type": "lt", "key": "year", "value": 2000}]}));
        assert!(!both.matches(&a));
        let either = f(json!({"type": "or", "filters": [
            {"type": "eq", "key": "author", "value": "bob"},
            {"type": "gt", "key": "year", "value": 2000}]}));
        assert!(either.matches(&a));
    }

    #[test]
    fn a_plain_map_is_equality_on_each_key() {
        let a = attrs(json!({"topic": "ai", "year": 2021, "type": "doc"}));
        let f = |v: Value| Filter::parse(&v, "filters").unwrap();
        assert!(f(json!({"topic": "ai"})).matches(&a));
        assert!(!f(json!({"topic": "food"})).matches(&a));
        assert!(f(json!({"topic": "ai", "year": 2021})).matches(&a));
        assert!(!f(json!({"topic": "ai", "year": 2020})).matches(&a));
        // `type` without `key` or `filters` is an attribute, not an operator.
        assert!(f(json!({"type": "doc"})).matches(&a));
        assert!(Filter::parse(&json!({}), "filters").is_err());
    }

    #[test]
    fn bad_filters_say_where_and_what() {
        let err = Filter::parse(
            &json!({"type": "and", "filters": [{"type": "like", "key": "a", "value": 1}]}),
            "filters",
        )
        .unwrap_err();
        assert!(err.message().contains("filters.filters[0]"), "{err}");
        assert!(
            err.message().contains("unknown filter type `like`"),
            "{err}"
        );
    }
}
