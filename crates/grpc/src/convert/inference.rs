//! Inference messages: chat messages, tool calls, sampling, and the responses and stream chunks.

use llama_stack_core::{Error, Result};
use llama_stack_types as types;
use serde_json::{Map, Value as Json, json};

use super::content::{content_from_pb, content_to_pb, item_from_pb, opt_content_from_pb};
use super::json::{from_json, map_to_struct, opt_value, struct_to_map};
use super::{enum_value, none_if_empty};
use crate::pb;

pub(crate) fn message_from_pb(message: pb::Message) -> Result<types::Message> {
    use pb::message::Message as Role;
    match message.message {
        Some(Role::User(user)) => Ok(types::Message::User {
            content: content_from_pb(user.content)?,
            context: opt_content_from_pb(user.context)?,
        }),
        Some(Role::System(system)) => Ok(types::Message::System {
            content: content_from_pb(system.content)?,
        }),
        Some(Role::Tool(tool)) => Ok(types::Message::Tool {
            call_id: tool.call_id,
            content: content_from_pb(tool.content)?,
            tool_name: None,
        }),
        Some(Role::Assistant(assistant)) => {
            let message = completion_message_from_pb(assistant)?;
            Ok(types::Message::Assistant {
                content: message.content,
                stop_reason: message.stop_reason,
                tool_calls: message.tool_calls,
            })
        }
        None => Err(Error::invalid(
            "a message needs a role: user, system, tool or assistant",
        )),
    }
}

pub(crate) fn messages_from_pb(messages: Vec<pb::Message>) -> Result<Vec<types::Message>> {
    messages.into_iter().map(message_from_pb).collect()
}

pub(crate) fn message_to_pb(message: types::Message) -> pb::Message {
    use pb::message::Message as Role;
    let role = match message {
        types::Message::User { content, context } => Role::User(pb::UserMessage {
            content: Some(content_to_pb(content)),
            context: context.map(content_to_pb),
        }),
        types::Message::System { content } => Role::System(pb::SystemMessage {
            content: Some(content_to_pb(content)),
        }),
        types::Message::Tool {
            call_id, content, ..
        } => Role::Tool(pb::ToolResponseMessage {
            call_id,
            content: Some(content_to_pb(content)),
        }),
        types::Message::Assistant {
            content,
            stop_reason,
            tool_calls,
        } => Role::Assistant(pb::CompletionMessage {
            content: Some(content_to_pb(content)),
            stop_reason: stop_reason_to_pb(stop_reason),
            tool_calls: tool_calls.into_iter().map(tool_call_to_pb).collect(),
        }),
    };
    pb::Message {
        message: Some(role),
    }
}

pub(crate) fn completion_message_from_pb(
    message: pb::CompletionMessage,
) -> Result<types::CompletionMessage> {
    Ok(types::CompletionMessage {
        role: "assistant".into(),
        content: content_from_pb(message.content)?,
        stop_reason: stop_reason_from_pb(message.stop_reason)?.unwrap_or_default(),
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(tool_call_from_pb)
            .collect(),
    })
}

pub(crate) fn completion_message_to_pb(message: types::CompletionMessage) -> pb::CompletionMessage {
    pb::CompletionMessage {
        content: Some(content_to_pb(message.content)),
        stop_reason: stop_reason_to_pb(message.stop_reason),
        tool_calls: message
            .tool_calls
            .into_iter()
            .map(tool_call_to_pb)
            .collect(),
    }
}

/// Unset reads as absent.
pub(crate) fn stop_reason_from_pb(value: i32) -> Result<Option<types::StopReason>> {
    Ok(match enum_value::<pb::StopReason>(value, "stop_reason")? {
        pb::StopReason::Unspecified => None,
        pb::StopReason::EndOfTurn => Some(types::StopReason::EndOfTurn),
        pb::StopReason::EndOfMessage => Some(types::StopReason::EndOfMessage),
        pb::StopReason::OutOfTokens => Some(types::StopReason::OutOfTokens),
    })
}

pub(crate) fn stop_reason_to_pb(reason: types::StopReason) -> i32 {
    let reason = match reason {
        types::StopReason::EndOfTurn => pb::StopReason::EndOfTurn,
        types::StopReason::EndOfMessage => pb::StopReason::EndOfMessage,
        types::StopReason::OutOfTokens => pb::StopReason::OutOfTokens,
    };
    reason as i32
}

fn opt_stop_reason_to_pb(reason: Option<types::StopReason>) -> i32 {
    reason.map_or(pb::StopReason::Unspecified as i32, stop_reason_to_pb)
}

pub(crate) fn tool_call_from_pb(call: pb::ToolCall) -> types::ToolCall {
    types::ToolCall {
        call_id: call.call_id,
        tool_name: call.tool_name,
        arguments: opt_value(call.arguments).unwrap_or_else(|| json!({})),
        arguments_json: call.arguments_json,
    }
}

pub(crate) fn tool_call_to_pb(call: types::ToolCall) -> pb::ToolCall {
    pb::ToolCall {
        call_id: call.call_id,
        tool_name: call.tool_name,
        arguments: Some(from_json(&call.arguments)),
        arguments_json: call.arguments_json,
    }
}

/// Built through the JSON form so that unset fields take exactly the defaults the HTTP API
/// gives them (`repetition_penalty` 1.0, `top_p` 0.95).
pub(crate) fn sampling_from_pb(params: pb::SamplingParams) -> Result<types::SamplingParams> {
    use pb::sampling_params::Strategy;
    let mut object = Map::new();
    let strategy = match params.strategy {
        None | Some(Strategy::Greedy(_)) => json!({"type": "greedy"}),
        Some(Strategy::TopP(p)) => {
            let mut s = json!({"type": "top_p", "temperature": p.temperature});
            if let Some(top_p) = p.top_p {
                s["top_p"] = json!(top_p);
            }
            s
        }
        Some(Strategy::TopK(k)) => json!({"type": "top_k", "top_k": k.top_k}),
    };
    object.insert("strategy".into(), strategy);
    object.insert("max_tokens".into(), json!(params.max_tokens));
    if let Some(penalty) = params.repetition_penalty {
        object.insert("repetition_penalty".into(), json!(penalty));
    }
    if !params.stop.is_empty() {
        object.insert("stop".into(), json!(params.stop));
    }
    if let Some(seed) = params.seed {
        object.insert("seed".into(), json!(seed));
    }
    serde_json::from_value(Json::Object(object))
        .map_err(|e| Error::invalid(format!("sampling_params: {e}")))
}

pub(crate) fn sampling_to_pb(params: types::SamplingParams) -> pb::SamplingParams {
    use pb::sampling_params::Strategy;
    let strategy = match params.strategy {
        types::SamplingStrategy::Greedy => Strategy::Greedy(pb::GreedySampling {}),
        types::SamplingStrategy::TopP { temperature, top_p } => Strategy::TopP(pb::TopPSampling {
            temperature,
            top_p: Some(top_p),
        }),
        types::SamplingStrategy::TopK { top_k } => Strategy::TopK(pb::TopKSampling { top_k }),
    };
    pb::SamplingParams {
        strategy: Some(strategy),
        max_tokens: params.max_tokens,
        repetition_penalty: params.repetition_penalty,
        stop: params.stop.unwrap_or_default(),
        seed: params.seed,
    }
}

pub(crate) fn tool_definition_from_pb(tool: pb::ToolDefinition) -> types::ToolDefinition {
    let parameters = tool
        .parameters
        .into_iter()
        .map(|(name, p)| {
            let definition = types::ToolParamDefinition {
                param_type: p.param_type,
                description: p.description,
                required: p.required.unwrap_or(true),
                default: opt_value(p.default),
            };
            (name, definition)
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    types::ToolDefinition {
        tool_name: tool.tool_name,
        description: tool.description,
        parameters: (!parameters.is_empty()).then_some(parameters),
    }
}

pub(crate) fn tool_config_from_pb(config: pb::ToolConfig) -> types::ToolConfig {
    types::ToolConfig {
        tool_choice: config.tool_choice,
        tool_prompt_format: config.tool_prompt_format,
        system_message_behavior: config.system_message_behavior,
    }
}

pub(crate) fn tool_config_to_pb(config: types::ToolConfig) -> pb::ToolConfig {
    pb::ToolConfig {
        tool_choice: config.tool_choice,
        tool_prompt_format: config.tool_prompt_format,
        system_message_behavior: config.system_message_behavior,
    }
}

/// The JSON `response_format` the core reads (`{"type": "json_schema", "json_schema": ...}`).
pub(crate) fn response_format_from_pb(format: pb::ResponseFormat) -> Option<Json> {
    use pb::response_format::Format;
    match format.format? {
        Format::JsonSchema(schema) => Some(json!({
            "type": "json_schema", "json_schema": struct_to_map(schema)})),
        Format::Grammar(grammar) => Some(json!({"type": "grammar", "bnf": struct_to_map(grammar)})),
    }
}

/// Formats other than the two classic ones (an OpenAI `json_object`) have no proto form.
pub(crate) fn response_format_to_pb(format: &Json) -> Option<pb::ResponseFormat> {
    use pb::response_format::Format;
    let object = |key: &str| format.get(key).and_then(Json::as_object).map(map_to_struct);
    let format = match format.get("type").and_then(Json::as_str)? {
        "json_schema" => Format::JsonSchema(object("json_schema").unwrap_or_default()),
        "grammar" => Format::Grammar(object("bnf").unwrap_or_default()),
        _ => return None,
    };
    Some(pb::ResponseFormat {
        format: Some(format),
    })
}

fn logprobs_from_pb(config: Option<pb::LogProbConfig>) -> Option<types::LogProbConfig> {
    config.map(|c| types::LogProbConfig { top_k: c.top_k })
}

pub(crate) fn chat_request_from_pb(
    request: pb::ChatCompletionRequest,
) -> Result<types::ChatCompletionRequest> {
    Ok(types::ChatCompletionRequest {
        model_id: request.model_id,
        messages: messages_from_pb(request.messages)?,
        sampling_params: request.sampling_params.map(sampling_from_pb).transpose()?,
        tools: none_if_empty(
            request
                .tools
                .into_iter()
                .map(tool_definition_from_pb)
                .collect(),
        ),
        tool_choice: None,
        tool_prompt_format: None,
        response_format: request.response_format.and_then(response_format_from_pb),
        stream: None,
        logprobs: logprobs_from_pb(request.logprobs),
        tool_config: request.tool_config.map(tool_config_from_pb),
    })
}

pub(crate) fn completion_request_from_pb(
    request: pb::CompletionRequest,
) -> Result<types::CompletionRequest> {
    Ok(types::CompletionRequest {
        model_id: request.model_id,
        content: content_from_pb(request.content)?,
        sampling_params: request.sampling_params.map(sampling_from_pb).transpose()?,
        response_format: request.response_format.and_then(response_format_from_pb),
        stream: None,
        logprobs: logprobs_from_pb(request.logprobs),
    })
}

pub(crate) fn embeddings_request_from_pb(
    request: pb::EmbeddingsRequest,
) -> Result<types::EmbeddingsRequest> {
    let contents = request
        .contents
        .into_iter()
        .map(|item| item_from_pb(item).map(|i| serde_json::to_value(i).unwrap_or(Json::Null)))
        .collect::<Result<_>>()?;
    let truncation = match enum_value(request.text_truncation, "text_truncation")? {
        pb::TextTruncation::Unspecified => None,
        pb::TextTruncation::None => Some("none"),
        pb::TextTruncation::Start => Some("start"),
        pb::TextTruncation::End => Some("end"),
    };
    let task_type = match enum_value(request.task_type, "task_type")? {
        pb::EmbeddingTaskType::Unspecified => None,
        pb::EmbeddingTaskType::Query => Some("query"),
        pb::EmbeddingTaskType::Document => Some("document"),
    };
    Ok(types::EmbeddingsRequest {
        model_id: request.model_id,
        contents,
        text_truncation: truncation.map(str::to_string),
        output_dimension: request.output_dimension,
        task_type: task_type.map(str::to_string),
    })
}

fn metrics_to_pb(metrics: Option<Vec<types::MetricInResponse>>) -> Vec<pb::Metric> {
    metrics
        .unwrap_or_default()
        .into_iter()
        .map(|m| pb::Metric {
            metric: m.metric,
            value: m.value,
            unit: m.unit,
        })
        .collect()
}

fn logprobs_to_pb(logprobs: Option<Vec<types::TokenLogProbs>>) -> Vec<pb::TokenLogProbs> {
    logprobs
        .unwrap_or_default()
        .into_iter()
        .map(|l| pb::TokenLogProbs {
            logprobs_by_token: l.logprobs_by_token.into_iter().collect(),
        })
        .collect()
}

pub(crate) fn chat_response_to_pb(
    response: types::ChatCompletionResponse,
) -> pb::ChatCompletionResponse {
    pb::ChatCompletionResponse {
        completion_message: Some(completion_message_to_pb(response.completion_message)),
        logprobs: logprobs_to_pb(response.logprobs),
        metrics: metrics_to_pb(response.metrics),
    }
}

pub(crate) fn delta_to_pb(delta: types::ContentDelta) -> pb::ContentDelta {
    use pb::content_delta::Delta;
    use pb::tool_call_delta::ToolCall;
    let delta = match delta {
        types::ContentDelta::Text { text } => Delta::Text(text),
        types::ContentDelta::Image { image } => Delta::Image(image),
        types::ContentDelta::ToolCall {
            tool_call,
            parse_status,
        } => Delta::ToolCall(pb::ToolCallDelta {
            tool_call: Some(match tool_call {
                types::ToolCallOrText::Call(call) => ToolCall::Call(tool_call_to_pb(call)),
                types::ToolCallOrText::Text(text) => ToolCall::Text(text),
            }),
            parse_status: match parse_status {
                types::ToolCallParseStatus::Started => pb::ToolCallParseStatus::Started,
                types::ToolCallParseStatus::InProgress => pb::ToolCallParseStatus::InProgress,
                types::ToolCallParseStatus::Failed => pb::ToolCallParseStatus::Failed,
                types::ToolCallParseStatus::Succeeded => pb::ToolCallParseStatus::Succeeded,
            } as i32,
        }),
    };
    pb::ContentDelta { delta: Some(delta) }
}

pub(crate) fn chat_chunk_to_pb(
    chunk: types::ChatCompletionResponseStreamChunk,
) -> pb::ChatCompletionStreamChunk {
    let event = chunk.event;
    pb::ChatCompletionStreamChunk {
        event: Some(pb::ChatCompletionEvent {
            event_type: match event.event_type {
                types::ChatEventType::Start => pb::ChatEventType::Start,
                types::ChatEventType::Progress => pb::ChatEventType::Progress,
                types::ChatEventType::Complete => pb::ChatEventType::Complete,
            } as i32,
            delta: Some(delta_to_pb(event.delta)),
            logprobs: logprobs_to_pb(event.logprobs),
            stop_reason: opt_stop_reason_to_pb(event.stop_reason),
        }),
        metrics: metrics_to_pb(chunk.metrics),
    }
}

pub(crate) fn completion_response_to_pb(
    response: types::CompletionResponse,
) -> pb::CompletionResponse {
    pb::CompletionResponse {
        content: response.content,
        stop_reason: stop_reason_to_pb(response.stop_reason),
        logprobs: logprobs_to_pb(response.logprobs),
        metrics: metrics_to_pb(response.metrics),
    }
}

pub(crate) fn completion_chunk_to_pb(
    chunk: types::CompletionResponseStreamChunk,
) -> pb::CompletionStreamChunk {
    pb::CompletionStreamChunk {
        delta: chunk.delta,
        stop_reason: opt_stop_reason_to_pb(chunk.stop_reason),
        logprobs: logprobs_to_pb(chunk.logprobs),
        metrics: metrics_to_pb(chunk.metrics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_sampling_fields_take_the_http_defaults() {
        let params = sampling_from_pb(pb::SamplingParams {
            strategy: Some(pb::sampling_params::Strategy::TopP(pb::TopPSampling {
                temperature: Some(0.7),
                top_p: None,
            })),
            ..Default::default()
        })
        .unwrap();
        let from_json: types::SamplingParams = serde_json::from_value(json!({
            "strategy": {"type": "top_p", "temperature": 0.7}}))
        .unwrap();
        assert_eq!(params, from_json);
        assert_eq!(
            sampling_from_pb(sampling_to_pb(params.clone())).unwrap(),
            params
        );
    }

    #[test]
    fn messages_round_trip() {
        let messages = vec![
            types::Message::system("be brief"),
            types::Message::user("hi"),
            types::Message::Assistant {
                content: "calling".into(),
                stop_reason: types::StopReason::EndOfMessage,
                tool_calls: vec![types::ToolCall {
                    call_id: "c1".into(),
                    tool_name: "get_weather".into(),
                    arguments: json!({"city": "Paris", "days": 2}),
                    arguments_json: None,
                }],
            },
            types::Message::Tool {
                call_id: "c1".into(),
                content: "sunny".into(),
                tool_name: None,
            },
        ];
        let back = messages_from_pb(messages.iter().cloned().map(message_to_pb).collect()).unwrap();
        assert_eq!(back, messages);
        assert!(message_from_pb(pb::Message { message: None }).is_err());
    }

    #[test]
    fn unknown_enum_values_are_invalid_arguments() {
        let err = stop_reason_from_pb(42).unwrap_err();
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::InvalidRequest);
    }
}
