//! The assembled stack: every built provider plus the registry, and the core functions that
//! both transports call. Handlers extract, call one of these, and map the result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use llama_stack_types::{HealthInfo, HealthStatus, Model, ProviderInfo};
use tokio::sync::RwLock;

use crate::api::Api;
use crate::error::{Error, Result};
use crate::inference::InferenceProvider;
use crate::provider::ProviderInstance;
use crate::store::RegistryStore;

/// The version reported by `GET /v1/version`: the upstream API level this server speaks.
pub const API_VERSION: &str = "0.2.23";

/// One built provider and how it was configured.
#[derive(Clone)]
pub struct ProviderHandle {
    pub api: Api,
    pub provider_id: String,
    pub provider_type: String,
    /// The run.yaml config with secrets already redacted.
    pub redacted_config: serde_json::Value,
    pub instance: ProviderInstance,
}

/// Facts about the distribution being served.
#[derive(Clone, Debug, Default)]
pub struct StackInfo {
    pub image_name: String,
    /// The APIs served: run.yaml `apis`, or every API with a provider when that is empty.
    pub apis: Vec<Api>,
    /// run.yaml `safety.default_shield_id`: the shield `/v1/moderations` uses when the
    /// request names no model.
    pub default_shield_id: Option<String>,
}

pub struct Stack {
    pub info: StackInfo,
    providers: Vec<ProviderHandle>,
    pub(crate) store: Arc<dyn RegistryStore>,
    /// Registered models by identifier; the store is the source of truth across restarts.
    /// Also holds the models providers list on their own, which are not stored.
    pub(crate) models: RwLock<BTreeMap<String, Model>>,
    /// The identifiers in `models` that come from provider model lists.
    pub(crate) listed: RwLock<BTreeSet<String>>,
    /// Vector stores and tool groups.
    pub(crate) memory: crate::memory::MemoryState,
    /// Registered shields by identifier; the store is the source of truth across restarts.
    pub(crate) shields: RwLock<BTreeMap<String, llama_stack_types::Shield>>,
    /// Agent sessions kept in memory, and the per-session turn locks.
    pub(crate) agents: crate::agents::AgentsState,
}

impl Stack {
    pub fn new(
        info: StackInfo,
        providers: Vec<ProviderHandle>,
        store: Arc<dyn RegistryStore>,
    ) -> Self {
        Stack {
            info,
            providers,
            store,
            models: RwLock::new(BTreeMap::new()),
            listed: RwLock::new(BTreeSet::new()),
            memory: Default::default(),
            shields: RwLock::new(BTreeMap::new()),
            agents: Default::default(),
        }
    }

    pub fn providers(&self) -> &[ProviderHandle] {
        &self.providers
    }

    pub fn serves(&self, api: Api) -> bool {
        self.info.apis.contains(&api)
    }

    /// The provider types configured for `api`, for the route listing.
    pub fn provider_types(&self, api: Api) -> Vec<String> {
        self.providers
            .iter()
            .filter(|p| p.api == api)
            .map(|p| p.provider_type.clone())
            .collect()
    }

    pub(crate) fn inference_provider(
        &self,
        provider_id: &str,
    ) -> Option<Arc<dyn InferenceProvider>> {
        self.providers.iter().find_map(|p| match &p.instance {
            ProviderInstance::Inference(i) if p.provider_id == provider_id => Some(i.clone()),
            _ => None,
        })
    }

    /// Every inference provider with its id.
    pub(crate) fn inference_providers(&self) -> Vec<(String, Arc<dyn InferenceProvider>)> {
        self.providers
            .iter()
            .filter_map(|p| match &p.instance {
                ProviderInstance::Inference(i) => Some((p.provider_id.clone(), i.clone())),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn inference_provider_ids(&self) -> Vec<String> {
        self.providers
            .iter()
            .filter(|p| p.api == Api::Inference)
            .map(|p| p.provider_id.clone())
            .collect()
    }

    pub async fn list_providers(&self) -> Vec<ProviderInfo> {
        let mut out = Vec::with_capacity(self.providers.len());
        for p in &self.providers {
            out.push(self.provider_info(p).await);
        }
        out
    }

    pub async fn get_provider(&self, provider_id: &str) -> Result<ProviderInfo> {
        match self.providers.iter().find(|p| p.provider_id == provider_id) {
            Some(p) => Ok(self.provider_info(p).await),
            None => Err(Error::not_found(format!(
                "Provider {provider_id} not found. Configured providers: {}",
                self.providers
                    .iter()
                    .map(|p| p.provider_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    async fn provider_info(&self, p: &ProviderHandle) -> ProviderInfo {
        let probe = async {
            match &p.instance {
                ProviderInstance::Inference(i) => i.health().await,
                _ => HealthInfo {
                    status: HealthStatus::NotImplemented,
                    message: Some("Provider does not implement health check".into()),
                },
            }
        };
        // Upstream probes each provider with a 1 s budget so one slow upstream cannot stall
        // the listing.
        let health = tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .unwrap_or(HealthInfo {
                status: HealthStatus::Error,
                message: Some("Health check timed out after 1 second".into()),
            });
        ProviderInfo {
            api: p.api.as_str().to_string(),
            provider_id: p.provider_id.clone(),
            provider_type: p.provider_type.clone(),
            config: p.redacted_config.clone(),
            health,
        }
    }
}

/// Replaces the values of secret-looking keys (`api_key`, `api_token`, `password`, `secret`)
/// with `********`, recursively.
pub fn redact_config(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = ["api_key", "api_token", "password", "secret"]
                        .iter()
                        .any(|s| lower.contains(s));
                    if secret && !v.is_null() {
                        (k.clone(), serde_json::Value::String("********".into()))
                    } else {
                        (k.clone(), redact_config(v))
                    }
                })
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(redact_config).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_secret_keys_recursively() {
        let v = serde_json::json!({"url": "u", "api_key": "k", "nested": {"db_password": "p"}});
        let r = redact_config(&v);
        assert_eq!(r["url"], "u");
        assert_eq!(r["api_key"], "********");
        assert_eq!(r["nested"]["db_password"], "********");
    }
}
