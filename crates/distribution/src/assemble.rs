//! Building the providers and the API services over them, in dependency order.
//!
//! Providers are built API by API, so that each is given the APIs it may call: inference,
//! safety, vector IO and files first (they call no other API), then tool runtimes (the RAG
//! runtime stores and searches through memory), then agents and responses (which call every
//! other API), then batches (whose lines may be responses).

use std::path::Path;
use std::sync::Arc;

use llama_stack_core::{Api, Error, RegistryStore};
use llama_stack_stack::{
    ApiHandles, ProviderContext, ProviderHandle, ProviderInstance, Services, Stack, StackInfo,
    redact_config,
};

use crate::{LoadedConfig, PlannedProvider};

/// The build order: a provider of a later phase may call the APIs of the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Base,
    ToolRuntime,
    Agents,
    /// Batches run responses too, so they come after them.
    Batches,
}

impl Phase {
    fn of(api: Api) -> Phase {
        match api {
            Api::ToolRuntime => Phase::ToolRuntime,
            Api::Agents | Api::Responses => Phase::Agents,
            Api::Batches => Phase::Batches,
            _ => Phase::Base,
        }
    }
}

/// Builds every provider and the services over them. Providers keep their run.yaml order in
/// the stack's provider list.
pub(crate) async fn assemble(
    loaded: &LoadedConfig,
    info: StackInfo,
    store: Arc<dyn RegistryStore>,
    store_dir: &Path,
) -> Result<Stack, Error> {
    let mut built: Vec<(usize, ProviderHandle)> = Vec::with_capacity(loaded.providers.len());
    build_phase(
        loaded,
        Phase::Base,
        ApiHandles::default(),
        store_dir,
        &store,
        &mut built,
    )
    .await?;
    let default_shield = loaded.config.safety.default_shield_id.clone();
    let base = Services::over(&in_order(&built), store.clone(), default_shield);
    let mut apis = base.handles();
    // Tool runtimes are built now; until then the handles name no tool runtime.
    apis.tools = None;

    build_phase(
        loaded,
        Phase::ToolRuntime,
        apis,
        store_dir,
        &store,
        &mut built,
    )
    .await?;
    let tools = Services::tools_over(&in_order(&built), store.clone());
    let apis = ApiHandles {
        tools: Some(tools.clone()),
        ..base.handles()
    };

    build_phase(
        loaded,
        Phase::Agents,
        apis.clone(),
        store_dir,
        &store,
        &mut built,
    )
    .await?;
    let agents = built.iter().find_map(|(_, h)| match &h.instance {
        ProviderInstance::Agents(a) => Some(a.clone()),
        _ => None,
    });
    let responses = built.iter().find_map(|(_, h)| match &h.instance {
        ProviderInstance::Responses(r) => Some(r.clone()),
        _ => None,
    });

    let apis = ApiHandles {
        responses: responses.clone(),
        ..apis
    };
    build_phase(loaded, Phase::Batches, apis, store_dir, &store, &mut built).await?;
    let batches = built.iter().find_map(|(_, h)| match &h.instance {
        ProviderInstance::Batches(b) => Some(b.clone()),
        _ => None,
    });

    built.sort_by_key(|(index, _)| *index);
    let handles = built.into_iter().map(|(_, h)| h).collect();
    Ok(Stack::new(
        info,
        handles,
        Services {
            inference: base.inference,
            safety: base.safety,
            memory: base.memory,
            tools,
            prompts: base.prompts,
            agents,
            responses,
            batches,
        },
    ))
}

/// Builds the providers of one phase, in run.yaml order.
async fn build_phase(
    loaded: &LoadedConfig,
    phase: Phase,
    apis: ApiHandles,
    store_dir: &Path,
    store: &Arc<dyn RegistryStore>,
    built: &mut Vec<(usize, ProviderHandle)>,
) -> Result<(), Error> {
    for (index, plan) in loaded.providers.iter().enumerate() {
        if Phase::of(plan.api) == phase {
            let handle = build_provider(loaded, plan, store_dir, store, &apis).await?;
            built.push((index, handle));
        }
    }
    Ok(())
}

/// The providers built so far, in run.yaml order.
fn in_order(built: &[(usize, ProviderHandle)]) -> Vec<ProviderHandle> {
    let mut sorted: Vec<&(usize, ProviderHandle)> = built.iter().collect();
    sorted.sort_by_key(|(index, _)| *index);
    sorted.into_iter().map(|(_, h)| h.clone()).collect()
}

async fn build_provider(
    loaded: &LoadedConfig,
    plan: &PlannedProvider,
    store_dir: &Path,
    store: &Arc<dyn RegistryStore>,
    apis: &ApiHandles,
) -> Result<ProviderHandle, Error> {
    let spec = loaded.registry().get(plan.provider_type).ok_or_else(|| {
        Error::internal(format!(
            "{}: provider type `{}` vanished from the registry",
            plan.path, plan.provider_type
        ))
    })?;
    let context = ProviderContext {
        provider_id: plan.provider_id.clone(),
        store_dir: Some(store_dir.to_path_buf()),
        registry: Some(store.clone()),
        apis: apis.clone(),
    };
    let instance = (spec.build)(plan.config.clone(), context)
        .await
        .map_err(|err| {
            Error::new(
                err.kind(),
                format!(
                    "{}: cannot build provider `{}` ({}): {}",
                    plan.path,
                    plan.provider_id,
                    plan.provider_type,
                    err.message()
                ),
            )
        })?;
    tracing::info!(api = %plan.api, provider_id = %plan.provider_id,
        provider_type = plan.provider_type, "Built provider");
    Ok(ProviderHandle {
        api: plan.api,
        provider_id: plan.provider_id.clone(),
        provider_type: plan.provider_type.to_string(),
        redacted_config: redact_config(&plan.config),
        instance,
    })
}
