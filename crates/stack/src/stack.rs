//! The assembled stack: one service per API, built by the distribution assembler, plus the
//! built providers for `/v1/providers`. Handlers extract, call one service function, and map
//! the result.

use std::sync::Arc;
use std::time::Duration;

use llama_stack_agents::Agents;
use llama_stack_batches::Batches;
use llama_stack_core::{Api, Error, RegistryStore, Result};
use llama_stack_inference::InferenceService;
use llama_stack_memory::MemoryService;
use llama_stack_prompts::PromptsService;
use llama_stack_responses::Responses;
use llama_stack_safety::SafetyService;
use llama_stack_tools::ToolsService;
use llama_stack_types::{HealthInfo, HealthStatus, ProviderInfo};

use crate::registry::{ApiHandles, ProviderInstance};

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
    /// `server.limits`: what one request may ask for, on every transport.
    pub limits: llama_stack_core::limits::RequestLimits,
}

impl StackInfo {
    /// Holds a request, in its JSON form, to `server.limits` (token budgets, embedding inputs,
    /// nesting): for transports that decode something other than JSON.
    pub fn check_limits<T: serde::Serialize>(&self, request: &T) -> llama_stack_core::Result<()> {
        let body = serde_json::to_vec(request).map_err(|e| {
            llama_stack_core::Error::internal(format!("cannot check the request's limits: {e}"))
        })?;
        llama_stack_core::limits::check_body(&body, &self.limits)
    }
}

pub struct Stack {
    pub info: StackInfo,
    providers: Vec<ProviderHandle>,
    pub inference: Arc<InferenceService>,
    pub safety: Arc<SafetyService>,
    pub memory: Arc<MemoryService>,
    pub tools: Arc<ToolsService>,
    /// Prompt templates; they need only the metadata store, so every stack has them.
    pub prompts: Arc<PromptsService>,
    /// The agents provider, when run.yaml configures one.
    agents: Option<Arc<dyn Agents>>,
    /// The responses provider, when run.yaml configures one.
    responses: Option<Arc<dyn Responses>>,
    /// The batches provider, when run.yaml configures one.
    batches: Option<Arc<dyn Batches>>,
}

/// The services of a stack, as the assembler built them.
pub struct Services {
    pub inference: Arc<InferenceService>,
    pub safety: Arc<SafetyService>,
    pub memory: Arc<MemoryService>,
    pub tools: Arc<ToolsService>,
    pub prompts: Arc<PromptsService>,
    pub agents: Option<Arc<dyn Agents>>,
    pub responses: Option<Arc<dyn Responses>>,
    pub batches: Option<Arc<dyn Batches>>,
}

impl Services {
    /// The services over providers already built, with no agents API: what the assembler
    /// gives tool runtimes and agents providers, and what tests that build providers
    /// themselves serve.
    pub fn over(
        providers: &[ProviderHandle],
        store: Arc<dyn RegistryStore>,
        default_shield_id: Option<String>,
    ) -> Services {
        let inference = Arc::new(InferenceService::new(
            instances(providers, |i| match i {
                ProviderInstance::Inference(p) => Some(p.clone()),
                _ => None,
            }),
            store.clone(),
        ));
        let safety = Arc::new(SafetyService::new(
            instances(providers, |i| match i {
                ProviderInstance::Safety(p) => Some(p.clone()),
                _ => None,
            }),
            store.clone(),
            inference.clone(),
            default_shield_id,
        ));
        let memory = Arc::new(MemoryService::new(
            instances(providers, |i| match i {
                ProviderInstance::VectorIo(p) => Some(p.clone()),
                _ => None,
            }),
            instances(providers, |i| match i {
                ProviderInstance::Files(p) => Some(p.clone()),
                _ => None,
            }),
            store.clone(),
            inference.clone(),
        ));
        let tools = Services::tools_over(providers, store.clone());
        let prompts = Arc::new(PromptsService::new(store));
        let agents = providers.iter().find_map(|p| match &p.instance {
            ProviderInstance::Agents(a) => Some(a.clone()),
            _ => None,
        });
        let responses = providers.iter().find_map(|p| match &p.instance {
            ProviderInstance::Responses(r) => Some(r.clone()),
            _ => None,
        });
        let batches = providers.iter().find_map(|p| match &p.instance {
            ProviderInstance::Batches(b) => Some(b.clone()),
            _ => None,
        });
        Services {
            inference,
            safety,
            memory,
            tools,
            prompts,
            agents,
            responses,
            batches,
        }
    }

    /// The tool runtime service over the tool runtimes among `providers`: the assembler builds
    /// it once those runtimes exist, after the other services.
    pub fn tools_over(
        providers: &[ProviderHandle],
        store: Arc<dyn RegistryStore>,
    ) -> Arc<ToolsService> {
        Arc::new(ToolsService::new(
            instances(providers, |i| match i {
                ProviderInstance::ToolRuntime(p) => Some(p.clone()),
                _ => None,
            }),
            store,
        ))
    }

    /// The handles a provider built after these services may call.
    pub fn handles(&self) -> ApiHandles {
        ApiHandles {
            inference: Some(self.inference.clone()),
            safety: Some(self.safety.clone()),
            memory: Some(self.memory.clone()),
            tools: Some(self.tools.clone()),
            responses: self.responses.clone(),
        }
    }
}

/// The built instances of one kind, with their provider ids, in the order given.
fn instances<T>(
    providers: &[ProviderHandle],
    pick: impl Fn(&ProviderInstance) -> Option<T>,
) -> Vec<(String, T)> {
    providers
        .iter()
        .filter_map(|p| pick(&p.instance).map(|t| (p.provider_id.clone(), t)))
        .collect()
}

impl Stack {
    pub fn new(info: StackInfo, providers: Vec<ProviderHandle>, services: Services) -> Self {
        Stack {
            info,
            providers,
            inference: services.inference,
            safety: services.safety,
            memory: services.memory,
            tools: services.tools,
            prompts: services.prompts,
            agents: services.agents,
            responses: services.responses,
            batches: services.batches,
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

    /// The agents API, or an error that says how to switch it on.
    pub fn agents(&self) -> Result<Arc<dyn Agents>> {
        self.agents.clone().ok_or_else(|| {
            Error::unsupported(
                "This distribution serves no agents API: add an inline::meta-reference provider under providers.agents in run.yaml",
            )
        })
    }

    /// The responses and conversations API, or an error that says how to switch it on.
    pub fn responses(&self) -> Result<Arc<dyn Responses>> {
        self.responses.clone().ok_or_else(|| {
            Error::unsupported(
                "This distribution serves no responses API: add an inline::builtin provider under providers.responses in run.yaml",
            )
        })
    }

    /// The batches API, or an error that says how to switch it on.
    pub fn batches(&self) -> Result<Arc<dyn Batches>> {
        self.batches.clone().ok_or_else(|| {
            Error::unsupported(
                "This distribution serves no batches API: add an inline::reference provider under providers.batches in run.yaml",
            )
        })
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
