//! `/v1/vector-dbs`: registering, listing and removing stores.

use llama_stack_types::{ModelType, RegisterVectorDbRequest, VectorDb};

use crate::service::MemoryService;
use crate::service::{STORE_FILE_KIND, StoreRecord, VECTOR_DB, now_secs};
use crate::vector_io::{StoreSpec, VectorIoProvider};
use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, ErrorKind, Result, list_or_none};

/// What a new store needs.
pub(crate) struct NewStore {
    /// `vector_db` or `vector_store`: the API it is created through, for the access check.
    pub resource_type: &'static str,
    pub identifier: String,
    pub embedding_model: Option<String>,
    pub embedding_dimension: Option<u32>,
    pub provider_id: Option<String>,
    pub provider_resource_id: Option<String>,
    pub name: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub expires_after: Option<serde_json::Value>,
}

impl StoreRecord {
    pub fn to_vector_db(&self) -> VectorDb {
        VectorDb {
            identifier: self.identifier.clone(),
            provider_resource_id: self.provider_resource_id.clone(),
            provider_id: self.provider_id.clone(),
            resource_type: "vector_db".into(),
            embedding_model: self.embedding_model.clone(),
            embedding_dimension: self.embedding_dimension,
            vector_db_name: self.name.clone(),
            owner: self.owner.clone(),
        }
    }
}

impl MemoryService {
    /// `POST /v1/vector-dbs`.
    pub async fn register_vector_db(&self, request: RegisterVectorDbRequest) -> Result<VectorDb> {
        if request.vector_db_id.trim().is_empty() {
            return Err(Error::invalid("vector_db_id must not be empty")
                .with_location(vec!["body".into(), "vector_db_id".into()]));
        }
        let record = self
            .create_store(NewStore {
                resource_type: VECTOR_DB,
                identifier: request.vector_db_id,
                embedding_model: Some(request.embedding_model),
                embedding_dimension: request.embedding_dimension,
                provider_id: request.provider_id,
                provider_resource_id: request.provider_vector_db_id,
                name: request.vector_db_name,
                metadata: Default::default(),
                expires_after: None,
            })
            .await?;
        Ok(record.to_vector_db())
    }

    /// Creates a store: picks its provider and embedding model, opens its index and persists
    /// it. Registering the same store again with the same settings returns it unchanged.
    pub(crate) async fn create_store(&self, new: NewStore) -> Result<StoreRecord> {
        access::check_create(new.resource_type, &new.identifier)?;
        let provider_id = match new.provider_id {
            Some(id) => {
                if self.vector_io_provider(&id).is_none() {
                    return Err(Error::invalid(format!(
                        "Provider '{id}' not found. Vector IO providers: {}",
                        list_or_none(self.vector_io_provider_ids())
                    )));
                }
                id
            }
            None => {
                let ids = self.vector_io_provider_ids();
                let Some(first) = ids.first() else {
                    return Err(Error::invalid(
                        "No vector_io provider is configured; add one (e.g. inline::sqlite-vec) under providers.vector_io in run.yaml",
                    ));
                };
                if ids.len() > 1 {
                    tracing::warn!(chosen = %first, available = %ids.join(", "),
                        "Several vector_io providers and none named; using the first");
                }
                first.clone()
            }
        };
        let (embedding_model, dimension) = self
            .embedding_model_for_store(new.embedding_model.as_deref(), new.embedding_dimension)
            .await?;
        let record = StoreRecord {
            provider_resource_id: new
                .provider_resource_id
                .unwrap_or_else(|| new.identifier.clone()),
            identifier: new.identifier,
            provider_id,
            embedding_model,
            embedding_dimension: dimension,
            name: new.name,
            created_at: now_secs(),
            metadata: new.metadata,
            expires_at: expires_at(new.expires_after.as_ref(), now_secs())?,
            expires_after: new.expires_after,
            last_active_at: Some(now_secs()),
            owner: access::owner_for_new(),
        };
        if let Some(existing) = self.stores.read().await.get(&record.identifier) {
            let same = existing.provider_id == record.provider_id
                && existing.embedding_model == record.embedding_model
                && existing.embedding_dimension == record.embedding_dimension;
            // Someone else's store under the same id is a conflict, never handed over.
            let readable = access::can_read(
                new.resource_type,
                &existing.identifier,
                existing.owner.as_ref(),
            );
            if same && readable {
                return Ok(existing.clone());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "Object of type 'vector_db' and identifier '{}' already exists. Unregister it first if you want to replace it.",
                    record.identifier
                ),
            ));
        }
        let provider = self
            .vector_io_provider(&record.provider_id)
            .ok_or_else(|| Error::internal("provider vanished during registration"))?;
        provider
            .create_store(&StoreSpec {
                store_id: record.provider_resource_id.clone(),
                dimension: record.embedding_dimension as usize,
            })
            .await?;
        self.save_store(&record).await?;
        tracing::info!(store = %record.identifier, provider = %record.provider_id,
            model = %record.embedding_model, dimension = record.embedding_dimension,
            "Registered vector store");
        Ok(record)
    }

    /// The embedding model and dimension of a new store. The model must be a registered
    /// embedding model; its `embedding_dimension` wins over the request's. Without a model, the
    /// only registered embedding model is used.
    async fn embedding_model_for_store(
        &self,
        model_id: Option<&str>,
        requested_dimension: Option<u32>,
    ) -> Result<(String, u32)> {
        let model = match model_id {
            Some(id) => self.inference.get_model(id).await?,
            None => {
                let embedding: Vec<_> = self
                    .inference
                    .list_models()
                    .await
                    .into_iter()
                    .filter(|m| m.model_type == ModelType::Embedding)
                    .collect();
                match embedding.as_slice() {
                    [] => {
                        return Err(Error::invalid(
                            "No embedding model is registered; register one (model_type: embedding) or pass embedding_model",
                        ));
                    }
                    [only, ..] => only.clone(),
                }
            }
        };
        if model.model_type != ModelType::Embedding {
            return Err(Error::invalid(format!(
                "Model '{}' is not an embedding model; a vector store needs a model registered with model_type 'embedding'",
                model.identifier
            )));
        }
        let dimension = model
            .metadata
            .get("embedding_dimension")
            .and_then(|v| v.as_u64())
            .map(|d| d as u32)
            .or(requested_dimension)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Model '{}' has no embedding_dimension in its metadata",
                    model.identifier
                ))
            })?;
        if let Some(requested) = requested_dimension
            && requested != dimension
        {
            tracing::warn!(model = %model.identifier, requested, dimension,
                "Requested embedding_dimension differs from the model's; using the model's");
        }
        // Keep the name the client used (an identifier or a provider model id); both resolve.
        Ok((
            model_id.map(str::to_string).unwrap_or(model.identifier),
            dimension,
        ))
    }

    /// The vector DBs the caller may read.
    pub async fn list_vector_dbs(&self) -> Vec<VectorDb> {
        self.readable_stores(VECTOR_DB)
            .await
            .iter()
            .map(StoreRecord::to_vector_db)
            .collect()
    }

    pub async fn get_vector_db(&self, vector_db_id: &str) -> Result<VectorDb> {
        let (record, _) = self
            .resolve_as(Action::Read, VECTOR_DB, vector_db_id)
            .await?;
        Ok(record.to_vector_db())
    }

    /// `DELETE /v1/vector-dbs/{id}`: the store, its chunks and its file attachments.
    pub async fn unregister_vector_db(&self, vector_db_id: &str) -> Result<()> {
        let (record, provider) = self
            .resolve_as(Action::Delete, VECTOR_DB, vector_db_id)
            .await?;
        self.remove_store(&record, provider).await
    }

    /// Deletes a store, once the caller has been allowed to.
    pub(crate) async fn remove_store(
        &self,
        record: &StoreRecord,
        provider: std::sync::Arc<dyn VectorIoProvider>,
    ) -> Result<()> {
        provider.delete_store(&record.provider_resource_id).await?;
        for file in self.store_file_records(&record.identifier).await? {
            self.store
                .delete(
                    STORE_FILE_KIND,
                    &crate::vector_store_files::file_key(&record.identifier, &file.id),
                )
                .await?;
        }
        self.store
            .delete(crate::service::STORE_KIND, &record.identifier)
            .await?;
        self.stores.write().await.remove(&record.identifier);
        tracing::info!(store = %record.identifier, "Deleted vector store");
        Ok(())
    }
}

/// `expires_after: {"anchor": "last_active_at", "days": N}` as an absolute time.
pub(crate) fn expires_at(
    expires_after: Option<&serde_json::Value>,
    from: i64,
) -> Result<Option<i64>> {
    let Some(value) = expires_after.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let anchor = value.get("anchor").and_then(|a| a.as_str());
    let days = value.get("days").and_then(|d| d.as_i64());
    match (anchor, days) {
        (Some("last_active_at"), Some(days)) if (1..=365).contains(&days) => {
            Ok(Some(from + days * 86_400))
        }
        _ => Err(Error::invalid(format!(
            "expires_after must be {{\"anchor\": \"last_active_at\", \"days\": 1..365}}, got {value}"
        ))
        .with_location(vec!["body".into(), "expires_after".into()])),
    }
}
