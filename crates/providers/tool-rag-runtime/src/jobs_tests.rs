//! Background insert jobs over an in-memory metadata store and a memory API that records what
//! it stores: a run to the end, a resume after another holder's lease ran out, and a vector DB
//! that disappears.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Error, MemoryStore, RegistryStore, Result};
use llama_stack_documents::Tokenizer;
use llama_stack_memory::files::FileObject;
use llama_stack_memory::files_ops::FileUpload;
use llama_stack_memory::lease;
use llama_stack_memory::vector_io::{Chunk, ScoredChunk};
use llama_stack_memory::{MemoryApi, QueryParams};
use llama_stack_types::{InterleavedContent, RagDocument};
use serde_json::{Map, Value, json};

use crate::jobs::{JOB_KIND, RagJobs};

/// Stores one chunk per document, named after it, and remembers the inserts.
#[derive(Default)]
struct RecordingMemory {
    inserted: Mutex<Vec<String>>,
    gone: Mutex<bool>,
}

#[async_trait]
impl MemoryApi for RecordingMemory {
    fn chunk_tokenizer(&self) -> Arc<Tokenizer> {
        unimplemented!("not used by jobs")
    }

    async fn chunk_document(
        &self,
        document_id: &str,
        text: String,
        metadata: &Map<String, Value>,
        _size: usize,
        _overlap: usize,
    ) -> Result<Vec<Chunk>> {
        if text.contains("unreadable") {
            return Err(Error::invalid(format!("{document_id} cannot be chunked")));
        }
        Ok(vec![Chunk {
            content: InterleavedContent::Text(text),
            metadata: metadata.clone(),
            embedding: None,
            chunk_id: Some(document_id.to_string()),
            chunk_metadata: None,
        }])
    }

    async fn check_store(&self, _store_id: &str) -> Result<()> {
        Ok(())
    }

    async fn check_store_writable(&self, store_id: &str) -> Result<()> {
        if *self.gone.lock().unwrap() {
            return Err(Error::not_found(format!(
                "Vector DB '{store_id}' not found"
            )));
        }
        Ok(())
    }

    async fn insert_chunks_into(&self, _store_id: &str, chunks: Vec<Chunk>) -> Result<()> {
        let mut inserted = self.inserted.lock().unwrap();
        inserted.extend(chunks.into_iter().filter_map(|c| c.chunk_id));
        Ok(())
    }

    async fn search_chunks(&self, _: &str, _: &str, _: &QueryParams) -> Result<Vec<ScoredChunk>> {
        unimplemented!("not used by jobs")
    }

    async fn search_vector_store(&self, _: &str, _: Map<String, Value>) -> Result<Value> {
        unimplemented!("not used by jobs")
    }

    async fn get_file(&self, _: &str) -> Result<FileObject> {
        unimplemented!("not used by jobs")
    }

    async fn file_content(&self, _: &str) -> Result<Vec<u8>> {
        unimplemented!("not used by jobs")
    }

    async fn create_file(&self, _: FileUpload) -> Result<FileObject> {
        unimplemented!("not used by jobs")
    }
}

fn setup() -> (Arc<MemoryStore>, Arc<RecordingMemory>, Arc<RagJobs>) {
    let store = Arc::new(MemoryStore::default());
    let memory = Arc::new(RecordingMemory::default());
    let jobs = Arc::new(RagJobs::new(store.clone(), memory.clone(), 10));
    (store, memory, jobs)
}

fn doc(id: &str) -> RagDocument {
    RagDocument {
        document_id: id.into(),
        content: json!(""),
        mime_type: None,
        metadata: Map::new(),
    }
}

async fn finished(store: &MemoryStore, id: &str) -> Value {
    for _ in 0..200 {
        let record = store.get(JOB_KIND, id).await.unwrap().unwrap();
        if record["status"] != "in_progress" {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("job {id} did not finish");
}

#[tokio::test]
async fn a_job_stores_every_document_and_counts_them() {
    let (store, memory, jobs) = setup();
    let docs = [doc("a"), doc("b"), doc("c"), doc("d")];
    let texts = vec![
        Ok("alpha text".to_string()),
        Ok("unreadable".to_string()),
        Err(Error::invalid("d could not be fetched")),
        Ok("gamma text".to_string()),
    ];
    let object = jobs.create("db", 512, &docs, texts).await.unwrap();
    assert_eq!(object["status"], "in_progress");
    assert_eq!(object["documents"]["failed"], 1);
    let id = object["id"].as_str().unwrap().to_string();
    let record = finished(&store, &id).await;
    assert_eq!(record["status"], "completed");
    assert!(record.get("lease").is_none(), "the lease is given up");
    let object = jobs.get(&id).await.unwrap();
    assert_eq!(
        object["documents"],
        json!({"total": 4, "completed": 2, "failed": 2})
    );
    assert_eq!(object["chunks_stored"], 2);
    assert_eq!(*memory.inserted.lock().unwrap(), ["a", "d"]);
    assert!(
        store
            .list("rag_insert_job_document")
            .await
            .unwrap()
            .is_empty(),
        "the documents' texts are dropped once the job ends"
    );
    let err = jobs.cancel(&id).await.unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::Conflict);
    assert_eq!(jobs.list(Some("db")).await.unwrap().len(), 1);
    assert!(jobs.list(Some("other")).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_job_whose_holder_died_goes_on_from_its_first_unfinished_document() {
    let (store, memory, jobs) = setup();
    let id = "ragjob_left";
    let mut record = json!({
        "id": id, "vector_db_id": "db", "chunk_size_in_tokens": 512, "created_at": 1,
        "status": "in_progress", "completed_at": null, "error": null,
        "documents": [
            {"document_id": "done", "status": "completed", "chunks": 1},
            {"document_id": "next", "status": "pending", "chunks": 0},
        ],
    });
    lease::set_lease(&mut record, "holder_dead");
    // Still held: nobody takes it.
    store.put(JOB_KIND, id, &record).await.unwrap();
    store
        .put(
            "rag_insert_job_document",
            &format!("{id}/1"),
            &json!({"document_id": "next", "text": "next text", "metadata": {}}),
        )
        .await
        .unwrap();
    assert_eq!(jobs.claim_jobs().await.unwrap(), 0);
    record["lease"]["expires_at_ms"] = json!(0);
    store.put(JOB_KIND, id, &record).await.unwrap();
    assert_eq!(jobs.claim_jobs().await.unwrap(), 1);
    let record = finished(&store, id).await;
    assert_eq!(record["status"], "completed");
    assert_eq!(*memory.inserted.lock().unwrap(), ["next"]);
    assert_eq!(jobs.get(id).await.unwrap()["chunks_stored"], 2);
}

#[tokio::test]
async fn a_job_fails_when_its_vector_db_goes() {
    let (store, memory, jobs) = setup();
    *memory.gone.lock().unwrap() = true;
    let object = jobs
        .create("db", 512, &[doc("a")], vec![Ok("alpha".into())])
        .await
        .unwrap();
    let record = finished(&store, object["id"].as_str().unwrap()).await;
    assert_eq!(record["status"], "failed");
    assert_eq!(record["error"], "Vector DB 'db' not found");
    assert!(memory.inserted.lock().unwrap().is_empty());
}
