//! Background RAG inserts: a `rag-tool/insert` whose documents' loaded text is larger than
//! `background_insert_bytes` answers at once with a job (`rag_tool.insert_job`) and is
//! embedded and stored in the background, one document after another.
//!
//! A job is a record in the metadata store (kind `rag_insert_job`), leased by the process
//! running it (see `llama_stack_memory::lease`); each loaded document's text is a record of its
//! own (`rag_insert_job_document`), so that renewing the lease or writing progress never
//! rewrites the documents. Progress is written as each document finishes. A job whose process
//! stopped is claimed, once its lease runs out, by whichever process sharing the store scans
//! first, and goes on from its first document not finished: a document is stored by one insert
//! call, so it is either stored whole or done again, and its chunk ids are derived from the
//! document id, the token window and the text, so doing it again replaces its chunks instead of
//! adding copies.
//!
//! A document that fails is recorded as failed and the job goes on with the next one; the job
//! ends `completed` with `documents.failed` counting those, and `failed` only when nothing
//! could be stored (every document failed) or the vector DB could no longer be written (it was
//! deleted, or its owner lost the right). A job runs as the caller who created it (as its
//! recorded owner after a restart).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use llama_stack_core::access::{self, Action, User};
use llama_stack_core::{Error, ErrorKind, RegistryStore, Result, now_secs};
use llama_stack_memory::MemoryApi;
use llama_stack_memory::lease;
use llama_stack_types::RagDocument;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::rag::insert_document;

pub(crate) const JOB_KIND: &str = "rag_insert_job";
const DOCUMENT_KIND: &str = "rag_insert_job_document";
const VECTOR_DB: &str = "vector_db";

const IN_PROGRESS: &str = "in_progress";
const PENDING: &str = "pending";
const COMPLETED: &str = "completed";
const FAILED: &str = "failed";
const CANCELLED: &str = "cancelled";

/// Whether an insert of `loaded_bytes` of document text runs as a background job under the
/// bound `background_insert_bytes` (0: never).
pub(crate) fn goes_to_background(background_insert_bytes: u64, loaded_bytes: u64) -> bool {
    background_insert_bytes != 0 && loaded_bytes > background_insert_bytes
}

fn unfinished(record: &Value) -> bool {
    record["status"] == IN_PROGRESS
}

fn job_not_found(id: &str) -> Error {
    Error::not_found(format!("RAG insert job '{id}' not found"))
}

fn document_key(job_id: &str, index: usize) -> String {
    format!("{job_id}/{index}")
}

fn internal(err: impl std::fmt::Display) -> Error {
    Error::internal(err.to_string())
}

/// One document of a job and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DocumentProgress {
    pub document_id: String,
    /// `pending`, `completed` or `failed`.
    pub status: String,
    #[serde(default)]
    pub chunks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job as stored (besides its `lease`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JobRecord {
    pub id: String,
    pub vector_db_id: String,
    pub chunk_size_in_tokens: usize,
    pub created_at: i64,
    /// `in_progress`, `completed`, `failed` or `cancelled`.
    pub status: String,
    #[serde(default)]
    pub completed_at: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    pub documents: Vec<DocumentProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

impl JobRecord {
    fn count(&self, status: &str) -> usize {
        self.documents.iter().filter(|d| d.status == status).count()
    }

    /// The `rag_tool.insert_job` object clients see.
    pub fn object(&self) -> Value {
        let failed: Vec<Value> = self
            .documents
            .iter()
            .filter(|d| d.status == FAILED)
            .map(|d| json!({"document_id": d.document_id, "error": d.error}))
            .collect();
        json!({
            "id": self.id,
            "object": "rag_tool.insert_job",
            "status": self.status,
            "vector_db_id": self.vector_db_id,
            "documents": {
                "total": self.documents.len(),
                "completed": self.count(COMPLETED),
                "failed": self.count(FAILED),
            },
            "chunks_stored": self.documents.iter().map(|d| d.chunks).sum::<u64>(),
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "error": self.error,
            "failed_documents": failed,
        })
    }

    /// Ends the job: `failed` when `fatal` (the vector DB can no longer be written; documents
    /// not reached fail with it) or when no document was stored, `completed` otherwise.
    fn finish(&mut self, fatal: Option<String>) {
        if let Some(reason) = &fatal {
            for doc in self.documents.iter_mut().filter(|d| d.status == PENDING) {
                doc.status = FAILED.into();
                doc.error = Some(format!("not inserted: {reason}"));
            }
        }
        let nothing_stored = self.count(COMPLETED) == 0 && self.count(FAILED) > 0;
        self.status = if fatal.is_some() || nothing_stored {
            FAILED
        } else {
            COMPLETED
        }
        .into();
        self.error = fatal.or_else(|| {
            nothing_stored
                .then(|| {
                    self.documents
                        .iter()
                        .find_map(|d| d.error.clone())
                        .map(|e| format!("no document could be inserted: {e}"))
                })
                .flatten()
        });
        self.completed_at = Some(now_secs());
    }
}

/// Rewrites the stored job through `change`, keeping its lease.
fn edit(record: Value, change: impl FnOnce(&mut JobRecord)) -> Option<Value> {
    let mut job: JobRecord = serde_json::from_value(record.clone()).ok()?;
    change(&mut job);
    let mut value = serde_json::to_value(&job).ok()?;
    if let (Value::Object(map), Some(lease)) = (&mut value, record.get("lease")) {
        map.insert("lease".into(), lease.clone());
    }
    Some(value)
}

/// The background jobs of one RAG runtime: their store, and which of them this process runs.
pub struct RagJobs {
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) memory: Arc<dyn MemoryApi>,
    /// `background_insert_bytes` of the config.
    pub(crate) bound: u64,
    holder: String,
    running: Mutex<HashSet<String>>,
}

impl RagJobs {
    pub fn new(store: Arc<dyn RegistryStore>, memory: Arc<dyn MemoryApi>, bound: u64) -> Self {
        RagJobs {
            store,
            memory,
            bound,
            holder: lease::new_holder(),
            running: Mutex::new(HashSet::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn record(&self, id: &str) -> Result<Option<JobRecord>> {
        Ok(self
            .store
            .get(JOB_KIND, id)
            .await?
            .and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Starts a job over documents already loaded (`texts[i]` is `documents[i]`'s text, or why
    /// it could not be loaded); answers its object.
    pub(crate) async fn create(
        self: &Arc<Self>,
        vector_db_id: &str,
        chunk_size_in_tokens: usize,
        documents: &[RagDocument],
        texts: Vec<Result<String>>,
    ) -> Result<Value> {
        let id = format!("ragjob_{}", uuid::Uuid::new_v4().simple());
        let mut progress = Vec::with_capacity(documents.len());
        // The documents go in before the job, so that a scan never finds a job without them.
        for (i, (doc, text)) in documents.iter().zip(texts).enumerate() {
            let mut entry = DocumentProgress {
                document_id: doc.document_id.clone(),
                status: PENDING.into(),
                chunks: 0,
                error: None,
            };
            match text {
                Ok(text) => {
                    let stored = json!({"document_id": doc.document_id, "text": text,
                                        "metadata": doc.metadata});
                    self.store
                        .put(DOCUMENT_KIND, &document_key(&id, i), &stored)
                        .await?;
                }
                Err(err) => {
                    entry.status = FAILED.into();
                    entry.error = Some(err.message().to_string());
                }
            }
            progress.push(entry);
        }
        let job = JobRecord {
            id: id.clone(),
            vector_db_id: vector_db_id.to_string(),
            chunk_size_in_tokens,
            created_at: now_secs(),
            status: IN_PROGRESS.into(),
            completed_at: None,
            error: None,
            documents: progress,
            owner: access::owner_for_new(),
        };
        let mut value = serde_json::to_value(&job).map_err(internal)?;
        lease::set_lease(&mut value, &self.holder);
        self.store.put(JOB_KIND, &id, &value).await?;
        tracing::info!(job = %id, store = %vector_db_id, documents = job.documents.len(),
            "RAG insert continues in the background");
        let object = job.object();
        tokio::spawn(access::within(access::current(), self.clone().work(job)));
        Ok(object)
    }

    /// Runs a job this process holds the lease of, renewing it meanwhile; stops when another
    /// process took it over, or as soon as it is cancelled (the document under way is dropped
    /// before it is stored, or kept if it was being written).
    async fn work(self: Arc<Self>, job: JobRecord) {
        let id = job.id.clone();
        if !self.running().insert(id.clone()) {
            return;
        }
        // `None` inside: cancelled, seen before the run ended.
        let work = async {
            tokio::select! {
                result = self.run(job) => Some(result),
                () = self.ended_elsewhere(&id) => None,
            }
        };
        let held = self.holder.clone();
        match lease::while_held(self.store.clone(), JOB_KIND, &id, &held, unfinished, work).await {
            // Left in progress: the lease runs out and a later scan tries again.
            Some(Some(Err(err))) => {
                tracing::error!(job = %id, error = %err, "RAG insert job stopped")
            }
            Some(None) => tracing::info!(job = %id, "RAG insert job cancelled"),
            Some(Some(Ok(()))) | None => {}
        }
        self.running().remove(&id);
    }

    /// Returns once the job is no longer in progress (cancelled) or gone.
    async fn ended_elsewhere(&self, id: &str) {
        loop {
            tokio::time::sleep(lease::heartbeat_interval()).await;
            match self.store.get(JOB_KIND, id).await {
                Ok(Some(record)) if unfinished(&record) => {}
                Ok(_) => return,
                Err(_) => {}
            }
        }
    }

    async fn run(&self, job: JobRecord) -> Result<()> {
        let total = job.documents.len();
        for (i, doc) in job.documents.iter().enumerate() {
            if doc.status != PENDING {
                continue;
            }
            // A cancel between two documents stops the rest.
            match self.record(&job.id).await? {
                Some(current) if current.status == IN_PROGRESS => {}
                _ => return Ok(()),
            }
            if let Err(err) = self.memory.check_store_writable(&job.vector_db_id).await {
                return self.end(&job.id, Some(err.message().to_string())).await;
            }
            let Some(stored) = self
                .store
                .get(DOCUMENT_KIND, &document_key(&job.id, i))
                .await?
            else {
                if self
                    .record(&job.id)
                    .await?
                    .is_none_or(|j| j.status != IN_PROGRESS)
                {
                    return Ok(());
                }
                self.progress(&job.id, i, Err("the document's text was lost".into()))
                    .await?;
                continue;
            };
            let text = stored["text"].as_str().unwrap_or_default().to_string();
            let metadata = stored["metadata"].as_object().cloned().unwrap_or_default();
            let result = insert_document(
                self.memory.as_ref(),
                &job.vector_db_id,
                &doc.document_id,
                text,
                &metadata,
                job.chunk_size_in_tokens,
            )
            .await;
            match &result {
                Ok(n) => tracing::info!(job = %job.id, store = %job.vector_db_id,
                    document = %doc.document_id, progress = %format!("{}/{total}", i + 1),
                    chunks = n, "Ingested document"),
                Err(err) => tracing::warn!(job = %job.id, store = %job.vector_db_id,
                    document = %doc.document_id, progress = %format!("{}/{total}", i + 1),
                    error = %err.message(), "Document not ingested"),
            }
            self.progress(
                &job.id,
                i,
                result
                    .map(|n| n as u64)
                    .map_err(|e| e.message().to_string()),
            )
            .await?;
            let _ = self
                .store
                .delete(DOCUMENT_KIND, &document_key(&job.id, i))
                .await;
        }
        self.end(&job.id, None).await
    }

    /// Records how document `index` went, unless another process holds the job now.
    async fn progress(
        &self,
        id: &str,
        index: usize,
        outcome: std::result::Result<u64, String>,
    ) -> Result<()> {
        let holder = self.holder.as_str();
        lease::update(self.store.as_ref(), JOB_KIND, id, |current| {
            let current = current.filter(|r| lease::holder_of(r).is_none_or(|h| h == holder))?;
            edit(current, |job| {
                if let Some(doc) = job.documents.get_mut(index) {
                    match outcome {
                        Ok(chunks) => {
                            doc.status = COMPLETED.into();
                            doc.chunks = chunks;
                            doc.error = None;
                        }
                        Err(message) => {
                            doc.status = FAILED.into();
                            doc.error = Some(message);
                        }
                    }
                }
            })
        })
        .await?;
        Ok(())
    }

    /// Finishes the job (only its holder does), gives the lease up and drops its documents.
    async fn end(&self, id: &str, fatal: Option<String>) -> Result<()> {
        let holder = self.holder.as_str();
        let ended = lease::update(self.store.as_ref(), JOB_KIND, id, |current| {
            let current = current
                .filter(|r| unfinished(r) && lease::holder_of(r).is_none_or(|h| h == holder))?;
            let mut value = edit(current, |job| job.finish(fatal))?;
            lease::clear_lease(&mut value);
            Some(value)
        })
        .await?;
        if let Some(job) = ended.and_then(|v| serde_json::from_value::<JobRecord>(v).ok()) {
            tracing::info!(job = %id, status = %job.status, completed = job.count(COMPLETED),
                failed = job.count(FAILED), "RAG insert job finished");
            self.drop_documents(&job).await;
        }
        Ok(())
    }

    async fn drop_documents(&self, job: &JobRecord) {
        for i in 0..job.documents.len() {
            if let Err(err) = self
                .store
                .delete(DOCUMENT_KIND, &document_key(&job.id, i))
                .await
            {
                tracing::warn!(job = %job.id, error = %err, "Cannot delete a job's document text");
            }
        }
    }

    /// Picks up the jobs whose lease ran out (a process running them died), now and every
    /// [`lease::scan_interval`] after.
    pub(crate) async fn resume(self: &Arc<Self>) -> Result<()> {
        self.claim_jobs().await?;
        let jobs = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease::scan_interval()).await;
                let Some(jobs) = jobs.upgrade() else { return };
                if let Err(e) = jobs.claim_jobs().await {
                    tracing::warn!(error = %e, "Cannot scan for RAG insert jobs to take over");
                }
            }
        });
        Ok(())
    }

    /// One scan: claims every unfinished job nobody holds and runs it; answers how many.
    pub(crate) async fn claim_jobs(self: &Arc<Self>) -> Result<usize> {
        let mut claimed = 0;
        for value in self.store.list(JOB_KIND).await? {
            let Some(id) = value["id"].as_str() else {
                continue;
            };
            if !unfinished(&value) || !lease::is_expired(&value) || self.running().contains(id) {
                continue;
            }
            let Some(record) =
                lease::claim(self.store.as_ref(), JOB_KIND, id, &self.holder, unfinished).await?
            else {
                continue;
            };
            if let Ok(job) = serde_json::from_value::<JobRecord>(record) {
                tracing::info!(job = %job.id, completed = job.count(COMPLETED),
                    total = job.documents.len(), "Resuming a RAG insert job");
                claimed += 1;
                let owner = job.owner.clone();
                tokio::spawn(access::as_user(owner, self.clone().work(job)));
            }
        }
        Ok(claimed)
    }

    /// Whether the caller may do `action` to the job: as they may to its vector DB, or, once
    /// the vector DB is gone (or hidden from them), as the vector DB owned by the job's owner.
    /// One they may not read is not found.
    async fn check(&self, action: Action, job: &JobRecord) -> Result<()> {
        match self.memory.check_store_writable(&job.vector_db_id).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == ErrorKind::Forbidden => match action {
                Action::Read => Ok(()),
                _ => Err(err),
            },
            Err(_) => access::check(
                action,
                VECTOR_DB,
                &job.vector_db_id,
                job.owner.as_ref(),
                || job_not_found(&job.id),
            ),
        }
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs/{job_id}`.
    pub(crate) async fn get(&self, id: &str) -> Result<Value> {
        let job = self.record(id).await?.ok_or_else(|| job_not_found(id))?;
        self.check(Action::Read, &job).await?;
        Ok(job.object())
    }

    /// `GET /v1/tool-runtime/rag-tool/jobs`: the jobs the caller may read, oldest first.
    pub(crate) async fn list(&self, vector_db_id: Option<&str>) -> Result<Vec<Value>> {
        let mut jobs: Vec<JobRecord> = self
            .store
            .list(JOB_KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<JobRecord>(v).ok())
            .filter(|j| vector_db_id.is_none_or(|db| j.vector_db_id == db))
            .collect();
        jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if self.check(Action::Read, &job).await.is_ok() {
                out.push(job.object());
            }
        }
        Ok(out)
    }

    /// `POST /v1/tool-runtime/rag-tool/jobs/{job_id}/cancel`: documents not yet stored are
    /// not; a finished job is a conflict.
    pub(crate) async fn cancel(&self, id: &str) -> Result<Value> {
        let job = self.record(id).await?.ok_or_else(|| job_not_found(id))?;
        self.check(Action::Update, &job).await?;
        // Under the lease's lock, so that a renewal under way cannot write the job back.
        let cancelled = lease::update(self.store.as_ref(), JOB_KIND, id, |current| {
            let current = current.filter(unfinished)?;
            let mut value = edit(current, |job| {
                job.status = CANCELLED.into();
                job.completed_at = Some(now_secs());
            })?;
            lease::clear_lease(&mut value);
            Some(value)
        })
        .await?;
        match cancelled.and_then(|v| serde_json::from_value::<JobRecord>(v).ok()) {
            Some(job) => {
                self.drop_documents(&job).await;
                Ok(job.object())
            }
            None => {
                let status = self
                    .record(id)
                    .await?
                    .map(|j| j.status)
                    .unwrap_or(job.status);
                Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "RAG insert job '{id}' is already {status}; only a job in progress can be cancelled"
                    ),
                ))
            }
        }
    }
}

/// The loaded size of `texts`, in bytes.
pub(crate) fn loaded_bytes(texts: &[Result<String>]) -> u64 {
    texts
        .iter()
        .filter_map(|t| t.as_ref().ok())
        .map(|t| t.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(statuses: &[&str]) -> JobRecord {
        JobRecord {
            id: "ragjob_x".into(),
            vector_db_id: "db".into(),
            chunk_size_in_tokens: 512,
            created_at: 1,
            status: IN_PROGRESS.into(),
            completed_at: None,
            error: None,
            documents: statuses
                .iter()
                .enumerate()
                .map(|(i, s)| DocumentProgress {
                    document_id: format!("d{i}"),
                    status: s.to_string(),
                    chunks: if *s == COMPLETED { 3 } else { 0 },
                    error: (*s == FAILED).then(|| format!("bad d{i}")),
                })
                .collect(),
            owner: None,
        }
    }

    #[test]
    fn the_bound_decides_and_zero_means_never() {
        assert!(!goes_to_background(1024, 1024));
        assert!(goes_to_background(1024, 1025));
        assert!(!goes_to_background(0, u64::MAX));
        let texts = vec![
            Ok("abc".to_string()),
            Err(Error::invalid("x")),
            Ok("de".into()),
        ];
        assert_eq!(loaded_bytes(&texts), 5);
    }

    #[test]
    fn the_object_counts_progress() {
        let object = job(&[COMPLETED, FAILED, PENDING]).object();
        assert_eq!(object["object"], "rag_tool.insert_job");
        assert_eq!(object["status"], "in_progress");
        assert_eq!(
            object["documents"],
            json!({"total": 3, "completed": 1, "failed": 1})
        );
        assert_eq!(object["chunks_stored"], 3);
        assert_eq!(object["error"], Value::Null);
        assert_eq!(
            object["failed_documents"],
            json!([{"document_id": "d1", "error": "bad d1"}])
        );
    }

    #[test]
    fn a_failed_document_does_not_fail_the_job() {
        let mut j = job(&[COMPLETED, FAILED]);
        j.finish(None);
        assert_eq!(j.status, COMPLETED);
        assert_eq!(j.error, None);
        assert!(j.completed_at.is_some());
    }

    #[test]
    fn nothing_stored_fails_the_job() {
        let mut j = job(&[FAILED, FAILED]);
        j.finish(None);
        assert_eq!(j.status, FAILED);
        assert_eq!(
            j.error.as_deref(),
            Some("no document could be inserted: bad d0")
        );
        let mut empty = job(&[]);
        empty.finish(None);
        assert_eq!(empty.status, COMPLETED);
    }

    #[test]
    fn a_lost_vector_db_fails_the_rest() {
        let mut j = job(&[COMPLETED, PENDING]);
        j.finish(Some("Vector DB 'db' not found".into()));
        assert_eq!(j.status, FAILED);
        assert_eq!(j.documents[1].status, FAILED);
        assert_eq!(j.object()["documents"]["failed"], 1);
    }

    #[test]
    fn edits_keep_the_lease() {
        let mut value = serde_json::to_value(job(&[PENDING])).unwrap();
        lease::set_lease(&mut value, "holder_a");
        let edited = edit(value, |j| j.documents[0].status = COMPLETED.into()).unwrap();
        assert_eq!(lease::holder_of(&edited), Some("holder_a"));
        assert_eq!(edited["documents"][0]["status"], COMPLETED);
    }
}
