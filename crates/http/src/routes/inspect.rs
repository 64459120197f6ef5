//! Health, readiness, version, providers and route listing.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use llama_stack_stack::Stack;
use llama_stack_types::{DataList, HealthInfo, HealthStatus, ProviderInfo, RouteInfo, VersionInfo};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ClassicError;
use crate::table::{Form, RouteTable, declared};

#[utoipa::path(get, path = "/v1/health", tag = "inspect",
    responses((status = 200, body = HealthInfo)))]
pub async fn health() -> Json<HealthInfo> {
    Json(HealthInfo {
        status: HealthStatus::Ok,
        message: None,
    })
}

/// Whether this server should be sent work: `OK`, or `Error` with what is failing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessInfo {
    pub status: HealthStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<ReadinessFailure>,
}

/// One failing part: `server` (shutting down), `metadata_store`, or `provider:<provider_id>`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReadinessFailure {
    pub component: String,
    pub message: String,
}

/// How long the metadata store may take to answer the readiness query.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether to send this server work.
///
/// Readiness, where `/v1/health` is liveness: 200 when the metadata store answers a trivial
/// query, no provider reports an error health and the server is not shutting down; 503 with
/// the failing parts otherwise.
#[utoipa::path(get, path = "/v1/ready", tag = "inspect",
    responses((status = 200, body = ReadinessInfo),
              (status = 503, description = "Not ready: the failing parts are listed", body = ReadinessInfo)))]
pub async fn ready(State(stack): State<Arc<Stack>>) -> Response {
    let mut failing = Vec::new();
    if crate::draining() {
        failing.push(ReadinessFailure {
            component: "server".into(),
            message: "shutting down: finishing in-flight requests".into(),
        });
    }
    let store = tokio::time::timeout(STORE_PROBE_TIMEOUT, stack.inference.check_store());
    // Each provider's probe has its own time limit; run together, one slow upstream costs
    // that limit once rather than once per provider.
    let providers = futures::future::join_all(
        stack
            .providers()
            .iter()
            .map(|p| stack.get_provider(&p.provider_id)),
    );
    let (store, providers) = tokio::join!(store, providers);
    let store_error = match store {
        Ok(Ok(())) => None,
        // The store's own error may name hosts or files: it goes to the log, not to callers.
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "Readiness: the metadata store did not answer");
            Some("the query failed (details in the server log)".to_string())
        }
        Err(_) => Some(format!(
            "no answer within {} s",
            STORE_PROBE_TIMEOUT.as_secs()
        )),
    };
    if let Some(message) = store_error {
        failing.push(ReadinessFailure {
            component: "metadata_store".into(),
            message,
        });
    }
    for provider in providers.into_iter().flatten() {
        if provider.health.status == HealthStatus::Error {
            failing.push(ReadinessFailure {
                component: format!("provider:{}", provider.provider_id),
                message: provider.health.message.unwrap_or_default(),
            });
        }
    }
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let info = ReadinessInfo {
        status: if failing.is_empty() {
            HealthStatus::Ok
        } else {
            HealthStatus::Error
        },
        failing,
    };
    (status, Json(info)).into_response()
}

#[utoipa::path(get, path = "/v1/version", tag = "inspect",
    responses((status = 200, body = VersionInfo)))]
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: llama_stack_stack::API_VERSION.to_string(),
    })
}

#[utoipa::path(get, path = "/v1/providers", tag = "providers",
    responses((status = 200, body = DataList<ProviderInfo>)))]
pub async fn list_providers(State(stack): State<Arc<Stack>>) -> Json<DataList<ProviderInfo>> {
    Json(DataList {
        data: stack.list_providers().await,
    })
}

#[utoipa::path(get, path = "/v1/providers/{provider_id}", tag = "providers",
    params(("provider_id" = String, Path)),
    responses((status = 200, body = ProviderInfo)))]
pub async fn get_provider(
    State(stack): State<Arc<Stack>>,
    Path(provider_id): Path<String>,
) -> Result<Json<ProviderInfo>, ClassicError> {
    Ok(Json(stack.get_provider(&provider_id).await?))
}

#[utoipa::path(get, path = "/v1/inspect/routes", tag = "inspect",
    responses((status = 200, body = DataList<RouteInfo>)))]
pub async fn list_routes(State(stack): State<Arc<Stack>>) -> Json<DataList<RouteInfo>> {
    let data = crate::route_entries()
        .iter()
        .filter(|r| r.api.is_none_or(|api| stack.serves(api)))
        .map(|r| RouteInfo {
            route: r.path.to_string(),
            method: r.method.to_string(),
            provider_types: r
                .api
                .map(|api| stack.provider_types(api))
                .unwrap_or_default(),
        })
        .collect();
    Json(DataList { data })
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(None, Form::Plain, declared!(health))
        .add(None, Form::Plain, declared!(ready))
        .add(None, Form::Plain, declared!(version))
        .add(None, Form::Plain, declared!(list_providers))
        .add(None, Form::Plain, declared!(get_provider))
        .add(None, Form::Plain, declared!(list_routes))
}
