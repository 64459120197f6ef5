//! Providers, health, version and route listing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"data": [...]}`: the list envelope every classic list route uses.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DataList<T> {
    pub data: Vec<T>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum HealthStatus {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "Error")]
    Error,
    #[serde(rename = "Not Implemented")]
    NotImplemented,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthInfo {
    pub status: HealthStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderInfo {
    pub api: String,
    pub provider_id: String,
    pub provider_type: String,
    /// The run.yaml config with secrets replaced by `********`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub health: HealthInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RouteInfo {
    pub route: String,
    pub method: String,
    pub provider_types: Vec<String>,
}
