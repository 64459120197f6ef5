//! The vector IO API trait (memory). Providers arrive with the memory work.

use async_trait::async_trait;

use crate::error::Result;

/// A chunk of a document with its metadata and, optionally, a precomputed embedding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub content: llama_stack_types::InterleavedContent,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub embedding: Option<Vec<f32>>,
}

#[async_trait]
pub trait VectorIoProvider: Send + Sync {
    async fn insert(&self, vector_db_id: &str, chunks: Vec<Chunk>) -> Result<()>;
    /// Returns chunks with their scores, best first.
    async fn query(
        &self,
        vector_db_id: &str,
        query: &str,
        max_chunks: usize,
    ) -> Result<Vec<(Chunk, f32)>>;
}
