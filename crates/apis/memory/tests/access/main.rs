//! Access control of vector DBs, vector stores and files, through the service functions both
//! transports call. A binary of its own because it turns enforcement on for the process:
//! from then on a call with no caller is denied, which these tests also check.

mod files;
mod stores;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::access::{self, AccessPolicy, Caller, User};
use llama_stack_core::{Error, ErrorKind, MemoryStore, Result};
use llama_stack_inference::openai_compat::{OpenAiChatStream, OpenAiOutput};
use llama_stack_inference::{ChatStream, Embeddings, InferenceApi};
use llama_stack_memory::files::{FileListQuery, FileObject, FilePage, FilesProvider, NewFile};
use llama_stack_memory::files_ops::FileUpload;
use llama_stack_memory::vector_io::{
    ChunkSelector, ScoredChunk, SearchRequest, StoreSpec, StoredChunk, VectorIoProvider,
};
use llama_stack_memory::{MemoryService, PageQuery};
use llama_stack_types::openai::{OpenAiChatCompletion, OpenAiChatCompletionRequest};
use llama_stack_types::{ChatCompletionRequest, EmbeddingsRequest, Model};
use serde_json::{Value, json};

const DIM: usize = 4;

/// Owners and team mates have every right, auditors may read anything, the rest nothing.
fn policy() -> AccessPolicy {
    let rules = json!([
        {"permit": {"actions": ["create", "read", "update", "delete"]}, "when": "user is owner"},
        {"permit": {"actions": ["create", "read", "update", "delete"]},
         "when": "user in owners teams"},
        {"permit": {"actions": ["read"]}, "when": "user with auditor in roles"},
        {"permit": {"actions": ["create", "read", "update", "delete"]},
         "when": "resource is unowned"},
    ]);
    let mut issues = Vec::new();
    let policy = AccessPolicy::parse(Some(&rules), "access_policy", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    policy
}

fn user(principal: &str, attribute: &str, value: &str) -> User {
    User {
        principal: principal.into(),
        attributes: Some(BTreeMap::from([(
            attribute.to_string(),
            vec![value.to_string()],
        )])),
    }
}

/// The owner in these tests.
pub fn alice() -> User {
    user("alice", "teams", "red")
}

/// Shares a team with alice.
pub fn carol() -> User {
    user("carol", "teams", "red")
}

/// Shares nothing with alice.
pub fn bob() -> User {
    user("bob", "teams", "blue")
}

/// May read everything and change nothing of others'.
pub fn dave() -> User {
    user("dave", "roles", "auditor")
}

pub async fn as_user<F: Future>(who: &User, future: F) -> F::Output {
    access::with_caller(Caller::User(who.clone()), future).await
}

pub fn assert_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind) -> Error {
    let err = result.expect_err("expected an error");
    assert_eq!(err.kind(), kind, "{err}");
    err
}

/// Embeds every text as the same unit vector: these tests are about who, not what.
struct Embedder;

#[async_trait]
impl InferenceApi for Embedder {
    async fn get_model(&self, model_id: &str) -> Result<Model> {
        serde_json::from_value(json!({
            "identifier": model_id, "provider_resource_id": model_id, "provider_id": "fake",
            "model_type": "embedding", "metadata": {"embedding_dimension": DIM},
        }))
        .map_err(|e| Error::internal(e.to_string()))
    }
    async fn list_models(&self) -> Vec<Model> {
        vec![self.get_model("emb").await.unwrap()]
    }
    async fn chat_completion(&self, _: ChatCompletionRequest) -> Result<ChatStream> {
        Err(Error::unsupported("no chat here"))
    }
    async fn embed(&self, request: EmbeddingsRequest) -> Result<Embeddings> {
        Ok(Embeddings {
            vectors: request
                .contents
                .iter()
                .map(|_| vec![1.0, 0.0, 0.0, 0.0])
                .collect(),
            prompt_tokens: 0,
        })
    }
    async fn openai_chat_completion(
        &self,
        _: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>> {
        Err(Error::unsupported("no chat here"))
    }
}

/// Chunks in memory; a search returns the first `k`.
#[derive(Default)]
struct Vectors {
    stores: Mutex<BTreeMap<String, Vec<StoredChunk>>>,
}

#[async_trait]
impl VectorIoProvider for Vectors {
    async fn create_store(&self, store: &StoreSpec) -> Result<()> {
        let mut stores = self.stores.lock().unwrap();
        stores.entry(store.store_id.clone()).or_default();
        Ok(())
    }
    async fn delete_store(&self, store_id: &str) -> Result<()> {
        self.stores.lock().unwrap().remove(store_id);
        Ok(())
    }
    async fn insert(&self, store_id: &str, chunks: Vec<StoredChunk>) -> Result<()> {
        let mut stores = self.stores.lock().unwrap();
        stores
            .entry(store_id.to_string())
            .or_default()
            .extend(chunks);
        Ok(())
    }
    async fn search(&self, store_id: &str, request: &SearchRequest) -> Result<Vec<ScoredChunk>> {
        let stores = self.stores.lock().unwrap();
        let chunks = stores
            .get(store_id)
            .ok_or_else(|| Error::not_found(store_id))?;
        Ok(chunks
            .iter()
            .take(request.k)
            .map(|c| ScoredChunk {
                chunk_id: c.chunk_id.clone(),
                document: c.document.clone(),
                attributes: c.attributes.clone(),
                file_id: c.file_id.clone(),
                score: 1.0,
            })
            .collect())
    }
    async fn delete_chunks(&self, store_id: &str, selector: &ChunkSelector) -> Result<u64> {
        let mut stores = self.stores.lock().unwrap();
        let Some(chunks) = stores.get_mut(store_id) else {
            return Ok(0);
        };
        let before = chunks.len();
        chunks.retain(|c| match selector {
            ChunkSelector::Ids(ids) => !ids.contains(&c.chunk_id),
            ChunkSelector::File(file) => c.file_id.as_ref() != Some(file),
        });
        Ok((before - chunks.len()) as u64)
    }
    async fn count(&self, store_id: &str) -> Result<u64> {
        let stores = self.stores.lock().unwrap();
        Ok(stores.get(store_id).map_or(0, |c| c.len() as u64))
    }
}

/// Files in memory, listed oldest first, paged as a provider does: over every file.
#[derive(Default)]
struct Files {
    files: Mutex<Vec<(FileObject, Vec<u8>)>>,
}

#[async_trait]
impl FilesProvider for Files {
    async fn create(&self, file: NewFile) -> Result<FileObject> {
        let mut files = self.files.lock().unwrap();
        let object = FileObject {
            object: "file".into(),
            id: format!("file-{:032x}", files.len() + 1),
            bytes: file.content.len() as u64,
            created_at: files.len() as i64,
            expires_at: None,
            filename: file.filename,
            purpose: file.purpose,
            owner: file.owner,
        };
        files.push((object.clone(), file.content));
        Ok(object)
    }
    async fn list(&self, query: &FileListQuery) -> Result<FilePage> {
        let mut all: Vec<FileObject> = self
            .files
            .lock()
            .unwrap()
            .iter()
            .map(|(f, _)| f.clone())
            .collect();
        if query.order_desc {
            all.reverse();
        }
        let start = match &query.after {
            Some(after) => all.iter().position(|f| &f.id == after).map_or(0, |p| p + 1),
            None => 0,
        };
        let limit = query.limit.unwrap_or(10_000);
        let rest: Vec<FileObject> = all.into_iter().skip(start).collect();
        Ok(FilePage {
            has_more: rest.len() > limit,
            data: rest.into_iter().take(limit).collect(),
        })
    }
    async fn get(&self, file_id: &str) -> Result<FileObject> {
        let files = self.files.lock().unwrap();
        files
            .iter()
            .find(|(f, _)| f.id == file_id)
            .map(|(f, _)| f.clone())
            .ok_or_else(|| llama_stack_memory::files::file_not_found(file_id))
    }
    async fn content(&self, file_id: &str) -> Result<Vec<u8>> {
        let files = self.files.lock().unwrap();
        files
            .iter()
            .find(|(f, _)| f.id == file_id)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| llama_stack_memory::files::file_not_found(file_id))
    }
    async fn delete(&self, file_id: &str) -> Result<()> {
        let mut files = self.files.lock().unwrap();
        let before = files.len();
        files.retain(|(f, _)| f.id != file_id);
        if files.len() == before {
            return Err(llama_stack_memory::files::file_not_found(file_id));
        }
        Ok(())
    }
}

/// A memory service with enforcement on, and the registry store it keeps records in.
pub fn service() -> (Arc<MemoryService>, Arc<MemoryStore>) {
    access::enforce(policy());
    let registry = Arc::new(MemoryStore::default());
    let svc = MemoryService::new(
        vec![("vectors".into(), Arc::new(Vectors::default()))],
        vec![("files".into(), Arc::new(Files::default()))],
        registry.clone(),
        Arc::new(Embedder),
    );
    (Arc::new(svc), registry)
}

/// Uploads a text file as `who`.
pub async fn upload(svc: &MemoryService, who: &User, name: &str) -> FileObject {
    let file = FileUpload {
        content: Some(format!("{name} talks about llamas and their wool.").into_bytes()),
        filename: Some(name.into()),
        purpose: Some("assistants".into()),
        ..FileUpload::default()
    };
    as_user(who, svc.create_file(file)).await.unwrap()
}

/// Creates a vector store as `who`, returning its id.
pub async fn vector_store(svc: &MemoryService, who: &User, name: &str) -> String {
    let body = json!({"name": name, "embedding_model": "emb"});
    let store = as_user(
        who,
        svc.create_vector_store(body.as_object().unwrap().clone()),
    )
    .await
    .unwrap();
    store["id"].as_str().unwrap().to_string()
}

pub fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

pub fn first_page(limit: usize) -> PageQuery {
    PageQuery {
        limit: Some(limit),
        ..PageQuery::default()
    }
}

/// Polls a file batch as `who` until it is no longer running.
pub async fn finished_batch(svc: &MemoryService, who: &User, store: &str, batch: &str) -> Value {
    for _ in 0..200 {
        let object = as_user(who, svc.get_file_batch(store, batch))
            .await
            .unwrap();
        if object["status"] != "in_progress" {
            return object;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("file batch {batch} did not finish");
}
