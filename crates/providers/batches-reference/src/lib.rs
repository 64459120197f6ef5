//! `inline::reference` batches: OpenAI batches run in the background over the inference API.
//!
//! A batch is a record in the distribution's metadata store, leased by the process running it
//! (the lease of [`llama_stack_memory::lease`], as vector store file batches and background
//! responses have), so replicas sharing one store run each batch once and take over the batches
//! of a replica that died. Each request's result is stored as it arrives, so a batch taken over
//! (or resumed after a restart) sends only the requests that have no result yet. The output and
//! error files are written through the files API when every request has its answer.
//!
//! Batches run behind interactive traffic: while any HTTP request is being answered, a batch
//! keeps at most one request of its own under way.

mod records;
mod run;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use async_trait::async_trait;
use futures::FutureExt;
use llama_stack_batches::{
    BATCH, BatchList, BatchObject, Batches, COMPLETION_WINDOW_SECS, CreateBatch, RequestCounts,
    Status, batch_id_for_key,
};
use llama_stack_core::access::{self, Action};
use llama_stack_core::paging::{PageRequest, page};
use llama_stack_core::{
    Api, CheckedConfig, ConfigIssue, Error, ErrorKind, RegistryStore, Result, load_config,
    now_secs, validate_config,
};
use llama_stack_inference::InferenceApi;
use llama_stack_memory::MemoryApi;
use llama_stack_memory::lease;
use llama_stack_responses::Responses;
use llama_stack_stack::{
    ApiHandles, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::records::{KIND, batch_not_found, object_of, owner_of};

pub const PROVIDER_TYPE: &str = "inline::reference";

/// How `response.body` of an output line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseBody {
    /// The answer's JSON text, as upstream writes it (its tests `json.loads` the body).
    #[default]
    String,
    /// The answer itself, as OpenAI writes it.
    Object,
}

/// Batches live in the distribution's metadata store (SQLite or PostgreSQL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceBatchesConfig {
    /// Batches this process runs at once; the others wait, `validating` or `in_progress`.
    #[serde(default = "default_batches")]
    pub max_concurrent_batches: usize,
    /// Requests of one batch under way at once while no interactive request is.
    #[serde(default = "default_requests")]
    pub max_concurrent_requests_per_batch: usize,
    /// `string` (upstream's, the default) or `object` (OpenAI's): how output lines carry the
    /// answer in `response.body`.
    #[serde(default)]
    pub response_body: ResponseBody,
    /// Upstream's own store settings; accepted so upstream files load. Batches go to the
    /// distribution's metadata store.
    #[serde(default)]
    pub kvstore: Option<Value>,
}

fn default_batches() -> usize {
    1
}

fn default_requests() -> usize {
    10
}

impl Default for ReferenceBatchesConfig {
    fn default() -> Self {
        ReferenceBatchesConfig {
            max_concurrent_batches: default_batches(),
            max_concurrent_requests_per_batch: default_requests(),
            response_body: ResponseBody::default(),
            kvstore: None,
        }
    }
}

impl CheckedConfig for ReferenceBatchesConfig {
    fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if !(1..=64).contains(&self.max_concurrent_batches) {
            issues.push(ConfigIssue::new(
                "max_concurrent_batches",
                format!(
                    "must be between 1 and 64, got {}",
                    self.max_concurrent_batches
                ),
            ));
        }
        if !(1..=256).contains(&self.max_concurrent_requests_per_batch) {
            issues.push(ConfigIssue::new(
                "max_concurrent_requests_per_batch",
                format!(
                    "must be between 1 and 256, got {}",
                    self.max_concurrent_requests_per_batch
                ),
            ));
        }
        issues
    }
}

pub const SAMPLE_CONFIG: &str =
    "max_concurrent_batches: 1\nmax_concurrent_requests_per_batch: 10\nresponse_body: string\n";

pub fn register(registry: &mut ProviderRegistry) {
    registry.register(ProviderSpec {
        api: Api::Batches,
        provider_type: PROVIDER_TYPE,
        aliases: &[],
        description: "OpenAI batches (/v1/batches) over the inference API: chat completions, completions and embeddings, in the background, resumable",
        sample_config: SAMPLE_CONFIG,
        validate: validate_config::<ReferenceBatchesConfig>,
        build,
    });
}

fn build(
    config: Value,
    ctx: ProviderContext,
) -> futures::future::BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = load_config::<ReferenceBatchesConfig>(&config, PROVIDER_TYPE)?;
        let store = ctx.require_registry(PROVIDER_TYPE)?;
        let inference = ApiHandles::require(&ctx.apis.inference, Api::Inference, PROVIDER_TYPE)?;
        let memory = ApiHandles::require(&ctx.apis.memory, Api::Files, PROVIDER_TYPE)?;
        let responses = ctx.apis.responses.clone();
        let batches = ReferenceBatches::new(store, inference, memory, responses, config);
        Ok(ProviderInstance::Batches(batches))
    }
    .boxed()
}

/// The reference batches provider.
pub struct ReferenceBatches {
    /// This provider, for the work it spawns.
    this: std::sync::Weak<ReferenceBatches>,
    pub(crate) store: Arc<dyn RegistryStore>,
    pub(crate) inference: Arc<dyn InferenceApi>,
    /// Input, output and error files.
    pub(crate) memory: Arc<dyn MemoryApi>,
    /// For `/v1/responses` batches, when the distribution serves responses.
    pub(crate) responses: Option<Arc<dyn Responses>>,
    pub(crate) config: ReferenceBatchesConfig,
    /// Who holds the leases of the batches this instance runs (one per process in a server).
    pub(crate) holder: String,
    /// One permit per batch running at once.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// The batches this instance works on, so a scan never starts a second run of one.
    pub(crate) running: std::sync::Mutex<HashSet<String>>,
    pub(crate) scanning: AtomicBool,
}

impl ReferenceBatches {
    pub fn new(
        store: Arc<dyn RegistryStore>,
        inference: Arc<dyn InferenceApi>,
        memory: Arc<dyn MemoryApi>,
        responses: Option<Arc<dyn Responses>>,
        config: ReferenceBatchesConfig,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| ReferenceBatches {
            this: this.clone(),
            store,
            inference,
            memory,
            responses,
            slots: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_batches)),
            config,
            holder: lease::new_holder(),
            running: std::sync::Mutex::new(HashSet::new()),
            scanning: AtomicBool::new(false),
        })
    }

    fn this(&self) -> Result<Arc<ReferenceBatches>> {
        self.this
            .upgrade()
            .ok_or_else(|| Error::internal("the batches provider is shutting down"))
    }

    /// The batch's record, if the caller may do `action` to it; one they may not read is not
    /// found.
    async fn checked(&self, action: Action, batch_id: &str) -> Result<Value> {
        let record = self
            .store
            .get(KIND, batch_id)
            .await?
            .ok_or_else(|| batch_not_found(batch_id))?;
        access::check(action, BATCH, batch_id, owner_of(&record).as_ref(), || {
            batch_not_found(batch_id)
        })?;
        Ok(record)
    }

    /// The batch an idempotency key created earlier, if its request was the same; a conflict
    /// if it was not.
    async fn existing_for_key(
        &self,
        id: &str,
        request: &CreateBatch,
    ) -> Result<Option<BatchObject>> {
        let Some(record) = self.store.get(KIND, id).await? else {
            return Ok(None);
        };
        let readable = access::can_read(BATCH, id, owner_of(&record).as_ref());
        let earlier = object_of(record)?;
        if readable
            && request.same_request(
                &earlier.input_file_id,
                &earlier.endpoint,
                &earlier.completion_window,
                earlier.metadata.as_ref(),
            )
        {
            return Ok(Some(earlier));
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "Idempotency key '{}' was previously used with different parameters. Either use a new idempotency key or ensure all parameters match the original request.",
                request.idempotency_key.as_deref().unwrap_or_default()
            ),
        ))
    }
}

#[async_trait]
impl Batches for ReferenceBatches {
    async fn create_batch(&self, body: Map<String, Value>) -> Result<BatchObject> {
        let request = CreateBatch::parse(&body)?;
        if request.endpoint == "/v1/responses" && self.responses.is_none() {
            return Err(Error::invalid(
                "This distribution serves no responses API, so a batch cannot call /v1/responses: add an inline::builtin provider under providers.responses in run.yaml",
            )
            .with_location(vec!["body".into(), "endpoint".into()]));
        }
        let id = match &request.idempotency_key {
            // Under auth each user's keys are their own: two users choosing the same key get
            // two batches, not one's conflict with the other's.
            Some(key) => match access::current_user() {
                Some(user) => batch_id_for_key(&format!("{}\u{0}{key}", user.principal)),
                None => batch_id_for_key(key),
            },
            None => format!("batch_{}", &uuid::Uuid::new_v4().simple().to_string()[..16]),
        };
        access::check_create(BATCH, &id)?;
        // Two requests with one key must not both create: the second waits and finds the first.
        let _lock = match request.idempotency_key {
            Some(_) => Some(self.store.lock(&lease::lock_key(KIND, &id)).await?),
            None => None,
        };
        if request.idempotency_key.is_some()
            && let Some(existing) = self.existing_for_key(&id, &request).await?
        {
            return Ok(existing);
        }
        let now = now_secs();
        let batch = BatchObject {
            id: id.clone(),
            object: "batch".into(),
            endpoint: request.endpoint,
            input_file_id: request.input_file_id,
            completion_window: request.completion_window,
            status: Status::Validating,
            created_at: now,
            errors: None,
            output_file_id: None,
            error_file_id: None,
            in_progress_at: None,
            expires_at: Some(now + COMPLETION_WINDOW_SECS),
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            request_counts: Some(RequestCounts::default()),
            metadata: request.metadata,
        };
        let mut record = records::record_of(&batch, access::owner_for_new())?;
        lease::set_lease(&mut record, &self.holder);
        self.store.put(KIND, &id, &record).await?;
        tokio::spawn(access::within(access::current(), self.this()?.work(id)));
        Ok(batch)
    }

    async fn get_batch(&self, batch_id: &str) -> Result<BatchObject> {
        object_of(self.checked(Action::Read, batch_id).await?)
    }

    async fn list_batches(&self, after: Option<&str>, limit: Option<usize>) -> Result<BatchList> {
        let mut batches: Vec<BatchObject> = Vec::new();
        for record in self.store.list(KIND).await? {
            let Some(id) = record["id"].as_str() else {
                continue;
            };
            if access::can_read(BATCH, id, owner_of(&record).as_ref()) {
                batches.push(object_of(record)?);
            }
        }
        // Oldest first, for the page to turn newest first.
        batches.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        let items = batches
            .into_iter()
            .map(|b| serde_json::to_value(b).map_err(|e| Error::internal(e.to_string())))
            .collect::<Result<Vec<_>>>()?;
        let request = PageRequest {
            limit,
            order: Some("desc"),
            after,
            before: None,
        };
        serde_json::from_value(page(items, request, 20, "desc")?)
            .map_err(|e| Error::internal(format!("cannot read a batch page: {e}")))
    }

    async fn cancel_batch(&self, batch_id: &str) -> Result<BatchObject> {
        let batch = object_of(self.checked(Action::Update, batch_id).await?)?;
        match batch.status {
            Status::Cancelling | Status::Cancelled => return Ok(batch),
            Status::Completed | Status::Failed | Status::Expired => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "Cannot cancel batch '{batch_id}' with status '{}'",
                        batch.status.as_str()
                    ),
                ));
            }
            Status::Validating | Status::InProgress | Status::Finalizing => {}
        }
        // Under the lease's lock, so that the runner's writes and this one do not cross. The
        // runner sees the status at its next check and stops.
        let written = lease::update(self.store.as_ref(), KIND, batch_id, |current| {
            let mut record = current.filter(records::unfinished)?;
            if record["status"] == "cancelling" {
                return None;
            }
            record["status"] = Value::from("cancelling");
            record["cancelling_at"] = Value::from(now_secs());
            Some(record)
        })
        .await?;
        match written {
            Some(record) => object_of(record),
            None => self.get_batch(batch_id).await,
        }
    }

    async fn resume(&self) -> Result<()> {
        self.this()?.resume_all().await
    }
}
