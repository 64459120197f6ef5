//! Models: the classic `Model` resource and the OpenAI model object.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::User;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    #[default]
    Llm,
    Embedding,
    /// Scores how relevant items are to a query (`/v1alpha/inference/rerank`).
    Rerank,
}

impl ModelType {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Llm => "llm",
            ModelType::Embedding => "embedding",
            ModelType::Rerank => "rerank",
        }
    }
}

/// A registered model (the classic `Model` resource).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    pub identifier: String,
    pub provider_resource_id: String,
    pub provider_id: String,
    #[serde(rename = "type", default = "model_type_tag")]
    pub resource_type: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub model_type: ModelType,
    /// Who registered it; `None` for models from run.yaml or a provider's listing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

fn model_type_tag() -> String {
    "model".to_string()
}

/// One item of `GET /v1/models`: the classic fields plus the OpenAI fields, so that both
/// client generations parse the same answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelListItem {
    #[serde(flatten)]
    pub model: Model,
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
    #[schema(value_type = Object)]
    pub custom_metadata: serde_json::Value,
}

/// `POST /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterModelRequest {
    pub model_id: String,
    #[serde(default)]
    pub provider_model_id: Option<String>,
    #[serde(default)]
    pub provider_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub model_type: Option<ModelType>,
}

/// The OpenAI model object of `GET /v1/openai/v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenAiModel {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub owned_by: String,
}
