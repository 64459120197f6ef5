//! Background responses across replicas: the replica running one holds a lease in its record
//! (see `llama_stack_memory::lease`), and every replica scans for unfinished responses whose
//! lease ran out and takes them over, running them again from their stored request.

use std::sync::Arc;

use llama_stack_core::access;
use llama_stack_core::{Error, Result, now_secs};
use llama_stack_memory::lease::{self, Heartbeat};
use serde_json::{Value, json};

use crate::BuiltinResponses;
use crate::request::parse;
use crate::store::{RESPONSE_KIND, ResponseRecord, put_response};

pub(crate) fn unfinished(record: &Value) -> bool {
    let status = &record["response"]["status"];
    status == "queued" || status == "in_progress"
}

fn encode(record: &ResponseRecord) -> Result<Value> {
    serde_json::to_value(record)
        .map_err(|e| Error::internal(format!("cannot encode response: {e}")))
}

fn id_of(record: &ResponseRecord) -> String {
    record.response["id"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl BuiltinResponses {
    /// Stores a new background response, held by this process.
    pub(crate) async fn put_leased(&self, record: &ResponseRecord) -> Result<()> {
        let mut value = encode(record)?;
        lease::set_lease(&mut value, &self.lease_holder);
        self.store.put(RESPONSE_KIND, &id_of(record), &value).await
    }

    /// Writes a background response this process holds: with the lease renewed while it runs
    /// (`running`), without it once it ends. Nothing is written, and false answered, when the
    /// response was cancelled, deleted, or taken over by another replica.
    pub(crate) async fn write_held(&self, record: &ResponseRecord, running: bool) -> Result<bool> {
        let mut value = encode(record)?;
        let holder = self.lease_holder.as_str();
        let written = lease::update(
            self.store.as_ref(),
            RESPONSE_KIND,
            &id_of(record),
            |current| {
                let current = current?;
                if current["response"]["status"] == "cancelled"
                    || lease::holder_of(&current).is_some_and(|h| h != holder)
                {
                    return None;
                }
                if running {
                    lease::set_lease(&mut value, holder);
                }
                Some(value)
            },
        )
        .await?;
        Ok(written.is_some())
    }

    /// Renews the lease of a background response this process runs; stops the run when
    /// another replica took it over.
    pub(crate) fn heartbeat(self: &Arc<Self>, id: &str) -> Heartbeat {
        let svc = Arc::downgrade(self);
        let running = id.to_string();
        Heartbeat::start(
            self.store.clone(),
            RESPONSE_KIND,
            id.to_string(),
            self.lease_holder.clone(),
            unfinished,
            move || {
                if let Some(svc) = svc.upgrade()
                    && let Some(task) = svc
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&running)
                {
                    task.abort();
                }
            },
        )
    }

    /// Takes over background responses nobody holds, now and every scan interval after.
    pub(crate) async fn resume_leased(self: Arc<Self>) -> Result<()> {
        if self
            .scanning
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        self.claim_background().await?;
        let svc = Arc::downgrade(&self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease::scan_interval()).await;
                let Some(svc) = svc.upgrade() else { return };
                if let Err(e) = svc.claim_background().await {
                    tracing::warn!(error = %e, "Cannot scan for background responses to take over");
                }
            }
        });
        Ok(())
    }

    /// One scan: claims every unfinished background response whose lease ran out and runs it
    /// again as its owner; answers how many it claimed.
    pub(crate) async fn claim_background(self: &Arc<Self>) -> Result<usize> {
        let mut claimed = 0;
        for value in self.store.list(RESPONSE_KIND).await? {
            let Some(id) = value["response"]["id"].as_str() else {
                continue;
            };
            if !unfinished(&value)
                || !lease::is_expired(&value)
                || self
                    .running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains_key(id)
            {
                continue;
            }
            let Some(value) = lease::claim(
                self.store.as_ref(),
                RESPONSE_KIND,
                id,
                &self.lease_holder,
                unfinished,
            )
            .await?
            else {
                continue;
            };
            let Ok(record) = serde_json::from_value::<ResponseRecord>(value) else {
                continue;
            };
            claimed += 1;
            self.resume_one(record).await?;
        }
        Ok(claimed)
    }

    async fn resume_one(self: &Arc<Self>, record: ResponseRecord) -> Result<()> {
        let id = id_of(&record);
        let parsed = record
            .request
            .as_ref()
            .and_then(Value::as_object)
            .map(|body| parse(body, self.config.max_infer_iters));
        match parsed {
            Some(Ok(req)) => {
                tracing::info!(response = %id, "Resuming a background response a stopped replica left unfinished");
                let created_at = record.response["created_at"]
                    .as_i64()
                    .unwrap_or_else(now_secs);
                // It runs as its creator, never with more than they had.
                access::as_user(record.owner.clone(), async {
                    self.spawn_background_for(
                        req,
                        id,
                        created_at,
                        record.seq,
                        record.request.clone(),
                        record.owner.clone(),
                    )
                })
                .await;
            }
            _ => {
                let mut failed = record.response.clone();
                failed["status"] = json!("failed");
                failed["error"] = json!({"code": "server_error",
                    "message": "the server stopped while this response ran, and its request could not be read again"});
                put_response(
                    self.store.as_ref(),
                    &ResponseRecord {
                        response: failed,
                        ..record
                    },
                )
                .await?;
            }
        }
        Ok(())
    }
}
