//! Models another replica sharing the metadata store registered or removed: read again from
//! the store when its change feed announces them.

use llama_stack_core::Result;
use llama_stack_types::Model;

use crate::service::InferenceService;

const MODEL_KIND: &str = "model";

impl InferenceService {
    /// Brings model `identifier` in line with the store: served when stored (handed to its
    /// provider first), dropped when it is gone. Models providers list on their own are not
    /// stored and stay.
    pub async fn reload_model(&self, identifier: &str) -> Result<()> {
        let stored: Option<Model> = self
            .store
            .get(MODEL_KIND, identifier)
            .await?
            .and_then(|v| serde_json::from_value(v).ok());
        let current = self.models.read().await.get(identifier).cloned();
        match stored {
            Some(model) if current.as_ref() == Some(&model) => {}
            Some(model) => {
                let Some(provider) = self.inference_provider(&model.provider_id) else {
                    tracing::warn!(model = %identifier, provider = %model.provider_id,
                        "A replica registered a model whose provider is not configured here");
                    return Ok(());
                };
                provider.register_model(&model).await?;
                self.listed.write().await.remove(identifier);
                self.models
                    .write()
                    .await
                    .insert(identifier.to_string(), model);
                tracing::info!(model = %identifier, "Model registered by another replica");
            }
            None => {
                if current.is_none() || self.listed.read().await.contains(identifier) {
                    return Ok(());
                }
                let removed = self.models.write().await.remove(identifier);
                if let Some(model) = removed {
                    let _ = self.release_model(&model).await;
                    tracing::info!(model = %identifier, "Model removed by another replica");
                }
            }
        }
        Ok(())
    }

    /// Every model read again, after the change feed may have missed some.
    pub async fn reload_models(&self) -> Result<()> {
        let mut ids: Vec<String> = self
            .store
            .list(MODEL_KIND)
            .await?
            .iter()
            .filter_map(|v| v["identifier"].as_str().map(str::to_string))
            .collect();
        let listed = self.listed.read().await.clone();
        ids.extend(
            self.models
                .read()
                .await
                .keys()
                .filter(|id| !listed.contains(*id))
                .cloned(),
        );
        ids.sort();
        ids.dedup();
        for id in ids {
            if let Err(err) = self.reload_model(&id).await {
                tracing::warn!(model = %id, error = %err, "Cannot reload a model from the registry");
            }
        }
        Ok(())
    }
}
