//! Running a batch: validate the input file, send its requests with bounded concurrency, keep
//! each result as it arrives, then write the output and error files.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use llama_stack_batches::{
    BatchError, BatchErrors, BatchLine, BatchObject, RequestCounts, Status, referenced_models,
    validate_input,
};
use llama_stack_core::access;
use llama_stack_core::{Error, ErrorKind, Result, metrics, now_secs};
use llama_stack_memory::files_ops::FileUpload;
use llama_stack_memory::lease;
use llama_stack_responses::CreatedResponse;
use serde_json::{Value, json};

use crate::records::{
    KIND, error_line, object_of, owner_of, result_key, result_record, results_kind, status_of,
    success_line, unfinished,
};
use crate::{ReferenceBatches, ResponseBody};

/// How often the runner tops up its requests (when interactive traffic eased) and how many of
/// those ticks pass between two reads of the batch's status (a cancel from another replica).
const TICK: Duration = Duration::from_millis(100);
const TICKS_PER_STATUS_READ: u32 = 5;

/// Tries of a request the server or an upstream turned away for load, and the first wait.
const LOAD_RETRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How a run ended.
enum End {
    Completed,
    Cancelled,
    Expired,
    /// Another process holds the batch now; this one must write nothing more.
    Lost,
}

impl ReferenceBatches {
    /// Runs a batch this process holds the lease of, renewing it meanwhile.
    pub(crate) async fn work(self: Arc<Self>, id: String) {
        if !self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let run = self.run(&id);
        let outcome =
            lease::while_held(self.store.clone(), KIND, &id, &self.holder, unfinished, run).await;
        if let Some(Err(err)) = outcome {
            tracing::error!(batch = %id, error = %err, "Batch stopped");
            let failure = BatchError::new("internal_error", err.message());
            if let Err(e) = self.fail(&id, vec![failure]).await {
                tracing::error!(batch = %id, error = %e, "Cannot record a batch's failure");
            }
        }
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    async fn run(&self, id: &str) -> Result<()> {
        // A batch waiting here keeps its lease (the heartbeat runs), so no replica steals it.
        let _slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal("the batch slots closed"))?;
        let Some(record) = self.store.get(KIND, id).await? else {
            return Ok(());
        };
        let batch = object_of(record)?;
        let end = match batch.status {
            Status::Validating | Status::InProgress => {
                let Some(requests) = self.validated(&batch).await? else {
                    return Ok(());
                };
                if batch.status == Status::Validating {
                    let total = requests.len() as u64;
                    let moved = self
                        .write(id, |r| {
                            if r["status"] != "validating" {
                                return false;
                            }
                            r["status"] = json!("in_progress");
                            r["in_progress_at"] = json!(now_secs());
                            r["request_counts"] = json!(RequestCounts {
                                total,
                                ..Default::default()
                            });
                            true
                        })
                        .await?;
                    if moved.is_none() {
                        // Cancelled (or taken) while validating: finish as it stands now.
                        return self.finish_as_stored(id).await;
                    }
                }
                self.send_all(&batch, requests).await?
            }
            Status::Finalizing => End::Completed,
            Status::Cancelling => End::Cancelled,
            Status::Completed | Status::Failed | Status::Cancelled | Status::Expired => {
                return Ok(());
            }
        };
        self.finalize(id, end).await
    }

    /// Ends a batch whose status changed under the runner, as that status says.
    async fn finish_as_stored(&self, id: &str) -> Result<()> {
        let status = self.store.get(KIND, id).await?.as_ref().and_then(status_of);
        match status {
            Some(Status::Cancelling) => self.finalize(id, End::Cancelled).await,
            _ => Ok(()),
        }
    }

    /// The input file's requests, or `None` once the batch was failed for its problems.
    async fn validated(&self, batch: &BatchObject) -> Result<Option<Vec<BatchLine>>> {
        let file_error = |message: String| {
            vec![BatchError::new("invalid_request", message).param("input_file_id")]
        };
        let file = match self.memory.get_file(&batch.input_file_id).await {
            Ok(file) => file,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                let message = format!("Cannot find file {}.", batch.input_file_id);
                self.fail(&batch.id, file_error(message)).await?;
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        if file.purpose != "batch" {
            let message = format!(
                "File {} was uploaded with purpose '{}'; a batch's input file needs purpose 'batch'",
                batch.input_file_id, file.purpose
            );
            self.fail(&batch.id, file_error(message)).await?;
            return Ok(None);
        }
        let content = self.memory.file_content(&batch.input_file_id).await?;
        let mut served = HashSet::new();
        for model in referenced_models(&content) {
            if self.inference.get_model(&model).await.is_ok() {
                served.insert(model);
            }
        }
        let (errors, requests) = validate_input(&content, &batch.endpoint, &|m| served.contains(m));
        if !errors.is_empty() {
            self.fail(&batch.id, errors).await?;
            return Ok(None);
        }
        Ok(Some(requests))
    }

    /// Marks the batch failed with `errors`, if this process still holds it.
    async fn fail(&self, id: &str, errors: Vec<BatchError>) -> Result<()> {
        tracing::info!(batch = %id, errors = errors.len(), "Batch failed");
        self.write(id, |r| {
            r["status"] = json!("failed");
            r["failed_at"] = json!(now_secs());
            r["errors"] = json!(BatchErrors::of(errors.clone()));
            lease::clear_lease(r);
            true
        })
        .await?;
        Ok(())
    }

    /// Rewrites the batch's record under its lock, if it is unfinished and this process holds
    /// it (or nobody does); `change` answers whether to write. Answers what was written.
    async fn write(
        &self,
        id: &str,
        change: impl FnOnce(&mut Value) -> bool,
    ) -> Result<Option<Value>> {
        let holder = self.holder.as_str();
        lease::update(self.store.as_ref(), KIND, id, |current| {
            let mut record = current
                .filter(|r| unfinished(r) && lease::holder_of(r).is_none_or(|h| h == holder))?;
            change(&mut record).then_some(record)
        })
        .await
    }

    /// How many requests may be under way now: one while anyone waits on an HTTP answer.
    fn concurrency(&self) -> usize {
        if metrics::http_in_flight() > 0 {
            1
        } else {
            self.config.max_concurrent_requests_per_batch
        }
    }

    /// Sends every request that has no stored result yet, storing each result as it comes.
    async fn send_all(&self, batch: &BatchObject, requests: Vec<BatchLine>) -> Result<End> {
        let kind = results_kind(&batch.id);
        let stored = self.store.list(&kind).await?;
        let done: HashSet<u64> = stored.iter().filter_map(|r| r["line"].as_u64()).collect();
        let mut counts = RequestCounts {
            total: requests.len() as u64,
            completed: stored.iter().filter(|r| r["ok"] == true).count() as u64,
            failed: stored.iter().filter(|r| r["ok"] == false).count() as u64,
        };
        let mut pending: VecDeque<BatchLine> = requests
            .into_iter()
            .filter(|r| !done.contains(&r.line))
            .collect();
        if !done.is_empty() {
            tracing::info!(batch = %batch.id, done = done.len(), left = pending.len(), "Resuming a batch");
        }
        let mut under_way = FuturesUnordered::new();
        let mut tick = tokio::time::interval(TICK);
        let mut ticks = 0u32;
        loop {
            while under_way.len() < self.concurrency()
                && let Some(request) = pending.pop_front()
            {
                under_way.push(self.send(batch, request));
            }
            if under_way.is_empty() && pending.is_empty() {
                return Ok(End::Completed);
            }
            tokio::select! {
                Some((line, ok, output)) = under_way.next() => {
                    self.store.put(&kind, &result_key(line), &result_record(line, ok, output)).await?;
                    if ok { counts.completed += 1 } else { counts.failed += 1 }
                    let written = self.write(&batch.id, |r| {
                        if r["status"] != "in_progress" {
                            return false;
                        }
                        r["request_counts"] = json!(counts);
                        true
                    }).await?;
                    if written.is_none() && let Some(end) = self.interrupted(&batch.id).await? {
                        return Ok(end);
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks.is_multiple_of(TICKS_PER_STATUS_READ) && let Some(end) = self.interrupted(&batch.id).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Why the batch must stop, if it must: cancelled, expired, or no longer this process's.
    async fn interrupted(&self, id: &str) -> Result<Option<End>> {
        let Some(record) = self.store.get(KIND, id).await? else {
            return Ok(Some(End::Lost));
        };
        if lease::holder_of(&record).is_some_and(|h| h != self.holder) || !unfinished(&record) {
            return Ok(Some(End::Lost));
        }
        if status_of(&record) == Some(Status::Cancelling) {
            return Ok(Some(End::Cancelled));
        }
        if record["expires_at"]
            .as_i64()
            .is_some_and(|at| now_secs() >= at)
        {
            return Ok(Some(End::Expired));
        }
        Ok(None)
    }

    /// One request: its line, whether it succeeded, and its line for the output or error file.
    async fn send(&self, batch: &BatchObject, request: BatchLine) -> (u64, bool, Value) {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        let body = Value::Object(request.body);
        loop {
            tries += 1;
            match self.answer(&request.url, body.clone()).await {
                Ok(answer) => {
                    let body = match self.config.response_body {
                        ResponseBody::String => Value::String(answer.to_string()),
                        ResponseBody::Object => answer,
                    };
                    let line = success_line(&batch.id, request.line, &request.custom_id, body);
                    return (request.line, true, line);
                }
                Err(err)
                    if tries < LOAD_RETRIES
                        && matches!(err.kind(), ErrorKind::Overloaded | ErrorKind::RateLimited) =>
                {
                    // Batches yield to interactive work: a full queue is a reason to wait.
                    let wait = err.retry_after().unwrap_or(backoff).min(MAX_BACKOFF);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(err) => {
                    tracing::debug!(batch = %batch.id, line = request.line, error = %err, "Batch request failed");
                    let line = error_line(&batch.id, request.line, &request.custom_id, &err);
                    return (request.line, false, line);
                }
            }
        }
    }

    /// One request's answer, from the responses API or the inference API.
    async fn answer(&self, url: &str, body: Value) -> Result<Value> {
        if url != "/v1/responses" {
            return self.inference.openai_json(url, body).await;
        }
        let responses = self
            .responses
            .clone()
            .ok_or_else(|| Error::unsupported("This distribution serves no responses API"))?;
        let Value::Object(body) = body else {
            return Err(Error::invalid("The request body must be a JSON object"));
        };
        match responses.create_response(body).await? {
            CreatedResponse::Object(response) => Ok(response),
            CreatedResponse::Stream(_) => Err(Error::invalid(
                "Streaming is not supported in batch processing",
            )),
        }
    }

    /// Writes the output and error files of the results stored so far and ends the batch.
    async fn finalize(&self, id: &str, end: End) -> Result<()> {
        let mut status = match end {
            End::Lost => return Ok(()),
            End::Completed => Status::Completed,
            End::Cancelled => Status::Cancelled,
            End::Expired => Status::Expired,
        };
        if status == Status::Completed {
            let moved = self
                .write(id, |r| {
                    if r["status"] == "finalizing" {
                        return true;
                    }
                    if r["status"] != "in_progress" {
                        return false;
                    }
                    r["status"] = json!("finalizing");
                    r["finalizing_at"] = json!(now_secs());
                    true
                })
                .await?;
            if moved.is_none() {
                // Cancelled as the last request ended: the cancel wins.
                let stored = self.store.get(KIND, id).await?;
                if stored.as_ref().and_then(status_of) != Some(Status::Cancelling) {
                    return Ok(());
                }
                status = Status::Cancelled;
            }
        }
        let kind = results_kind(id);
        let results = self.store.list(&kind).await?;
        let lines = |ok: bool| -> Vec<u8> {
            let mut out = Vec::new();
            for r in results.iter().filter(|r| r["ok"] == ok) {
                out.extend_from_slice(r["output"].to_string().as_bytes());
                out.push(b'\n');
            }
            out
        };
        let (completed, failed) = (
            results.iter().filter(|r| r["ok"] == true).count() as u64,
            results.iter().filter(|r| r["ok"] == false).count() as u64,
        );
        // Each file id is recorded as soon as the file exists, so a process that takes the
        // batch over after a crash here does not write it twice.
        for (field, ok, suffix) in [
            ("output_file_id", true, "output"),
            ("error_file_id", false, "error"),
        ] {
            let content = lines(ok);
            let Some(record) = self.store.get(KIND, id).await? else {
                return Ok(());
            };
            if content.is_empty() || record[field].is_string() {
                continue;
            }
            let file = self
                .memory
                .create_file(FileUpload {
                    content: Some(content),
                    filename: Some(format!("{id}_{suffix}.jsonl")),
                    purpose: Some("batch".into()),
                    ..Default::default()
                })
                .await;
            let file = match file {
                Ok(file) => file,
                Err(err) => {
                    let failure = BatchError::new(
                        "output_failed",
                        format!("Cannot write the {suffix} file: {}", err.message()),
                    );
                    return self.fail(id, vec![failure]).await;
                }
            };
            let written = self
                .write(id, |r| {
                    r[field] = json!(file.id);
                    true
                })
                .await?;
            if written.is_none() {
                return Ok(());
            }
        }
        let now = now_secs();
        let at = match status {
            Status::Cancelled => "cancelled_at",
            Status::Expired => "expired_at",
            _ => "completed_at",
        };
        let ended = self
            .write(id, |r| {
                r["status"] = json!(status);
                r[at] = json!(now);
                let total = r["request_counts"]["total"]
                    .as_u64()
                    .unwrap_or(completed + failed);
                r["request_counts"] = json!(RequestCounts {
                    total,
                    completed,
                    failed
                });
                lease::clear_lease(r);
                true
            })
            .await?;
        if ended.is_some() {
            tracing::info!(batch = %id, status = status.as_str(), completed, failed, "Batch ended");
            for r in &results {
                if let Some(line) = r["line"].as_u64() {
                    self.store.delete(&kind, &result_key(line)).await?;
                }
            }
        }
        Ok(())
    }

    /// Picks up the batches whose lease ran out (their process died), now and every
    /// [`lease::scan_interval`] after.
    pub(crate) async fn resume_all(self: Arc<Self>) -> Result<()> {
        self.claim_all().await?;
        if self.scanning.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let batches = Arc::downgrade(&self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease::scan_interval()).await;
                let Some(batches) = batches.upgrade() else {
                    return;
                };
                if let Err(e) = batches.claim_all().await {
                    tracing::warn!(error = %e, "Cannot scan for batches to take over");
                }
            }
        });
        Ok(())
    }

    /// One scan: claims every unfinished batch nobody holds and runs it as its owner.
    pub(crate) async fn claim_all(self: &Arc<Self>) -> Result<usize> {
        let mut claimed = 0;
        for value in self.store.list(KIND).await? {
            let Some(id) = value["id"].as_str() else {
                continue;
            };
            let busy = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(id);
            if busy || !unfinished(&value) || !lease::is_expired(&value) {
                continue;
            }
            let Some(record) =
                lease::claim(self.store.as_ref(), KIND, id, &self.holder, unfinished).await?
            else {
                continue;
            };
            tracing::info!(batch = %id, "Taking up a batch left unfinished");
            claimed += 1;
            let owner = owner_of(&record);
            tokio::spawn(access::as_user(owner, self.clone().work(id.to_string())));
        }
        Ok(claimed)
    }
}
