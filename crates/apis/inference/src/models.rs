//! Model registry operations (`/v1/models`), shared by every transport.

use std::sync::Arc;

use llama_stack_types::{Model, ModelListItem, ModelType, RegisterModelRequest};

use crate::provider::InferenceProvider;
use crate::service::InferenceService;
use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, ErrorKind, Result, list_or_none};

const MODEL_KIND: &str = "model";

fn readable(model: &Model) -> bool {
    access::can_read(MODEL_KIND, &model.identifier, model.owner.as_ref())
}

/// What [`InferenceService::restore_models`] did.
#[derive(Debug, Default)]
pub struct RestoredModels {
    /// Models served again.
    pub restored: usize,
    /// Stored models their provider refused, with its reason.
    pub refused: Vec<(Model, Error)>,
}

impl InferenceService {
    /// Loads the models persisted by earlier runs and hands each to its provider. A model whose
    /// provider is gone is skipped with a warning; one its provider refuses is skipped and
    /// returned with the reason, for the caller to report (it may be about to register the same
    /// model again and report it once). Either stays in the store, so it comes back when its
    /// provider or files do.
    pub async fn restore_models(&self) -> Result<RestoredModels> {
        let stored = self.store.list(MODEL_KIND).await?;
        let mut outcome = RestoredModels::default();
        for value in stored {
            let model: Model = match serde_json::from_value(value) {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!(error = %err, "Skipping unreadable model in the registry");
                    continue;
                }
            };
            let Some(provider) = self.inference_provider(&model.provider_id) else {
                tracing::warn!(model = %model.identifier, provider = %model.provider_id,
                    "Skipping stored model whose provider is not configured");
                continue;
            };
            if let Err(err) = provider.register_model(&model).await {
                outcome.refused.push((model, err));
                continue;
            }
            self.models
                .write()
                .await
                .insert(model.identifier.clone(), model);
            outcome.restored += 1;
        }
        Ok(outcome)
    }

    /// The models the caller may read.
    pub async fn list_models(&self) -> Vec<Model> {
        self.models
            .read()
            .await
            .values()
            .filter(|m| readable(m))
            .cloned()
            .collect()
    }

    /// `GET /v1/models` items: classic and OpenAI fields together.
    pub async fn list_models_for_clients(&self) -> Vec<ModelListItem> {
        self.list_models()
            .await
            .into_iter()
            .map(|model| ModelListItem {
                id: model.identifier.clone(),
                object: "model".into(),
                created: 0,
                owned_by: "llama_stack".into(),
                custom_metadata: serde_json::json!({
                    "model_type": model.model_type.as_str(),
                    "provider_id": model.provider_id,
                    "provider_resource_id": model.provider_resource_id,
                }),
                model,
            })
            .collect()
    }

    /// Finds a model by identifier, then by a unique `provider_resource_id`. Models the caller
    /// may not read are not there for them: not found, and left out of the error's list.
    pub async fn get_model(&self, model_id: &str) -> Result<Model> {
        let models = self.models.read().await;
        if let Some(m) = models.get(model_id).filter(|m| readable(m)) {
            return Ok(m.clone());
        }
        let visible = || models.values().filter(|m| readable(m));
        let mut by_resource = visible().filter(|m| m.provider_resource_id == model_id);
        match (by_resource.next(), by_resource.next()) {
            (Some(m), None) => Ok(m.clone()),
            (Some(_), Some(_)) => Err(Error::invalid(format!(
                "Model '{model_id}' is ambiguous: several providers serve it. Use one of: {}",
                visible()
                    .filter(|m| m.provider_resource_id == model_id)
                    .map(|m| m.identifier.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            (None, _) => Err(Error::not_found(format!(
                "Model '{model_id}' not found. Registered models: {}",
                list_or_none(visible().map(|m| &m.identifier))
            ))),
        }
    }

    /// Resolves a model for inference: it must exist and be served by a configured provider.
    pub(crate) async fn resolve_model(
        &self,
        model_id: &str,
    ) -> Result<(Model, Arc<dyn InferenceProvider>)> {
        let model = self.get_model(model_id).await?;
        let provider = self.inference_provider(&model.provider_id).ok_or_else(|| {
            Error::internal(format!(
                "model '{}' names provider '{}', which is not configured",
                model.identifier, model.provider_id
            ))
        })?;
        Ok((model, provider))
    }

    /// Registers a model with the rules of `POST /v1/models`, persisting it.
    pub async fn register_model(&self, request: RegisterModelRequest) -> Result<Model> {
        if request.model_id.trim().is_empty() {
            return Err(Error::invalid("model_id must not be empty")
                .with_location(vec!["body".into(), "model_id".into()]));
        }
        let provider_id = match request.provider_id {
            Some(id) => {
                if self.inference_provider(&id).is_none() {
                    return Err(Error::invalid(format!(
                        "Provider '{id}' not found. Inference providers: {}",
                        self.inference_provider_ids().join(", ")
                    )));
                }
                id
            }
            None => {
                let ids = self.inference_provider_ids();
                match ids.as_slice() {
                    [only] => only.clone(),
                    [] => return Err(Error::invalid("No inference provider is configured")),
                    _ => {
                        return Err(Error::invalid(format!(
                            "No provider specified and multiple providers available. Please specify a provider_id. Available providers: {}",
                            ids.join(", ")
                        )));
                    }
                }
            }
        };
        let provider_model_id = request
            .provider_model_id
            .unwrap_or_else(|| request.model_id.clone());
        let identifier = if provider_model_id == request.model_id {
            format!("{provider_id}/{provider_model_id}")
        } else {
            request.model_id.clone()
        };
        access::check_create(MODEL_KIND, &identifier)?;
        let model_type = request.model_type.unwrap_or_default();
        let mut metadata = request.metadata.unwrap_or_default();
        if model_type == ModelType::Embedding {
            let dim = metadata.get("embedding_dimension").and_then(|v| match v {
                serde_json::Value::Number(n) => n.as_u64(),
                // Clients send numeric strings ("384"); accept them.
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
            match dim {
                Some(d) => {
                    metadata.insert("embedding_dimension".into(), d.into());
                }
                None => {
                    return Err(Error::invalid(
                        "Embedding model must have an embedding dimension in its metadata (metadata.embedding_dimension)",
                    ));
                }
            }
        }
        let listed = self.listed.read().await.contains(&identifier);
        let model = Model {
            identifier: identifier.clone(),
            provider_resource_id: provider_model_id,
            provider_id: provider_id.clone(),
            resource_type: "model".into(),
            metadata,
            model_type,
            // A model its provider lists is everyone's: registering it for good must not take
            // it away from the other users.
            owner: if listed {
                None
            } else {
                access::owner_for_new()
            },
        };
        // A model a provider lists may be registered for good under the same identifier.
        if let Some(existing) = self
            .models
            .read()
            .await
            .get(&identifier)
            .filter(|_| !listed)
        {
            // The same model again is the one already there, whoever registered it first, for
            // those who may see it.
            let same = Model {
                owner: existing.owner.clone(),
                ..model.clone()
            } == *existing;
            if same && readable(existing) {
                return Ok(existing.clone());
            }
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "Object of type 'model' and identifier '{identifier}' already exists. Unregister it first if you want to replace it."
                ),
            ));
        }
        let provider = self
            .inference_provider(&provider_id)
            .ok_or_else(|| Error::internal("provider vanished during registration"))?;
        provider.register_model(&model).await?;
        self.store
            .put(
                MODEL_KIND,
                &identifier,
                &serde_json::to_value(&model).map_err(|e| Error::internal(e.to_string()))?,
            )
            .await?;
        self.listed.write().await.remove(&identifier);
        self.models.write().await.insert(identifier, model.clone());
        tracing::info!(model = %model.identifier, provider = %model.provider_id, "Registered model");
        Ok(model)
    }

    pub async fn unregister_model(&self, model_id: &str) -> Result<()> {
        let model = self.get_model(model_id).await?;
        access::check(
            Action::Delete,
            MODEL_KIND,
            &model.identifier,
            model.owner.as_ref(),
            || Error::not_found(format!("Model '{model_id}' not found")),
        )?;
        self.store.delete(MODEL_KIND, &model.identifier).await?;
        self.models.write().await.remove(&model.identifier);
        self.listed.write().await.remove(&model.identifier);
        self.release_model(&model).await?;
        tracing::info!(model = %model.identifier, "Unregistered model");
        Ok(())
    }

    /// Tells the provider a model is gone, unless another registered model (an alias) still
    /// names the same provider model: unloading it would break that one.
    pub(crate) async fn release_model(&self, model: &Model) -> Result<()> {
        let shared = self.models.read().await.values().any(|m| {
            m.provider_id == model.provider_id
                && m.provider_resource_id == model.provider_resource_id
        });
        if shared {
            return Ok(());
        }
        if let Some(provider) = self.inference_provider(&model.provider_id) {
            provider.unregister_model(model).await?;
        }
        Ok(())
    }
}
