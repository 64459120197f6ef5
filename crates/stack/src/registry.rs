//! Provider registration: how a provider crate tells the stack what it is and how to build it.
//!
//! Each provider crate exports `register(&mut ProviderRegistry)`; the distribution assembler
//! calls one such line per provider. There is no central `match` over provider names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use llama_stack_agents::Agents;
use llama_stack_batches::Batches;
use llama_stack_core::{Api, ConfigIssue, RegistryStore, Result};
use llama_stack_inference::{InferenceApi, InferenceProvider};
use llama_stack_memory::{FilesProvider, MemoryApi, VectorIoProvider};
use llama_stack_responses::Responses;
use llama_stack_safety::{SafetyApi, SafetyProvider};
use llama_stack_tools::{ToolRuntimeProvider, ToolsApi};

/// A built provider, typed by the API it serves.
#[derive(Clone)]
pub enum ProviderInstance {
    Inference(Arc<dyn InferenceProvider>),
    Safety(Arc<dyn SafetyProvider>),
    VectorIo(Arc<dyn VectorIoProvider>),
    Files(Arc<dyn FilesProvider>),
    ToolRuntime(Arc<dyn ToolRuntimeProvider>),
    Agents(Arc<dyn Agents>),
    Responses(Arc<dyn Responses>),
    Batches(Arc<dyn Batches>),
}

impl ProviderInstance {
    /// The API this instance serves.
    pub fn api(&self) -> Api {
        match self {
            ProviderInstance::Inference(_) => Api::Inference,
            ProviderInstance::Safety(_) => Api::Safety,
            ProviderInstance::VectorIo(_) => Api::VectorIo,
            ProviderInstance::Files(_) => Api::Files,
            ProviderInstance::ToolRuntime(_) => Api::ToolRuntime,
            ProviderInstance::Agents(_) => Api::Agents,
            ProviderInstance::Responses(_) => Api::Responses,
            ProviderInstance::Batches(_) => Api::Batches,
        }
    }
}

/// The other APIs a provider may call, as the assembler has built them so far. The assembler
/// builds providers API by API (inference, safety, vector IO and files, tool runtime, agents),
/// so a tool runtime sees memory and inference, an agents provider sees those and tools, and
/// a batches provider sees responses too.
#[derive(Clone, Default)]
pub struct ApiHandles {
    pub inference: Option<Arc<dyn InferenceApi>>,
    pub safety: Option<Arc<dyn SafetyApi>>,
    pub memory: Option<Arc<dyn MemoryApi>>,
    pub tools: Option<Arc<dyn ToolsApi>>,
    /// Built after agents and responses: only the batches provider sees it.
    pub responses: Option<Arc<dyn Responses>>,
}

impl ApiHandles {
    /// The handle of an API this provider cannot work without, or an error that says which
    /// provider is missing from run.yaml.
    pub fn require<T: ?Sized>(
        handle: &Option<Arc<T>>,
        api: Api,
        needed_by: &str,
    ) -> Result<Arc<T>> {
        handle.clone().ok_or_else(|| {
            llama_stack_core::Error::invalid(format!(
                "{needed_by} needs the {api} API: add a provider under providers.{api} in run.yaml"
            ))
        })
    }
}

/// What a provider may use while it is built.
#[derive(Clone, Default)]
pub struct ProviderContext {
    /// The `provider_id` this instance was configured under.
    pub provider_id: String,
    /// The distribution's store directory, for providers that keep files.
    pub store_dir: Option<std::path::PathBuf>,
    /// The distribution's SQL store (`metadata_store`), for providers that keep records.
    pub registry: Option<Arc<dyn RegistryStore>>,
    /// The APIs built before this provider's.
    pub apis: ApiHandles,
}

impl ProviderContext {
    /// The distribution's metadata store, or an error naming the provider that needs it.
    pub fn require_registry(&self, needed_by: &str) -> Result<Arc<dyn RegistryStore>> {
        self.registry.clone().ok_or_else(|| {
            llama_stack_core::Error::invalid(format!(
                "{needed_by} needs the distribution's metadata store"
            ))
        })
    }
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("provider_id", &self.provider_id)
            .field("store_dir", &self.store_dir)
            .field("registry", &self.registry.is_some())
            .finish()
    }
}

pub type ValidateFn = fn(&serde_json::Value) -> Vec<ConfigIssue>;
pub type BuildFn =
    fn(serde_json::Value, ProviderContext) -> BoxFuture<'static, Result<ProviderInstance>>;

/// Everything the stack knows about one `provider_type`.
#[derive(Clone)]
pub struct ProviderSpec {
    pub api: Api,
    pub provider_type: &'static str,
    /// Other names accepted in run.yaml for compatibility with upstream files.
    pub aliases: &'static [&'static str],
    pub description: &'static str,
    /// A sample `config:` block in YAML; a test checks that it validates.
    pub sample_config: &'static str,
    /// Checks a config block, returning every problem with a path relative to the block.
    pub validate: ValidateFn,
    /// Builds the provider from a config block that `validate` accepted.
    pub build: BuildFn,
}

/// All provider types this binary can build.
#[derive(Clone, Default)]
pub struct ProviderRegistry {
    specs: BTreeMap<String, ProviderSpec>,
}

impl ProviderRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, spec: ProviderSpec) {
        self.specs.insert(spec.provider_type.to_string(), spec);
    }

    /// Looks a provider type up by its name or one of its aliases.
    pub fn get(&self, provider_type: &str) -> Option<&ProviderSpec> {
        self.specs.get(provider_type).or_else(|| {
            self.specs
                .values()
                .find(|s| s.aliases.contains(&provider_type))
        })
    }

    /// Looks a provider type up for one API: a provider of that API named so or aliased so
    /// (upstream reuses names such as `inline::meta-reference` across APIs), else a provider
    /// of another API with that name, so the caller can say it is in the wrong place. An API
    /// with no providers at all in this build finds nothing.
    pub fn get_for(&self, api: Api, provider_type: &str) -> Option<&ProviderSpec> {
        let same_api = self.specs.values().find(|s| {
            s.api == api && (s.provider_type == provider_type || s.aliases.contains(&provider_type))
        });
        same_api.or_else(|| {
            let api_known = self.specs.values().any(|s| s.api == api);
            api_known.then(|| self.specs.get(provider_type)).flatten()
        })
    }

    pub fn specs(&self) -> impl Iterator<Item = &ProviderSpec> {
        self.specs.values()
    }

    /// The provider types registered for `api`, for "known types are ..." messages.
    pub fn known_types(&self, api: Api) -> Vec<&'static str> {
        self.specs
            .values()
            .filter(|s| s.api == api)
            .map(|s| s.provider_type)
            .collect()
    }
}
