//! Classic agents wire types (`/v1/agents/...`): agent configs, sessions, turns, steps and the
//! streamed turn events, in the shapes `llama-stack-client` 0.2.x reads.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::content::InterleavedContent;
use crate::inference::{
    CompletionMessage, ContentDelta, Message, SamplingParams, ToolCall, ToolConfig,
};
use crate::safety::SafetyViolation;

/// A tool group an agent may use: its id (optionally `group/tool` for one tool), or the id with
/// arguments for the group's runtime (e.g. `vector_db_ids` for `builtin::rag`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AgentToolGroup {
    Name(String),
    WithArgs {
        name: String,
        #[schema(value_type = Object)]
        args: Map<String, Value>,
    },
}

impl AgentToolGroup {
    pub fn name(&self) -> &str {
        match self {
            AgentToolGroup::Name(name) | AgentToolGroup::WithArgs { name, .. } => name,
        }
    }

    pub fn args(&self) -> Option<&Map<String, Value>> {
        match self {
            AgentToolGroup::Name(_) => None,
            AgentToolGroup::WithArgs { args, .. } => Some(args),
        }
    }
}

/// A tool the client runs itself; the model's call to it ends the turn with
/// `turn_awaiting_input`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientToolDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Vec<ClientToolParameter>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClientToolParameter {
    pub name: String,
    pub parameter_type: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub required: bool,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
}

fn yes() -> bool {
    true
}

fn ten() -> Option<u32> {
    Some(10)
}

/// The body of `POST /v1/agents` (`agent_config`), with upstream's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentConfig {
    pub model: String,
    /// The system prompt; `""` means no system message.
    pub instructions: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub enable_session_persistence: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    #[serde(default = "default_sampling")]
    pub sampling_params: Option<SamplingParams>,
    #[serde(default = "empty")]
    pub input_shields: Option<Vec<String>>,
    #[serde(default = "empty")]
    pub output_shields: Option<Vec<String>>,
    #[serde(default = "empty")]
    pub toolgroups: Option<Vec<AgentToolGroup>>,
    #[serde(default = "empty")]
    pub client_tools: Option<Vec<ClientToolDef>>,
    /// Deprecated; folded into `tool_config`.
    #[serde(default)]
    pub tool_choice: Option<String>,
    /// Deprecated; folded into `tool_config`.
    #[serde(default)]
    pub tool_prompt_format: Option<String>,
    #[serde(default)]
    pub tool_config: Option<ToolConfig>,
    #[serde(default = "ten")]
    pub max_infer_iters: Option<u32>,
}

fn default_sampling() -> Option<SamplingParams> {
    Some(SamplingParams::default())
}

fn empty<T>() -> Option<Vec<T>> {
    Some(Vec::new())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateAgentRequest {
    pub agent_config: AgentConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentCreateResponse {
    pub agent_id: String,
}

/// `GET /v1/agents/{agent_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    pub agent_id: String,
    pub agent_config: AgentConfig,
    /// ISO 8601, UTC.
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    pub session_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentSessionCreateResponse {
    pub session_id: String,
}

/// A page of a list route (`?start_index&limit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PaginatedResponse<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

/// A document attached to a turn: content, or a URL to fetch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Document {
    #[schema(value_type = Object)]
    pub content: Value,
    pub mime_type: String,
}

/// A tool result sent back to the agent (`resume`) or recorded in a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolResponse {
    pub call_id: String,
    pub tool_name: String,
    pub content: InterleavedContent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// One step of a turn, discriminated by `step_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "step_type", rename_all = "snake_case")]
pub enum Step {
    Inference {
        turn_id: String,
        step_id: String,
        started_at: Option<String>,
        completed_at: Option<String>,
        model_response: CompletionMessage,
    },
    ToolExecution {
        turn_id: String,
        step_id: String,
        started_at: Option<String>,
        completed_at: Option<String>,
        tool_calls: Vec<ToolCall>,
        tool_responses: Vec<ToolResponse>,
    },
    ShieldCall {
        turn_id: String,
        step_id: String,
        started_at: Option<String>,
        completed_at: Option<String>,
        violation: Option<SafetyViolation>,
    },
}

impl Step {
    pub fn step_id(&self) -> &str {
        match self {
            Step::Inference { step_id, .. }
            | Step::ToolExecution { step_id, .. }
            | Step::ShieldCall { step_id, .. } => step_id,
        }
    }

    pub fn step_type(&self) -> StepType {
        match self {
            Step::Inference { .. } => StepType::Inference,
            Step::ToolExecution { .. } => StepType::ToolExecution,
            Step::ShieldCall { .. } => StepType::ShieldCall,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    Inference,
    ToolExecution,
    ShieldCall,
    MemoryRetrieval,
}

/// One user turn and everything the agent did for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Turn {
    pub turn_id: String,
    pub session_id: String,
    /// User and tool-response messages.
    pub input_messages: Vec<Message>,
    pub steps: Vec<Step>,
    pub output_message: CompletionMessage,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub output_attachments: Option<Vec<Value>>,
    pub started_at: String,
    pub completed_at: Option<String>,
}

/// `GET /v1/agents/{agent_id}/session/{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub session_id: String,
    pub session_name: String,
    pub turns: Vec<Turn>,
    pub started_at: String,
}

/// `POST /v1/agents/{agent_id}/session/{session_id}/turn`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateTurnRequest {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub documents: Option<Vec<Document>>,
    #[serde(default)]
    pub toolgroups: Option<Vec<AgentToolGroup>>,
    #[serde(default)]
    pub tool_config: Option<ToolConfig>,
}

/// `POST .../turn/{turn_id}/resume`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResumeTurnRequest {
    pub tool_responses: Vec<ToolResponse>,
    #[serde(default)]
    pub stream: Option<bool>,
}

/// `GET .../step/{step_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StepResponse {
    pub step: Step,
}

/// The payload of one streamed turn event, discriminated by `event_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event_type", rename_all = "snake_case")]
pub enum TurnEventPayload {
    StepStart {
        step_type: StepType,
        step_id: String,
        #[schema(value_type = Object)]
        metadata: Map<String, Value>,
    },
    StepProgress {
        step_type: StepType,
        step_id: String,
        delta: ContentDelta,
    },
    StepComplete {
        step_type: StepType,
        step_id: String,
        step_details: Step,
    },
    TurnComplete {
        turn: Turn,
    },
    TurnAwaitingInput {
        turn: Turn,
    },
}

/// `data: {"event":{"payload":{...}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TurnStreamChunk {
    pub event: TurnEvent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TurnEvent {
    pub payload: TurnEventPayload,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_config_fills_upstream_defaults() {
        let config: AgentConfig =
            serde_json::from_value(json!({"model": "m", "instructions": "be kind"})).unwrap();
        let value = serde_json::to_value(&config).unwrap();
        assert_eq!(value["max_infer_iters"], 10);
        assert_eq!(value["input_shields"], json!([]));
        assert_eq!(value["toolgroups"], json!([]));
        assert_eq!(
            value["sampling_params"]["strategy"],
            json!({"type": "greedy"})
        );
    }

    #[test]
    fn toolgroups_take_names_and_names_with_args() {
        let groups: Vec<AgentToolGroup> = serde_json::from_value(json!([
            "builtin::websearch",
            {"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": ["docs"]}}
        ]))
        .unwrap();
        assert_eq!(groups[0].name(), "builtin::websearch");
        assert_eq!(groups[1].name(), "builtin::rag/knowledge_search");
        assert_eq!(groups[1].args().unwrap()["vector_db_ids"], json!(["docs"]));
    }

    #[test]
    fn stream_chunks_have_the_reference_shape() {
        let chunk = TurnStreamChunk {
            event: TurnEvent {
                payload: TurnEventPayload::StepStart {
                    step_type: StepType::Inference,
                    step_id: "s1".into(),
                    metadata: Map::new(),
                },
            },
        };
        assert_eq!(
            serde_json::to_value(&chunk).unwrap(),
            json!({"event": {"payload": {"event_type": "step_start", "step_type": "inference",
                                         "step_id": "s1", "metadata": {}}}})
        );
        let progress: TurnStreamChunk = serde_json::from_value(json!({"event": {"payload": {
            "event_type": "step_progress", "step_type": "inference", "step_id": "s1",
            "delta": {"type": "text", "text": "Gold is"}}}}))
        .unwrap();
        assert!(matches!(
            progress.event.payload,
            TurnEventPayload::StepProgress {
                delta: ContentDelta::Text { .. },
                ..
            }
        ));
    }

    #[test]
    fn steps_are_tagged_by_step_type() {
        let step: Step = serde_json::from_value(json!({
            "step_type": "shield_call", "turn_id": "t", "step_id": "s",
            "started_at": null, "completed_at": null, "violation": null}))
        .unwrap();
        assert_eq!(step.step_type(), StepType::ShieldCall);
        assert_eq!(step.step_id(), "s");
    }
}
