//! Models that providers list on their own account (an upstream server's model list), served
//! beside the registered models as `provider_id/provider_resource_id` (§1.5, v0.2.16+), and the
//! start-up check of providers' upstreams.
//!
//! Listed models are kept in memory only: the upstream is their source of truth, so a restart
//! or the next refresh shows its current list rather than a stale copy from the registry.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use llama_stack_types::{HealthStatus, Model};

use crate::service::InferenceService;

/// How long the start-up check waits for each provider.
const HEALTH_BUDGET: Duration = Duration::from_secs(10);

/// What one [`InferenceService::refresh_provider_models`] pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Providers that list models, by id, with the number they listed.
    pub listed: BTreeMap<String, usize>,
    /// Providers whose list could not be read, with the reason.
    pub failed: BTreeMap<String, String>,
}

impl InferenceService {
    /// Asks every inference provider that lists models for its list and serves what it
    /// offers: a model already registered (under its listed identifier, or under another one
    /// for the same provider model) keeps its registration, and models a provider no longer
    /// lists disappear. A provider whose list cannot be read
    /// keeps its previous list, and the failure is logged.
    pub async fn refresh_provider_models(&self) -> RefreshOutcome {
        let mut outcome = RefreshOutcome::default();
        for (provider_id, provider) in self.inference_providers() {
            let models = match provider.list_provider_models().await {
                None => continue,
                Some(Ok(models)) => models,
                Some(Err(err)) => {
                    tracing::warn!(provider = %provider_id, error = %err,
                        "Cannot list the provider's models; keeping the previous list");
                    outcome.failed.insert(provider_id, err.to_string());
                    continue;
                }
            };
            let mut served = self.models.write().await;
            let mut listed = self.listed.write().await;
            let stale: Vec<String> = listed
                .iter()
                .filter(|id| {
                    served
                        .get(*id)
                        .is_some_and(|m| m.provider_id == provider_id)
                })
                .cloned()
                .collect();
            for id in stale {
                served.remove(&id);
                listed.remove(&id);
            }
            // What registrations of this provider already serve, under any identifier: listing
            // it again would make its short id ambiguous. A user's own registration does not
            // count, or it would take the listed model away from everyone else.
            let registered: BTreeSet<String> = served
                .values()
                .filter(|m| m.provider_id == provider_id && m.owner.is_none())
                .map(|m| m.provider_resource_id.clone())
                .collect();
            let mut count = 0;
            for offered in models {
                let identifier = format!("{provider_id}/{}", offered.provider_resource_id);
                if served.contains_key(&identifier)
                    || registered.contains(&offered.provider_resource_id)
                {
                    continue;
                }
                let model = Model {
                    identifier: identifier.clone(),
                    provider_resource_id: offered.provider_resource_id,
                    provider_id: provider_id.clone(),
                    resource_type: "model".into(),
                    metadata: offered.metadata,
                    model_type: offered.model_type,
                    owner: None,
                };
                served.insert(identifier.clone(), model);
                listed.insert(identifier);
                count += 1;
            }
            tracing::info!(provider = %provider_id, models = count, "Listed the provider's models");
            outcome.listed.insert(provider_id, count);
        }
        outcome
    }

    /// Logs a warning for each inference provider whose health check fails (an upstream that
    /// cannot be reached, a missing API key), so that an operator learns at start-up what
    /// requests will meet.
    pub async fn warn_unhealthy_providers(&self) {
        for (provider_id, provider) in self.inference_providers() {
            let Ok(health) = tokio::time::timeout(HEALTH_BUDGET, provider.health()).await else {
                tracing::warn!(provider = %provider_id, budget_s = HEALTH_BUDGET.as_secs(),
                    "Provider did not answer its health check in time");
                continue;
            };
            if health.status == HealthStatus::Error {
                tracing::warn!(provider = %provider_id,
                    reason = health.message.as_deref().unwrap_or("unknown"),
                    "Provider health check failed; its requests fail until it passes");
            }
        }
    }
}
