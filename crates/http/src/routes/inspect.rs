//! Health, version, providers and route listing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use llama_stack_stack::Stack;
use llama_stack_types::{DataList, HealthInfo, HealthStatus, ProviderInfo, RouteInfo, VersionInfo};

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
        .add(None, Form::Plain, declared!(version))
        .add(None, Form::Plain, declared!(list_providers))
        .add(None, Form::Plain, declared!(get_provider))
        .add(None, Form::Plain, declared!(list_routes))
}
