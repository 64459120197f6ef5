//! Safety wire types: shields (`/v1/shields`), `/v1/safety/run-shield` and the OpenAI
//! `/v1/moderations` route.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::User;

type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A registered shield: a named safety check served by one safety provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Shield {
    pub identifier: String,
    /// The provider's own name for the check; for Llama Guard, the guard model.
    pub provider_resource_id: String,
    pub provider_id: String,
    /// Always `"shield"`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Provider-specific settings; `{}` when none were given.
    #[schema(value_type = Option<Object>)]
    pub params: Option<JsonMap>,
    /// Who registered it; `None` for shields from run.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListShieldsResponse {
    pub data: Vec<Shield>,
}

/// `POST /v1/shields`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterShieldRequest {
    pub shield_id: String,
    /// Defaults to `shield_id`.
    #[serde(default)]
    pub provider_shield_id: Option<String>,
    /// May be omitted when exactly one safety provider is configured.
    #[serde(default)]
    pub provider_id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<JsonMap>,
}

/// `POST /v1/safety/run-shield`. Messages may be classic Llama Stack messages or OpenAI
/// chat messages; both are accepted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunShieldRequest {
    pub shield_id: String,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<serde_json::Value>,
    /// Required by 0.2.x clients (which send `{}`), optional since 0.7.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationLevel {
    Info,
    Warn,
    Error,
}

/// What a shield found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SafetyViolation {
    pub violation_level: ViolationLevel,
    /// The message to show the end user instead of the flagged content.
    pub user_message: Option<String>,
    /// `violation_type` names what was found (Llama Guard codes such as `S1,S2`, rule ids).
    #[schema(value_type = Object)]
    pub metadata: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunShieldResponse {
    /// `null` when the messages passed.
    pub violation: Option<SafetyViolation>,
}

/// `input` of a moderation request: one string or several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModerationInput {
    One(String),
    Many(Vec<String>),
}

impl ModerationInput {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            ModerationInput::One(s) => vec![s],
            ModerationInput::Many(v) => v,
        }
    }
}

/// `POST /v1/moderations`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModerationRequest {
    pub input: ModerationInput,
    /// Matched against the shields' `provider_resource_id`; when absent, run.yaml's
    /// `safety.default_shield_id` picks the shield.
    #[serde(default)]
    pub model: Option<String>,
}

/// One moderation verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModerationResult {
    pub flagged: bool,
    /// Category name → flagged.
    #[schema(value_type = Object)]
    pub categories: JsonMap,
    /// Category name → score in [0, 1].
    #[schema(value_type = Object)]
    pub category_scores: JsonMap,
    /// Category name → the input types it applied to (`["text"]`).
    #[schema(value_type = Object)]
    pub category_applied_input_types: JsonMap,
    pub user_message: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: JsonMap,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModerationObject {
    /// `modr-<uuid>`.
    pub id: String,
    pub model: String,
    pub results: Vec<ModerationResult>,
}
