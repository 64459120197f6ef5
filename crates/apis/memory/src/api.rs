//! The memory API as the RAG tool runtime sees it: stores by id, chunk insertion and search.
//! Every call is checked against the current caller as the routes are (as a `vector_db`, or a
//! `vector_store` for `check_store` and the OpenAI search), so a tool run for a user reaches
//! only what that user could reach directly.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::Result;
use llama_stack_documents::Tokenizer;

use crate::chunks::{PendingChunk, QueryParams};
use crate::files::FileObject;
use crate::files_ops::FileUpload;
use crate::service::{MemoryService, VECTOR_DB, VECTOR_STORE};
use crate::vector_io::{Chunk, ScoredChunk};
use llama_stack_core::access::Action;

#[async_trait]
pub trait MemoryApi: Send + Sync {
    /// The tokenizer chunk sizes are counted with.
    fn chunk_tokenizer(&self) -> Arc<Tokenizer>;
    /// Cuts a document's text into overlapping token windows with upstream's chunk metadata.
    async fn chunk_document(
        &self,
        document_id: &str,
        text: String,
        metadata: &serde_json::Map<String, serde_json::Value>,
        size: usize,
        overlap: usize,
    ) -> Result<Vec<Chunk>>;
    /// Fails with not-found unless the store exists and the caller may read it as a vector
    /// store (the check before an OpenAI `file_search`).
    async fn check_store(&self, store_id: &str) -> Result<()>;
    /// Fails with not-found unless the vector DB exists and the caller may read it, and with
    /// 403 when they may read but not add to it: the check before a RAG insertion.
    async fn check_store_writable(&self, store_id: &str) -> Result<()>;
    /// Embeds (where a chunk carries no embedding) and stores chunks in a store.
    async fn insert_chunks_into(&self, store_id: &str, chunks: Vec<Chunk>) -> Result<()>;
    /// Searches one store.
    async fn search_chunks(
        &self,
        store_id: &str,
        query: &str,
        params: &QueryParams,
    ) -> Result<Vec<ScoredChunk>>;
    /// `POST /v1/vector_stores/{id}/search`: a search page in the OpenAI shape.
    async fn search_vector_store(
        &self,
        store_id: &str,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value>;
    /// `GET /v1/files/{file_id}`, checked as the route checks it.
    async fn get_file(&self, file_id: &str) -> Result<FileObject>;
    /// `GET /v1/files/{file_id}/content`.
    async fn file_content(&self, file_id: &str) -> Result<Vec<u8>>;
    /// `POST /v1/files`, owned by the current caller.
    async fn create_file(&self, upload: FileUpload) -> Result<FileObject>;
}

#[async_trait]
impl MemoryApi for MemoryService {
    fn chunk_tokenizer(&self) -> Arc<Tokenizer> {
        MemoryService::chunk_tokenizer(self)
    }

    async fn chunk_document(
        &self,
        document_id: &str,
        text: String,
        metadata: &serde_json::Map<String, serde_json::Value>,
        size: usize,
        overlap: usize,
    ) -> Result<Vec<Chunk>> {
        MemoryService::chunk_document(self, document_id, text, metadata, size, overlap).await
    }

    async fn check_store(&self, store_id: &str) -> Result<()> {
        self.resolve_as(Action::Read, VECTOR_STORE, store_id)
            .await
            .map(|_| ())
    }

    async fn check_store_writable(&self, store_id: &str) -> Result<()> {
        self.resolve_as(Action::Update, VECTOR_DB, store_id)
            .await
            .map(|_| ())
    }

    async fn insert_chunks_into(&self, store_id: &str, chunks: Vec<Chunk>) -> Result<()> {
        let (record, _) = self.resolve_as(Action::Update, VECTOR_DB, store_id).await?;
        let pending = chunks
            .into_iter()
            .map(|chunk| PendingChunk {
                chunk,
                file_id: None,
                extra_attributes: Default::default(),
            })
            .collect();
        self.insert_pending(&record, pending, None).await
    }

    async fn search_chunks(
        &self,
        store_id: &str,
        query: &str,
        params: &QueryParams,
    ) -> Result<Vec<ScoredChunk>> {
        self.search_store(VECTOR_DB, store_id, query, params, None)
            .await
    }

    async fn search_vector_store(
        &self,
        store_id: &str,
        body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value> {
        MemoryService::search_vector_store(self, store_id, body).await
    }

    async fn get_file(&self, file_id: &str) -> Result<FileObject> {
        MemoryService::get_file(self, file_id).await
    }

    async fn file_content(&self, file_id: &str) -> Result<Vec<u8>> {
        MemoryService::file_content(self, file_id).await
    }

    async fn create_file(&self, upload: FileUpload) -> Result<FileObject> {
        MemoryService::create_file(self, upload).await
    }
}
