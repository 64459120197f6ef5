//! Classic inference types (`/v1/inference/*`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::content::InterleavedContent;

/// A chat message, discriminated by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum Message {
    User {
        content: InterleavedContent,
        /// Internal RAG context, appended after the content.
        #[serde(default)]
        context: Option<InterleavedContent>,
    },
    System {
        content: InterleavedContent,
    },
    Tool {
        call_id: String,
        content: InterleavedContent,
        /// Accepted for 0.1.0 clients and ignored.
        #[serde(default, skip_serializing)]
        tool_name: Option<serde_json::Value>,
    },
    Assistant {
        #[serde(default)]
        content: InterleavedContent,
        #[serde(default)]
        stop_reason: StopReason,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
}

impl Message {
    pub fn user(text: &str) -> Self {
        Message::User {
            content: text.into(),
            context: None,
        }
    }
    pub fn system(text: &str) -> Self {
        Message::System {
            content: text.into(),
        }
    }
    pub fn role(&self) -> &'static str {
        match self {
            Message::User { .. } => "user",
            Message::System { .. } => "system",
            Message::Tool { .. } => "tool",
            Message::Assistant { .. } => "assistant",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolCall {
    pub call_id: String,
    pub tool_name: String,
    /// An object, or a string for providers that return raw argument text.
    #[schema(value_type = Object)]
    pub arguments: serde_json::Value,
    #[serde(default)]
    pub arguments_json: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    #[default]
    EndOfTurn,
    EndOfMessage,
    OutOfTokens,
}

impl StopReason {
    /// The OpenAI `finish_reason` for this stop reason.
    pub fn openai_finish_reason(self, has_tool_calls: bool) -> &'static str {
        match (self, has_tool_calls) {
            (_, true) => "tool_calls",
            (StopReason::OutOfTokens, false) => "length",
            (StopReason::EndOfTurn | StopReason::EndOfMessage, false) => "stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[derive(Default)]
pub enum SamplingStrategy {
    #[default]
    Greedy,
    TopP {
        #[serde(default)]
        temperature: Option<f64>,
        #[serde(default = "default_top_p")]
        top_p: f64,
    },
    TopK {
        top_k: u32,
    },
}

fn default_top_p() -> f64 {
    0.95
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SamplingParams {
    #[serde(default)]
    pub strategy: SamplingStrategy,
    /// 0 means "provider default".
    #[serde(default)]
    pub max_tokens: Option<u32>,
    #[serde(default = "default_repetition_penalty")]
    pub repetition_penalty: Option<f64>,
    #[serde(default)]
    pub stop: Option<Vec<String>>,
    /// Extension: a seed makes sampling reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_repetition_penalty() -> Option<f64> {
    Some(1.0)
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            strategy: SamplingStrategy::Greedy,
            max_tokens: Some(0),
            repetition_penalty: Some(1.0),
            stop: None,
            seed: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolParamDefinition {
    pub param_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default = "default_true")]
    pub required: bool,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub default: Option<serde_json::Value>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolDefinition {
    pub tool_name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<std::collections::BTreeMap<String, ToolParamDefinition>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolConfig {
    /// `auto`, `required`, `none`, or a tool name.
    #[serde(default)]
    pub tool_choice: Option<String>,
    /// `json`, `function_tag` or `python_list`.
    #[serde(default)]
    pub tool_prompt_format: Option<String>,
    /// `append` or `replace`.
    #[serde(default)]
    pub system_message_behavior: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LogProbConfig {
    #[serde(default)]
    pub top_k: Option<u32>,
}

/// `POST /v1/inference/chat-completion`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    pub model_id: String,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub sampling_params: Option<SamplingParams>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDefinition>>,
    #[serde(default)]
    pub tool_choice: Option<String>,
    #[serde(default)]
    pub tool_prompt_format: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub logprobs: Option<LogProbConfig>,
    #[serde(default)]
    pub tool_config: Option<ToolConfig>,
}

/// One `metrics` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricInResponse {
    pub metric: String,
    /// Token counts serialize as integers (`23`, not `23.0`), as upstream sends them.
    #[serde(serialize_with = "whole_as_integer")]
    pub value: f64,
    pub unit: Option<String>,
}

fn whole_as_integer<S: serde::Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        s.serialize_i64(*value as i64)
    } else {
        s.serialize_f64(*value)
    }
}

/// Token counts of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl Usage {
    pub fn metrics(&self) -> Vec<MetricInResponse> {
        let m = |name: &str, v: u32| MetricInResponse {
            metric: name.to_string(),
            value: v as f64,
            unit: None,
        };
        vec![
            m("prompt_tokens", self.prompt_tokens),
            m("completion_tokens", self.completion_tokens),
            m("total_tokens", self.prompt_tokens + self.completion_tokens),
        ]
    }

    /// Reads the counts back from a `metrics` list.
    pub fn from_metrics(metrics: &[MetricInResponse]) -> Usage {
        let get = |name: &str| {
            metrics
                .iter()
                .find(|m| m.metric == name)
                .map(|m| m.value as u32)
                .unwrap_or(0)
        };
        Usage {
            prompt_tokens: get("prompt_tokens"),
            completion_tokens: get("completion_tokens"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionMessage {
    pub role: String,
    pub content: InterleavedContent,
    pub stop_reason: StopReason,
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenLogProbs {
    pub logprobs_by_token: std::collections::BTreeMap<String, f64>,
    /// The token that was generated and its log-probability, for the OpenAI shape, which
    /// names it apart from the alternatives. Not part of the Llama Stack wire format.
    #[serde(skip)]
    #[schema(ignore)]
    pub chosen: Option<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionResponse {
    pub completion_message: CompletionMessage,
    pub logprobs: Option<Vec<TokenLogProbs>>,
    pub metrics: Option<Vec<MetricInResponse>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatEventType {
    Start,
    Progress,
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolCallParseStatus {
    Started,
    InProgress,
    Failed,
    Succeeded,
}

/// A tool call delta carries raw text while parsing, and the parsed call at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolCallOrText {
    Call(ToolCall),
    Text(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentDelta {
    Text {
        text: String,
    },
    Image {
        image: String,
    },
    ToolCall {
        tool_call: ToolCallOrText,
        parse_status: ToolCallParseStatus,
    },
}

impl ContentDelta {
    pub fn text(s: impl Into<String>) -> Self {
        ContentDelta::Text { text: s.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionResponseEvent {
    pub event_type: ChatEventType,
    pub delta: ContentDelta,
    pub logprobs: Option<Vec<TokenLogProbs>>,
    pub stop_reason: Option<StopReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ChatCompletionResponseStreamChunk {
    pub event: ChatCompletionResponseEvent,
    pub metrics: Option<Vec<MetricInResponse>>,
}

impl ChatCompletionResponseStreamChunk {
    pub fn new(event_type: ChatEventType, delta: ContentDelta) -> Self {
        ChatCompletionResponseStreamChunk {
            event: ChatCompletionResponseEvent {
                event_type,
                delta,
                logprobs: None,
                stop_reason: None,
            },
            metrics: None,
        }
    }
}

/// `POST /v1/inference/completion`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    pub model_id: String,
    pub content: InterleavedContent,
    #[serde(default)]
    pub sampling_params: Option<SamplingParams>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<serde_json::Value>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub logprobs: Option<LogProbConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionResponse {
    pub content: String,
    pub stop_reason: StopReason,
    pub logprobs: Option<Vec<TokenLogProbs>>,
    pub metrics: Option<Vec<MetricInResponse>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompletionResponseStreamChunk {
    pub delta: String,
    pub stop_reason: Option<StopReason>,
    pub logprobs: Option<Vec<TokenLogProbs>>,
    pub metrics: Option<Vec<MetricInResponse>>,
}

/// `POST /v1/inference/embeddings`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    pub model_id: String,
    #[schema(value_type = Vec<Object>)]
    pub contents: Vec<serde_json::Value>,
    #[serde(default)]
    pub text_truncation: Option<String>,
    #[serde(default)]
    pub output_dimension: Option<u32>,
    #[serde(default)]
    pub task_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingsResponse {
    pub embeddings: Vec<Vec<f32>>,
}
