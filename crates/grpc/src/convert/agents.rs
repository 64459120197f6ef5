//! Agents: configurations, sessions, turns, steps and the streamed turn events.

use llama_stack_core::{Error, Result};
use llama_stack_types as types;
use serde_json::json;

use super::content::{content_from_pb, content_to_pb};
use super::inference::{
    completion_message_to_pb, delta_to_pb, message_to_pb, messages_from_pb,
    response_format_from_pb, response_format_to_pb, sampling_from_pb, sampling_to_pb,
    tool_call_to_pb, tool_config_from_pb, tool_config_to_pb,
};
use super::json::{from_json, map_to_struct, opt_struct, opt_value};
use super::memory::document_content;
use super::safety::violation_to_pb;
use crate::pb;

/// Built on the config the HTTP API would read from `{"model", "instructions"}` alone, so that
/// unset fields take exactly its defaults (greedy sampling, 10 inference rounds, no shields).
pub(crate) fn agent_config_from_pb(config: pb::AgentConfig) -> Result<types::AgentConfig> {
    let mut out: types::AgentConfig = serde_json::from_value(json!({
        "model": config.model, "instructions": config.instructions}))
    .map_err(|e| Error::internal(format!("default agent config: {e}")))?;
    out.name = config.name;
    out.enable_session_persistence = config.enable_session_persistence;
    out.response_format = config.response_format.and_then(response_format_from_pb);
    if let Some(sampling) = config.sampling_params {
        out.sampling_params = Some(sampling_from_pb(sampling)?);
    }
    out.input_shields = Some(config.input_shields);
    out.output_shields = Some(config.output_shields);
    out.toolgroups = Some(
        config
            .toolgroups
            .into_iter()
            .map(toolgroup_from_pb)
            .collect(),
    );
    out.client_tools = Some(
        config
            .client_tools
            .into_iter()
            .map(client_tool_from_pb)
            .collect(),
    );
    out.tool_config = config.tool_config.map(tool_config_from_pb);
    if let Some(iterations) = config.max_infer_iters {
        out.max_infer_iters = Some(iterations);
    }
    Ok(out)
}

pub(crate) fn agent_config_to_pb(config: types::AgentConfig) -> pb::AgentConfig {
    pb::AgentConfig {
        model: config.model,
        instructions: config.instructions,
        name: config.name,
        enable_session_persistence: config.enable_session_persistence,
        response_format: config
            .response_format
            .as_ref()
            .and_then(response_format_to_pb),
        sampling_params: config.sampling_params.map(sampling_to_pb),
        input_shields: config.input_shields.unwrap_or_default(),
        output_shields: config.output_shields.unwrap_or_default(),
        toolgroups: config
            .toolgroups
            .unwrap_or_default()
            .into_iter()
            .map(toolgroup_to_pb)
            .collect(),
        client_tools: config
            .client_tools
            .unwrap_or_default()
            .into_iter()
            .map(client_tool_to_pb)
            .collect(),
        tool_config: config.tool_config.map(tool_config_to_pb),
        max_infer_iters: config.max_infer_iters,
    }
}

fn toolgroup_from_pb(group: pb::AgentToolGroup) -> types::AgentToolGroup {
    match opt_struct(group.args) {
        None => types::AgentToolGroup::Name(group.name),
        Some(args) => types::AgentToolGroup::WithArgs {
            name: group.name,
            args,
        },
    }
}

fn toolgroup_to_pb(group: types::AgentToolGroup) -> pb::AgentToolGroup {
    pb::AgentToolGroup {
        name: group.name().to_string(),
        args: group.args().map(map_to_struct),
    }
}

fn client_tool_from_pb(tool: pb::ClientToolDef) -> types::ClientToolDef {
    types::ClientToolDef {
        name: tool.name,
        description: tool.description,
        parameters: tool
            .parameters
            .into_iter()
            .map(|p| types::ClientToolParameter {
                name: p.name,
                parameter_type: p.parameter_type,
                description: p.description,
                required: p.required.unwrap_or(true),
                default: opt_value(p.default),
            })
            .collect(),
        metadata: opt_struct(tool.metadata).map(serde_json::Value::Object),
    }
}

fn client_tool_to_pb(tool: types::ClientToolDef) -> pb::ClientToolDef {
    pb::ClientToolDef {
        name: tool.name,
        description: tool.description,
        parameters: tool
            .parameters
            .into_iter()
            .map(|p| pb::ClientToolParameter {
                name: p.name,
                parameter_type: p.parameter_type,
                description: p.description,
                required: Some(p.required),
                default: p.default.as_ref().map(from_json),
            })
            .collect(),
        metadata: tool
            .metadata
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .map(map_to_struct),
    }
}

pub(crate) fn agent_to_pb(agent: types::Agent) -> pb::Agent {
    pb::Agent {
        agent_id: agent.agent_id,
        agent_config: Some(agent_config_to_pb(agent.agent_config)),
        created_at: agent.created_at,
    }
}

pub(crate) fn session_to_pb(session: types::Session) -> pb::Session {
    pb::Session {
        session_id: session.session_id,
        session_name: session.session_name,
        turns: session.turns.into_iter().map(turn_to_pb).collect(),
        started_at: session.started_at,
    }
}

pub(crate) fn create_turn_from_pb(
    request: pb::CreateTurnRequest,
) -> Result<types::CreateTurnRequest> {
    let documents = request
        .documents
        .into_iter()
        .map(|doc| {
            Ok(types::Document {
                content: document_content(doc.content.map(|c| match c {
                    pb::document::Content::Inline(content) => {
                        pb::rag_document::Content::Inline(content)
                    }
                    pb::document::Content::Uri(uri) => pb::rag_document::Content::Uri(uri),
                }))?,
                mime_type: doc.mime_type,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(types::CreateTurnRequest {
        messages: messages_from_pb(request.messages)?,
        stream: Some(true),
        documents: (!documents.is_empty()).then_some(documents),
        toolgroups: request
            .toolgroups
            .map(|list| list.toolgroups.into_iter().map(toolgroup_from_pb).collect()),
        tool_config: request.tool_config.map(tool_config_from_pb),
    })
}

pub(crate) fn resume_turn_from_pb(
    request: pb::ResumeTurnRequest,
) -> Result<types::ResumeTurnRequest> {
    Ok(types::ResumeTurnRequest {
        tool_responses: request
            .tool_responses
            .into_iter()
            .map(|r| {
                Ok(types::ToolResponse {
                    call_id: r.call_id,
                    tool_name: r.tool_name,
                    content: content_from_pb(r.content)?,
                    metadata: opt_struct(r.metadata),
                })
            })
            .collect::<Result<_>>()?,
        stream: Some(true),
    })
}

fn tool_response_to_pb(response: types::ToolResponse) -> pb::ToolResponse {
    pb::ToolResponse {
        call_id: response.call_id,
        tool_name: response.tool_name,
        content: Some(content_to_pb(response.content)),
        metadata: response.metadata.as_ref().map(map_to_struct),
    }
}

pub(crate) fn turn_to_pb(turn: types::Turn) -> pb::Turn {
    pb::Turn {
        turn_id: turn.turn_id,
        session_id: turn.session_id,
        input_messages: turn.input_messages.into_iter().map(message_to_pb).collect(),
        steps: turn.steps.into_iter().map(step_to_pb).collect(),
        output_message: Some(completion_message_to_pb(turn.output_message)),
        output_attachments: turn
            .output_attachments
            .unwrap_or_default()
            .iter()
            .map(from_json)
            .collect(),
        started_at: turn.started_at,
        completed_at: turn.completed_at,
    }
}

pub(crate) fn step_to_pb(step: types::Step) -> pb::Step {
    use pb::step::Details;
    let (turn_id, step_id, started_at, completed_at, details) = match step {
        types::Step::Inference {
            turn_id,
            step_id,
            started_at,
            completed_at,
            model_response,
        } => (
            turn_id,
            step_id,
            started_at,
            completed_at,
            Details::Inference(pb::InferenceStep {
                model_response: Some(completion_message_to_pb(model_response)),
            }),
        ),
        types::Step::ToolExecution {
            turn_id,
            step_id,
            started_at,
            completed_at,
            tool_calls,
            tool_responses,
        } => (
            turn_id,
            step_id,
            started_at,
            completed_at,
            Details::ToolExecution(pb::ToolExecutionStep {
                tool_calls: tool_calls.into_iter().map(tool_call_to_pb).collect(),
                tool_responses: tool_responses
                    .into_iter()
                    .map(tool_response_to_pb)
                    .collect(),
            }),
        ),
        types::Step::ShieldCall {
            turn_id,
            step_id,
            started_at,
            completed_at,
            violation,
        } => (
            turn_id,
            step_id,
            started_at,
            completed_at,
            Details::ShieldCall(pb::ShieldCallStep {
                violation: violation.map(violation_to_pb),
            }),
        ),
    };
    pb::Step {
        turn_id,
        step_id,
        started_at,
        completed_at,
        details: Some(details),
    }
}

fn step_type_to_pb(step_type: types::StepType) -> i32 {
    let step_type = match step_type {
        types::StepType::Inference => pb::StepType::Inference,
        types::StepType::ToolExecution => pb::StepType::ToolExecution,
        types::StepType::ShieldCall => pb::StepType::ShieldCall,
        types::StepType::MemoryRetrieval => pb::StepType::MemoryRetrieval,
    };
    step_type as i32
}

pub(crate) fn turn_chunk_to_pb(chunk: types::TurnStreamChunk) -> pb::TurnStreamChunk {
    use pb::turn_event_payload::EventType;
    let event = match chunk.event.payload {
        types::TurnEventPayload::StepStart {
            step_type,
            step_id,
            metadata,
        } => EventType::StepStart(pb::StepStart {
            step_type: step_type_to_pb(step_type),
            step_id,
            metadata: Some(map_to_struct(&metadata)),
        }),
        types::TurnEventPayload::StepProgress {
            step_type,
            step_id,
            delta,
        } => EventType::StepProgress(pb::StepProgress {
            step_type: step_type_to_pb(step_type),
            step_id,
            delta: Some(delta_to_pb(delta)),
        }),
        types::TurnEventPayload::StepComplete {
            step_type,
            step_id,
            step_details,
        } => EventType::StepComplete(pb::StepComplete {
            step_type: step_type_to_pb(step_type),
            step_id,
            step_details: Some(step_to_pb(step_details)),
        }),
        types::TurnEventPayload::TurnComplete { turn } => {
            EventType::TurnComplete(pb::TurnComplete {
                turn: Some(turn_to_pb(turn)),
            })
        }
        types::TurnEventPayload::TurnAwaitingInput { turn } => {
            EventType::TurnAwaitingInput(pb::TurnAwaitingInput {
                turn: Some(turn_to_pb(turn)),
            })
        }
    };
    pb::TurnStreamChunk {
        event: Some(pb::TurnEvent {
            payload: Some(pb::TurnEventPayload {
                event_type: Some(event),
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_config_fields_take_the_http_defaults() {
        let config = agent_config_from_pb(pb::AgentConfig {
            model: "m".into(),
            instructions: "be kind".into(),
            ..Default::default()
        })
        .unwrap();
        let from_json: types::AgentConfig =
            serde_json::from_value(json!({"model": "m", "instructions": "be kind"})).unwrap();
        assert_eq!(config, from_json);
        let back = agent_config_from_pb(agent_config_to_pb(config.clone())).unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn toolgroups_with_and_without_args() {
        let groups = vec![
            types::AgentToolGroup::Name("builtin::rag".into()),
            types::AgentToolGroup::WithArgs {
                name: "builtin::rag/knowledge_search".into(),
                args: json!({"vector_db_ids": ["kb"]})
                    .as_object()
                    .unwrap()
                    .clone(),
            },
        ];
        let back: Vec<_> = groups
            .iter()
            .cloned()
            .map(toolgroup_to_pb)
            .map(toolgroup_from_pb)
            .collect();
        assert_eq!(back, groups);
    }
}
