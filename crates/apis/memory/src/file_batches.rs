//! Vector store file batches (`/v1/vector_stores/{id}/file_batches`): several files attached
//! in the background, one after another, with counts that follow their store file records. A
//! batch is a record in the metadata store, leased by the replica running it (see
//! [`crate::lease`]); one whose replica stopped goes on with the files it had not reached, on
//! whichever replica claims it first once the lease runs out.
//!
//! A batch runs as the caller who created it (as its recorded owner after a restart), so it
//! attaches only the files that caller may read.

use std::sync::Arc;

use llama_stack_core::access::{self, Action, User};
use llama_stack_core::{Error, ErrorKind, Result, now_secs};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::lease;
use crate::service::{MemoryService, VECTOR_STORE};
use crate::vector_store_files::attributes_from;
use crate::vector_stores::{PageQuery, chunking_sizes, page};

const BATCH_KIND: &str = "vector_store_file_batch";

fn unfinished(record: &Value) -> bool {
    record["status"] == "in_progress"
}

/// The batches this process works on, so that a scan never starts a second run of one whose
/// renewal came late.
fn running() -> &'static std::sync::Mutex<std::collections::HashSet<String>> {
    static RUNNING: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> =
        std::sync::OnceLock::new();
    RUNNING.get_or_init(Default::default)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BatchRecord {
    id: String,
    vector_store_id: String,
    file_ids: Vec<String>,
    attributes: Map<String, Value>,
    chunking_strategy: Option<Value>,
    created_at: i64,
    /// `in_progress`, `completed` or `cancelled`.
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<User>,
}

fn batch_not_found(store_id: &str, batch_id: &str) -> Error {
    Error::not_found(format!(
        "File batch '{batch_id}' not found in vector store '{store_id}'"
    ))
}

fn body_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).with_location(vec!["body".into(), field.into()])
}

impl MemoryService {
    async fn batch(&self, store_id: &str, batch_id: &str) -> Result<BatchRecord> {
        self.store
            .get(BATCH_KIND, batch_id)
            .await?
            .and_then(|v| serde_json::from_value::<BatchRecord>(v).ok())
            .filter(|b| b.vector_store_id == store_id)
            .ok_or_else(|| batch_not_found(store_id, batch_id))
    }

    /// A batch the caller may do `action` to, judged as its store (or, once the store is
    /// gone, as the batch's owner); one they may not read is not found.
    async fn checked_batch(
        &self,
        action: Action,
        store_id: &str,
        batch_id: &str,
    ) -> Result<BatchRecord> {
        let batch = self.batch(store_id, batch_id).await?;
        let store_owner = self
            .stores
            .read()
            .await
            .get(store_id)
            .map(|r| r.owner.clone());
        let owner = store_owner.unwrap_or_else(|| batch.owner.clone());
        access::check(action, VECTOR_STORE, store_id, owner.as_ref(), || {
            batch_not_found(store_id, batch_id)
        })?;
        Ok(batch)
    }

    /// The batch object, its counts read from the store file records.
    async fn batch_object(&self, batch: &BatchRecord) -> Result<Value> {
        let records = self.store_file_records(&batch.vector_store_id).await?;
        let (mut done, mut failed, mut cancelled, mut running) = (0, 0, 0, 0);
        for id in &batch.file_ids {
            match records
                .iter()
                .find(|r| &r.id == id)
                .map(|r| r.status.as_str())
            {
                Some("completed") => done += 1,
                Some("failed") => failed += 1,
                Some("cancelled") => cancelled += 1,
                Some(_) => running += 1,
                None if batch.status == "cancelled" => cancelled += 1,
                None => running += 1,
            }
        }
        Ok(json!({
            "id": batch.id,
            "object": "vector_store.files_batch",
            "created_at": batch.created_at,
            "vector_store_id": batch.vector_store_id,
            "status": batch.status,
            "file_counts": {"in_progress": running, "completed": done, "failed": failed,
                            "cancelled": cancelled, "total": batch.file_ids.len()},
        }))
    }

    /// `POST /v1/vector_stores/{id}/file_batches`: answers at once, `in_progress`.
    pub async fn create_file_batch(
        self: &Arc<Self>,
        store_id: &str,
        body: Map<String, Value>,
    ) -> Result<Value> {
        self.resolve_as(Action::Update, VECTOR_STORE, store_id)
            .await?;
        let file_ids: Vec<String> = match body.get("file_ids") {
            Some(Value::Array(ids)) if !ids.is_empty() => ids
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        body_error("file_ids", format!("file_ids must be file ids, got {v}"))
                    })
                })
                .collect::<Result<_>>()?,
            _ => {
                return Err(body_error(
                    "file_ids",
                    "file_ids is required: a non-empty list of file ids",
                ));
            }
        };
        let strategy = body
            .get("chunking_strategy")
            .cloned()
            .filter(|v| !v.is_null());
        chunking_sizes(strategy.as_ref())?;
        let batch = BatchRecord {
            id: format!("vsfb_{}", uuid::Uuid::new_v4().simple()),
            vector_store_id: store_id.to_string(),
            file_ids,
            attributes: attributes_from(&body)?,
            chunking_strategy: strategy,
            created_at: now_secs(),
            status: "in_progress".into(),
            owner: access::owner_for_new(),
        };
        let mut value = serde_json::to_value(&batch).map_err(|e| Error::internal(e.to_string()))?;
        lease::set_lease(&mut value, lease::process_holder());
        self.store.put(BATCH_KIND, &batch.id, &value).await?;
        let object = self.batch_object(&batch).await?;
        let work = self.batch_work(batch);
        tokio::spawn(access::within(access::current(), work));
        Ok(object)
    }

    /// Runs a batch this process holds the lease of, renewing it meanwhile; stops when
    /// another replica took the batch over.
    fn batch_work(
        self: &Arc<Self>,
        batch: BatchRecord,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let svc = self.clone();
        async move {
            let id = batch.id.clone();
            if !running()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone())
            {
                return;
            }
            let holder = lease::process_holder();
            let run = svc.run_batch(batch);
            let outcome =
                lease::while_held(svc.store.clone(), BATCH_KIND, &id, holder, unfinished, run)
                    .await;
            if let Some(Err(err)) = outcome {
                tracing::error!(batch = %id, error = %err, "File batch stopped");
            }
            running()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }

    async fn run_batch(&self, batch: BatchRecord) -> Result<()> {
        let (store, _) = self.resolve_store(&batch.vector_store_id).await?;
        let sizes = chunking_sizes(batch.chunking_strategy.as_ref())?;
        for file_id in &batch.file_ids {
            // A cancel between two files stops the rest.
            if self.batch(&batch.vector_store_id, &batch.id).await?.status != "in_progress" {
                return Ok(());
            }
            let finished = self
                .store_file_records(&batch.vector_store_id)
                .await?
                .into_iter()
                .any(|r| &r.id == file_id && (r.status == "completed" || r.status == "failed"));
            if finished {
                continue;
            }
            let attached = self
                .attach_file(
                    &store,
                    file_id,
                    batch.attributes.clone(),
                    batch.chunking_strategy.clone(),
                    sizes,
                )
                .await;
            if let Err(err) = attached {
                if err.kind() != ErrorKind::NotFound {
                    return Err(err);
                }
                self.record_missing_file(&store, file_id, batch.chunking_strategy.clone(), &err)
                    .await?;
            }
        }
        // Completed only by its holder, which also gives the lease up.
        let holder = lease::process_holder();
        lease::update(self.store.as_ref(), BATCH_KIND, &batch.id, |current| {
            let mut record = current
                .filter(|r| unfinished(r) && lease::holder_of(r).is_none_or(|h| h == holder))?;
            record["status"] = json!("completed");
            lease::clear_lease(&mut record);
            Some(record)
        })
        .await?;
        Ok(())
    }

    /// Picks up the batches whose lease ran out (a replica, or an earlier run of this one,
    /// died running them), now and every [`lease::scan_interval`] after.
    pub async fn resume_file_batches(self: &Arc<Self>) -> Result<()> {
        self.claim_file_batches().await?;
        let svc = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease::scan_interval()).await;
                let Some(svc) = svc.upgrade() else { return };
                if let Err(e) = svc.claim_file_batches().await {
                    tracing::warn!(error = %e, "Cannot scan for file batches to take over");
                }
            }
        });
        Ok(())
    }

    /// One scan: claims every unfinished batch nobody holds and runs it; answers how many.
    pub(crate) async fn claim_file_batches(self: &Arc<Self>) -> Result<usize> {
        let mut claimed = 0;
        for value in self.store.list(BATCH_KIND).await? {
            let Some(id) = value["id"].as_str() else {
                continue;
            };
            if !unfinished(&value)
                || !lease::is_expired(&value)
                || running()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(id)
            {
                continue;
            }
            let holder = lease::process_holder();
            let Some(record) =
                lease::claim(self.store.as_ref(), BATCH_KIND, id, holder, unfinished).await?
            else {
                continue;
            };
            if let Ok(batch) = serde_json::from_value::<BatchRecord>(record) {
                tracing::info!(batch = %batch.id, "Resuming a vector store file batch");
                claimed += 1;
                let owner = batch.owner.clone();
                tokio::spawn(access::as_user(owner, self.batch_work(batch)));
            }
        }
        Ok(claimed)
    }

    /// `GET /v1/vector_stores/{id}/file_batches/{batch_id}`.
    pub async fn get_file_batch(&self, store_id: &str, batch_id: &str) -> Result<Value> {
        let batch = self.checked_batch(Action::Read, store_id, batch_id).await?;
        self.batch_object(&batch).await
    }

    /// `POST /v1/vector_stores/{id}/file_batches/{batch_id}/cancel`: files not yet reached
    /// are not attached.
    pub async fn cancel_file_batch(&self, store_id: &str, batch_id: &str) -> Result<Value> {
        let batch = self
            .checked_batch(Action::Update, store_id, batch_id)
            .await?;
        // Under the lease's lock, so that a renewal under way cannot write the batch back.
        let cancelled = lease::update(self.store.as_ref(), BATCH_KIND, batch_id, |current| {
            let mut record = current.filter(unfinished)?;
            record["status"] = json!("cancelled");
            lease::clear_lease(&mut record);
            Some(record)
        })
        .await?;
        let batch = match cancelled.map(serde_json::from_value::<BatchRecord>) {
            Some(Ok(cancelled)) => cancelled,
            _ => self.batch(store_id, batch_id).await.unwrap_or(batch),
        };
        self.batch_object(&batch).await
    }

    /// `GET /v1/vector_stores/{id}/file_batches/{batch_id}/files`.
    pub async fn list_file_batch_files(
        &self,
        store_id: &str,
        batch_id: &str,
        query: &PageQuery,
        status: Option<&str>,
    ) -> Result<Value> {
        let batch = self.checked_batch(Action::Read, store_id, batch_id).await?;
        let items = self
            .store_file_records(store_id)
            .await?
            .into_iter()
            .filter(|r| batch.file_ids.contains(&r.id))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .map(|r| r.to_object())
            .collect();
        page(items, query)
    }
}
