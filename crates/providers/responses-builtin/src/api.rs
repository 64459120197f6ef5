//! The [`Responses`] trait over the run loop and the store: creating (plain, streamed or in
//! the background), reading, listing, deleting and cancelling responses.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, ErrorKind, Result, now_secs};
use llama_stack_responses::{CreatedResponse, ListQuery, Responses};
use serde_json::{Map, Value, json};
use tokio::sync::OwnedMutexGuard;
use tokio::sync::mpsc::unbounded_channel;
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::BuiltinResponses;
use crate::events::Emitter;
use crate::input::{items_to_messages, tool_call_ids};
use crate::request::{CreateRequest, field_error, parse};
use crate::run::{Run, response_object};
use crate::store::{
    RESPONSE_KIND, RESPONSE_RESOURCE, ResponseRecord, get_conversation, get_items, new_id,
    now_nanos, page, put_items, put_response, response_for,
};
use crate::tools::ToolSpec;
use llama_stack_memory::lease;

/// What a response starts from, read under the conversation's lock.
struct Prepared {
    guard: Option<OwnedMutexGuard<()>>,
    messages: Vec<Value>,
    prior_items: Vec<Value>,
}

/// A response's identity, fixed when it is created.
#[derive(Clone)]
struct Identity {
    id: String,
    created_at: i64,
    seq: u64,
    /// The request body of a background response.
    body: Option<Value>,
    /// Who created it, recorded on every write of it.
    owner: Option<llama_stack_types::User>,
}

fn failed_object(run: &Run, error: &Error) -> Value {
    let mut object = run.object("failed");
    object["error"] = json!({
        "code": if error.kind() == ErrorKind::InvalidRequest { "invalid_prompt" } else { "server_error" },
        "message": error.message(),
    });
    object
}

impl BuiltinResponses {
    /// Checks what a request names before anything runs, so that a bad name is a 4xx.
    async fn check_request(&self, req: &CreateRequest) -> Result<()> {
        self.inference.get_model(&req.model).await.map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                // Upstream's wording first, then which models there are.
                let known = e.message().split_once(". ").map(|(_, rest)| rest).unwrap_or("");
                field_error(
                    &["model".into()],
                    format!(
                        "Model '{}' not found. Use 'client.models.list()' to list available Models. {known}",
                        req.model
                    ),
                )
                .with_kind(ErrorKind::NotFound)
            } else {
                e
            }
        })?;
        for (i, tool) in req.tools.iter().enumerate() {
            if let ToolSpec::FileSearch {
                vector_store_ids, ..
            } = tool
            {
                let memory = self.memory.as_ref().ok_or_else(|| {
                    field_error(
                        &["tools".into(), i.into()],
                        "file_search needs vector stores: this distribution has no vector_io provider",
                    )
                })?;
                for id in vector_store_ids {
                    memory.check_store(id).await.map_err(|e| {
                        field_error(
                            &["tools".into(), i.into(), "vector_store_ids".into()],
                            e.message().to_string(),
                        )
                        .with_kind(e.kind())
                    })?;
                }
            }
        }
        if !req.guardrails.is_empty() {
            let safety = self.safety.as_ref().ok_or_else(|| {
                field_error(
                    &["guardrails".into()],
                    "guardrails need the safety API: add a safety provider to run.yaml",
                )
            })?;
            for (i, shield) in req.guardrails.iter().enumerate() {
                safety.get_shield(shield).await.map_err(|e| {
                    field_error(&["guardrails".into(), i.into()], e.message().to_string())
                        .with_kind(e.kind())
                })?;
            }
        }
        if let Some(conversation) = &req.conversation {
            // The response appends to the conversation, so it needs leave to change it.
            get_conversation(self.store.as_ref(), conversation, Action::Update)
                .await
                .map_err(|e| match e.kind() {
                    ErrorKind::Forbidden => e,
                    _ => field_error(&["conversation".into()], e.message().to_string())
                        .with_kind(ErrorKind::NotFound),
                })?;
        }
        Ok(())
    }

    /// The history a response continues, with the conversation locked until it is stored.
    async fn prepare(&self, req: &CreateRequest) -> Result<Prepared> {
        let (guard, mut messages, prior_items) = if let Some(previous) = &req.previous_response_id {
            let record = response_for(self.store.as_ref(), previous, Action::Read)
                .await
                .map_err(|e| {
                    field_error(&["previous_response_id".into()], e.message().to_string())
                        .with_kind(ErrorKind::NotFound)
                })?;
            let status = record.response["status"].as_str().unwrap_or_default();
            if status == "queued" || status == "in_progress" {
                return Err(field_error(
                    &["previous_response_id".into()],
                    format!(
                        "response {previous} is still {status}; continue from it once it has finished"
                    ),
                ));
            }
            let mut prior = record.input.clone();
            prior.extend(
                record.response["output"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            (None, record.messages, prior)
        } else if let Some(conversation) = &req.conversation {
            let guard = self
                .conversation_lock(conversation)
                .await
                .lock_owned()
                .await;
            let items = get_items(self.store.as_ref(), conversation).await?;
            (Some(guard), items.messages, items.items)
        } else {
            (None, Vec::new(), Vec::new())
        };
        let mut known = tool_call_ids(&messages);
        messages.extend(items_to_messages(&req.input, &mut known)?);
        Ok(Prepared {
            guard,
            messages,
            prior_items,
        })
    }

    /// Stores a finished response, and appends it to its conversation.
    async fn persist(&self, run: &Run, object: &Value, who: &Identity) -> Result<()> {
        if run.req.store {
            let record = ResponseRecord {
                response: object.clone(),
                input: run.req.input.clone(),
                messages: run.messages.clone(),
                seq: who.seq,
                request: who.body.clone(),
                owner: who.owner.clone(),
            };
            if who.body.is_some() {
                // Unless cancelled or taken over meanwhile; the lease ends with it.
                self.write_held(&record, false).await?;
            } else {
                put_response(self.store.as_ref(), &record).await?;
            }
        }
        if let Some(conversation) = &run.req.conversation {
            let mut items = get_items(self.store.as_ref(), conversation).await?;
            items.items.extend(run.req.input.iter().cloned());
            items
                .items
                .extend(object["output"].as_array().cloned().unwrap_or_default());
            items.messages = run.messages.clone();
            put_items(self.store.as_ref(), conversation, &items).await?;
        }
        Ok(())
    }

    /// Runs a prepared response and stores it. Streams its events when `out` has a receiver.
    async fn execute(
        self: Arc<Self>,
        req: CreateRequest,
        who: Identity,
        prepared: Prepared,
        out: Emitter,
    ) -> Result<Value> {
        let Prepared {
            guard,
            messages,
            prior_items,
        } = prepared;
        let mut run = Run::new(
            self.clone(),
            req,
            who.id.clone(),
            who.created_at,
            out,
            messages,
            prior_items,
        );
        let result = run.run().await;
        let result = match result {
            Ok(object) => match self.persist(&run, &object, &who).await {
                Ok(()) => Ok(object),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        drop(guard);
        match result {
            Ok(object) => {
                let kind = if object["status"] == "incomplete" {
                    "response.incomplete"
                } else {
                    "response.completed"
                };
                let shown = object.clone();
                run.out.emit(kind, || json!({"response": shown}));
                Ok(object)
            }
            Err(error) => {
                let failed = failed_object(&run, &error);
                if who.body.is_some() {
                    self.store_unless_cancelled(&run, failed.clone(), &who)
                        .await;
                }
                if run.out.streaming() {
                    tracing::warn!(response = %who.id, error = %error, "Response failed");
                    run.out
                        .emit("response.failed", || json!({"response": failed}));
                }
                Err(error)
            }
        }
    }

    /// Writes a background response's final state, unless it was cancelled or taken over
    /// meanwhile.
    async fn store_unless_cancelled(&self, run: &Run, object: Value, who: &Identity) {
        let record = ResponseRecord {
            response: object,
            input: run.req.input.clone(),
            messages: run.messages.clone(),
            seq: who.seq,
            request: who.body.clone(),
            owner: who.owner.clone(),
        };
        if let Err(e) = self.write_held(&record, false).await {
            tracing::error!(response = %who.id, error = %e, "Cannot store a background response");
        }
    }

    /// Starts a background response resumed from its record, which this process has claimed.
    pub(crate) fn spawn_background_for(
        self: &Arc<Self>,
        req: CreateRequest,
        id: String,
        created_at: i64,
        seq: u64,
        body: Option<Value>,
        owner: Option<llama_stack_types::User>,
    ) {
        let who = Identity {
            id,
            created_at,
            seq,
            body,
            owner,
        };
        self.spawn_background(req, who);
    }

    /// Starts a background response: it is stored `in_progress` and run detached, as the
    /// current caller.
    fn spawn_background(self: &Arc<Self>, req: CreateRequest, who: Identity) {
        let svc = self.clone();
        let (go, ready) = tokio::sync::oneshot::channel::<()>();
        let id = who.id.clone();
        let caller = access::current();
        let task = tokio::spawn(llama_stack_core::trace::carry(access::within(
            caller,
            async move {
                let _ = ready.await;
                let mut started = response_object(
                    &req,
                    &who.id,
                    who.created_at,
                    "in_progress",
                    &[],
                    Value::Null,
                );
                started["background"] = json!(true);
                let record = ResponseRecord {
                    response: started,
                    input: req.input.clone(),
                    messages: Vec::new(),
                    seq: who.seq,
                    request: who.body.clone(),
                    owner: who.owner.clone(),
                };
                let heartbeat = svc.heartbeat(&who.id);
                if svc.write_held(&record, true).await.unwrap_or(false) {
                    let result = match svc.prepare(&req).await {
                        Ok(prepared) => {
                            svc.clone()
                                .execute(req.clone(), who.clone(), prepared, Emitter::new(None))
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    if let Err(e) = &result
                        && e.kind() != ErrorKind::Internal
                    {
                        // execute() stored the failure; a failed prepare is stored here.
                        let holder = svc.lease_holder.as_str();
                        let _ =
                            lease::update(svc.store.as_ref(), RESPONSE_KIND, &who.id, |current| {
                                let mut current = current.filter(|r| {
                                    r["response"]["status"] == "in_progress"
                                        && lease::holder_of(r).is_none_or(|h| h == holder)
                                })?;
                                current["response"]["status"] = json!("failed");
                                current["response"]["error"] =
                                    json!({"code": "invalid_prompt", "message": e.message()});
                                lease::clear_lease(&mut current);
                                Some(current)
                            })
                            .await;
                    }
                }
                heartbeat.stop().await;
                svc.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&who.id);
            },
        )));
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, task.abort_handle());
        let _ = go.send(());
    }
}

#[async_trait]
impl Responses for BuiltinResponses {
    async fn create_response(self: Arc<Self>, body: Map<String, Value>) -> Result<CreatedResponse> {
        let req = parse(&body, self.config.max_infer_iters)?;
        self.check_request(&req).await?;
        let id = new_id("resp");
        access::check_create(RESPONSE_RESOURCE, &id)?;
        let who = Identity {
            id,
            created_at: now_secs(),
            seq: now_nanos(),
            body: req.background.then(|| Value::Object(body)),
            owner: access::owner_for_new(),
        };
        if req.background {
            let mut queued =
                response_object(&req, &who.id, who.created_at, "queued", &[], Value::Null);
            queued["background"] = json!(true);
            self.put_leased(&ResponseRecord {
                response: queued.clone(),
                input: req.input.clone(),
                messages: Vec::new(),
                seq: who.seq,
                request: who.body.clone(),
                owner: who.owner.clone(),
            })
            .await?;
            self.spawn_background(req, who);
            return Ok(CreatedResponse::Object(queued));
        }
        let prepared = self.prepare(&req).await?;
        if req.stream {
            let (tx, rx) = unbounded_channel();
            let svc = self.clone();
            tokio::spawn(llama_stack_core::trace::carry(access::within(
                access::current(),
                async move {
                    let _ = svc
                        .execute(req, who, prepared, Emitter::new(Some(tx)))
                        .await;
                },
            )));
            return Ok(CreatedResponse::Stream(
                UnboundedReceiverStream::new(rx).boxed(),
            ));
        }
        // Spawned, so that a client that hangs up does not cut the response short.
        let svc = self.clone();
        let task = tokio::spawn(llama_stack_core::trace::carry(access::within(
            access::current(),
            async move { svc.execute(req, who, prepared, Emitter::new(None)).await },
        )));
        let object = task
            .await
            .map_err(|e| Error::internal(format!("the response task failed: {e}")))??;
        Ok(CreatedResponse::Object(object))
    }

    async fn get_response(&self, id: &str) -> Result<Value> {
        Ok(response_for(self.store.as_ref(), id, Action::Read)
            .await?
            .response)
    }

    async fn list_responses(&self, query: ListQuery) -> Result<Value> {
        let mut records: Vec<ResponseRecord> = self
            .store
            .list(RESPONSE_KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ResponseRecord>(v).ok())
            .filter(|r| {
                let id = r.response["id"].as_str().unwrap_or_default();
                access::can_read(RESPONSE_RESOURCE, id, r.owner.as_ref())
            })
            .collect();
        if let Some(model) = &query.model {
            records.retain(|r| r.response["model"].as_str() == Some(model.as_str()));
        }
        records.sort_by_key(|r| r.seq);
        let items = records.into_iter().map(|r| r.response).collect();
        page(items, &query, 50)
    }

    async fn delete_response(&self, id: &str) -> Result<Value> {
        response_for(self.store.as_ref(), id, Action::Delete).await?;
        // Under the lease's lock, so that a renewal under way cannot write it back.
        let _lock = self.store.lock(&lease::lock_key(RESPONSE_KIND, id)).await?;
        if let Some(task) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            task.abort();
        }
        self.store.delete(RESPONSE_KIND, id).await?;
        Ok(json!({"id": id, "object": "response", "deleted": true}))
    }

    async fn list_input_items(&self, id: &str, query: ListQuery) -> Result<Value> {
        let record = response_for(self.store.as_ref(), id, Action::Read).await?;
        page(record.input, &query, 20)
    }

    async fn cancel_response(&self, id: &str) -> Result<Value> {
        // Read and written under the lease's lock, so that no renewal writes back the state
        // before the cancel; writing the record without a lease ends it.
        let _lock = self.store.lock(&lease::lock_key(RESPONSE_KIND, id)).await?;
        let mut record = response_for(self.store.as_ref(), id, Action::Update).await?;
        let status = record.response["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if status == "cancelled" {
            return Ok(record.response);
        }
        if record.response["background"] != json!(true) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "Cannot cancel response '{id}': only background responses can be cancelled"
                ),
            ));
        }
        if status != "queued" && status != "in_progress" {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("Cannot cancel response '{id}': it has already finished ({status})"),
            ));
        }
        if let Some(task) = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            task.abort();
        }
        record.response["status"] = json!("cancelled");
        put_response(self.store.as_ref(), &record).await?;
        Ok(record.response)
    }

    async fn resume_background(self: Arc<Self>) -> Result<()> {
        self.resume_leased().await
    }

    async fn create_conversation(&self, body: Map<String, Value>) -> Result<Value> {
        BuiltinResponses::create_conversation(self, body).await
    }

    async fn get_conversation(&self, id: &str) -> Result<Value> {
        Ok(get_conversation(self.store.as_ref(), id, Action::Read)
            .await?
            .conversation)
    }

    async fn update_conversation(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        BuiltinResponses::update_conversation(self, id, body).await
    }

    async fn delete_conversation(&self, id: &str) -> Result<Value> {
        BuiltinResponses::delete_conversation(self, id).await
    }

    async fn list_conversation_items(&self, id: &str, query: ListQuery) -> Result<Value> {
        get_conversation(self.store.as_ref(), id, Action::Read).await?;
        let items = get_items(self.store.as_ref(), id).await?;
        page(items.items, &query, 20)
    }

    async fn add_conversation_items(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        BuiltinResponses::add_conversation_items(self, id, body).await
    }

    async fn get_conversation_item(&self, id: &str, item_id: &str) -> Result<Value> {
        get_conversation(self.store.as_ref(), id, Action::Read).await?;
        get_items(self.store.as_ref(), id)
            .await?
            .items
            .into_iter()
            .find(|i| i["id"] == item_id)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "Conversation item '{item_id}' not found in conversation '{id}'. Use 'client.conversations.items.list(\"{id}\")' to list available conversation items."
                ))
            })
    }

    async fn delete_conversation_item(&self, id: &str, item_id: &str) -> Result<Value> {
        BuiltinResponses::delete_conversation_item(self, id, item_id).await
    }
}
