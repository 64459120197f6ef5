//! Assembling the [`Stack`] from a checked configuration.

use std::sync::{Arc, Weak};
use std::time::Duration;

use llama_stack_core::{Error, ErrorKind, RegistryStore, access};
use llama_stack_stack::{Stack, StackInfo};
use llama_stack_types::{
    ModelType, RegisterModelRequest, RegisterShieldRequest, RegisterToolGroupRequest,
    RegisterVectorDbRequest,
};

use crate::assemble::assemble;
use crate::{LoadedConfig, ServerSettings};

/// A built stack and what the server needs to serve it.
pub struct Built {
    pub stack: Arc<Stack>,
    pub server: ServerSettings,
    /// Copied from [`LoadedConfig::not_implemented`], for the startup log.
    pub not_implemented: Vec<String>,
    /// `server.quota`, counting in the registry store.
    pub quota: Option<Arc<llama_stack_core::quota::Quota>>,
    /// `server.auth`: who callers are and which routes they may call.
    pub auth: Option<Arc<llama_stack_auth::Authenticator>>,
}

/// Opens the registry store, builds every provider, restores the models registered by earlier
/// runs and registers the run.yaml models. Any failure is fatal and names what failed, except an
/// embedding model whose files are not found: the stack starts without it, with one warning
/// saying how to get it, since embeddings are an optional part of a distribution.
///
/// Remote providers accept their models without contacting the upstream, so an unreachable
/// upstream does not stop start-up; a background task then warns about it and pulls in the
/// model lists of providers configured with `refresh_models`.
///
/// With `server.auth` authenticating callers, the access policy is in force from here on:
/// start-up work runs as the server, and every request as its caller.
pub async fn build(loaded: LoadedConfig) -> Result<Built, Error> {
    let auth = match &loaded.server.auth {
        Some(settings) => {
            if settings.provider.is_some()
                && !llama_stack_core::access::enforce(settings.access_policy.clone())
            {
                tracing::warn!("An access policy was already in force in this process; keeping it");
            }
            Some(Arc::new(llama_stack_auth::Authenticator::new(
                settings.clone(),
            )?))
        }
        None => None,
    };
    let mut built = access::with_caller(access::Caller::System, build_stack(loaded)).await?;
    built.auth = auth;
    Ok(built)
}

async fn build_stack(loaded: LoadedConfig) -> Result<Built, Error> {
    let registry = crate::registry_store::open(&loaded).await?;
    let store_dir = loaded.store_dir().to_path_buf();
    let store: Arc<dyn RegistryStore> = registry.store.clone();
    let info = StackInfo {
        image_name: loaded.config.image_name.clone(),
        apis: loaded.apis.clone(),
        limits: loaded.server.limits.clone(),
    };
    let stack = Arc::new(assemble(&loaded, info, store, &store_dir).await?);
    let restored = stack.inference.restore_models().await?;
    tracing::debug!(
        restored = restored.restored,
        "Restored models from the registry"
    );

    let mut left_out = Vec::new();
    for model in &loaded.models {
        let model_id = model.request.model_id.clone();
        let provider_id = model.request.provider_id.clone().unwrap_or_default();
        let err = match stack.inference.register_model(model.request.clone()).await {
            Ok(_) => continue,
            Err(err) => err,
        };
        if files_missing(&model.request, &err) {
            tracing::warn!(model = %model_id, provider = %provider_id, entry = %model.path,
                "Embedding model left out: {}", err.message());
            left_out.push((
                provider_id,
                model.request.provider_model_id.clone().unwrap_or(model_id),
            ));
            continue;
        }
        let hint = if err.kind() == ErrorKind::Conflict {
            format!(
                "; the registry at {} holds a different model under this name: unregister it or use {}",
                registry.location, registry.elsewhere
            )
        } else {
            String::new()
        };
        return Err(Error::new(
            err.kind(),
            format!(
                "{}: cannot register model `{model_id}` on provider `{provider_id}`: {}{hint}",
                model.path,
                err.message()
            ),
        ));
    }
    // A stored model that run.yaml lists again was just reported; say it once.
    for (model, err) in restored.refused {
        let reported = left_out.iter().any(|(provider, resource)| {
            provider == &model.provider_id && resource == &model.provider_resource_id
        });
        if !reported {
            tracing::warn!(model = %model.identifier, error = %err,
                "Skipping stored model its provider refused");
        }
    }

    register_memory_resources(&stack, &loaded).await?;
    register_shields(&stack, &loaded).await?;
    stack.memory.resume_file_batches().await?;
    stack.tools.resume_rag_insert_jobs().await?;
    if let Ok(batches) = stack.batches() {
        batches.resume().await?;
    }
    if let Ok(responses) = stack.responses() {
        responses.resume_background().await?;
    }

    tokio::spawn(access::as_user(
        None,
        watch_upstreams(Arc::downgrade(&stack)),
    ));
    let shared: Arc<dyn RegistryStore> = registry.store.clone();
    crate::replicas::follow(shared.as_ref(), Arc::downgrade(&stack)).await;

    let quota = loaded.server.quota.clone().map(|settings| {
        let quota = Arc::new(llama_stack_core::quota::Quota::new(
            settings,
            registry.store.clone(),
        ));
        llama_stack_core::quota::enforce_token_budget(quota.clone());
        quota
    });
    Ok(Built {
        stack,
        server: loaded.server.clone(),
        not_implemented: loaded.not_implemented.clone(),
        quota,
        auth: None,
    })
}

/// Restores the shields of earlier runs, then registers the run.yaml `shields` (after the
/// models, since a Llama Guard shield names its guard model).
async fn register_shields(stack: &Stack, loaded: &LoadedConfig) -> Result<(), Error> {
    let restored = stack.safety.restore_shields().await?;
    for (i, shield) in loaded.config.shields.iter().enumerate() {
        let request = RegisterShieldRequest {
            shield_id: shield.shield_id.clone(),
            provider_shield_id: shield.provider_shield_id.clone(),
            provider_id: shield.provider_id.clone(),
            params: shield.params.as_ref().and_then(|p| p.as_object().cloned()),
        };
        if let Err(err) = stack.safety.register_shield(request).await {
            let hint = if err.kind() == ErrorKind::Conflict {
                "; the registry holds a different shield under this name: unregister it (DELETE /v1/shields/{id}) or rename this one"
            } else {
                ""
            };
            return Err(Error::new(
                err.kind(),
                format!(
                    "shields[{i}]: cannot register shield `{}`: {}{hint}",
                    shield.shield_id,
                    err.message()
                ),
            ));
        }
    }
    for (shield, err) in restored.refused {
        tracing::warn!(shield = %shield.identifier, error = %err,
            "Skipping stored shield its provider refused");
    }
    if let Some(default) = &loaded.config.safety.default_shield_id
        && stack.safety.get_shield(default).await.is_err()
    {
        tracing::warn!(shield = %default,
            "safety.default_shield_id names a shield that is not registered; /v1/moderations requests without a model will fail until it is");
    }
    Ok(())
}

/// How often providers' own model lists are read again, and how soon after a failure.
const REFRESH_EVERY: Duration = Duration::from_secs(300);
const REFRESH_RETRY: Duration = Duration::from_secs(30);

/// In the background, so that start-up never waits on the network: warns about providers
/// whose upstream cannot be reached, then serves the models providers list on their own and
/// reads the lists again every few minutes, while the stack lives.
async fn watch_upstreams(stack: Weak<Stack>) {
    if let Some(stack) = stack.upgrade() {
        stack.inference.warn_unhealthy_providers().await;
    }
    loop {
        let Some(strong) = stack.upgrade() else {
            return;
        };
        let outcome = strong.inference.refresh_provider_models().await;
        drop(strong);
        if outcome.listed.is_empty() && outcome.failed.is_empty() {
            return;
        }
        let wait = if outcome.failed.is_empty() {
            REFRESH_EVERY
        } else {
            REFRESH_RETRY
        };
        tokio::time::sleep(wait).await;
    }
}

/// Whether a run.yaml model failed only because its provider found no files for it, and is an
/// embedding model, which the rest of the stack can do without.
fn files_missing(request: &RegisterModelRequest, err: &Error) -> bool {
    request.model_type == Some(ModelType::Embedding) && err.kind() == ErrorKind::NotFound
}

/// Restores the vector stores and tool groups of earlier runs, then registers the run.yaml
/// `vector_dbs` and `tool_groups` (after the models, since a store names its embedding model).
async fn register_memory_resources(stack: &Stack, loaded: &LoadedConfig) -> Result<(), Error> {
    stack.memory.restore_memory().await?;
    stack.tools.restore_tool_groups().await?;
    let at =
        |path: String, err: Error| Error::new(err.kind(), format!("{path}: {}", err.message()));
    for (i, entry) in loaded.config.vector_dbs.iter().enumerate() {
        let path = format!("vector_dbs[{i}]");
        let request: RegisterVectorDbRequest = serde_json::from_value(entry.clone())
            .map_err(|e| Error::invalid(format!("{path}: {e}")))?;
        stack
            .memory
            .register_vector_db(request)
            .await
            .map_err(|e| at(path, e))?;
    }
    for (i, entry) in loaded.config.tool_groups.iter().enumerate() {
        let path = format!("tool_groups[{i}]");
        let request: RegisterToolGroupRequest = serde_json::from_value(entry.clone())
            .map_err(|e| Error::invalid(format!("{path}: {e}")))?;
        stack
            .tools
            .register_tool_group(request)
            .await
            .map_err(|e| at(path, e))?;
    }
    Ok(())
}
