//! The messages a turn sends the model: its history, its tools, and the replies it records.

use std::collections::BTreeMap;

use llama_stack_types::{
    CompletionMessage, InterleavedContent, Message, SafetyViolation, Step, StopReason,
    ToolParamDefinition, Turn,
};
use serde_json::Value;

use crate::store::TurnRecord;

/// Tool parameters (name, type, description, required, default) as the inference API takes
/// them; registered tools and client tools describe theirs in the same terms.
pub(crate) fn param_definitions<'a>(
    params: impl Iterator<Item = (&'a String, &'a String, &'a String, bool, &'a Option<Value>)>,
) -> BTreeMap<String, ToolParamDefinition> {
    params
        .map(|(name, param_type, description, required, default)| {
            (
                name.clone(),
                ToolParamDefinition {
                    param_type: param_type.clone(),
                    description: Some(description.clone()),
                    required,
                    default: default.clone(),
                },
            )
        })
        .collect()
}

pub(crate) fn empty_message() -> CompletionMessage {
    CompletionMessage {
        role: "assistant".into(),
        content: InterleavedContent::Text(String::new()),
        stop_reason: StopReason::EndOfTurn,
        tool_calls: Vec::new(),
    }
}

pub(crate) fn blocked(violation: &SafetyViolation) -> CompletionMessage {
    CompletionMessage {
        role: "assistant".into(),
        content: InterleavedContent::Text(violation.user_message.clone().unwrap_or_default()),
        stop_reason: StopReason::EndOfTurn,
        tool_calls: Vec::new(),
    }
}

pub(crate) fn assistant(message: &CompletionMessage) -> Message {
    Message::Assistant {
        content: message.content.clone(),
        stop_reason: message.stop_reason,
        tool_calls: message.tool_calls.clone(),
    }
}

/// The messages a stored turn contributes to the next turn's history (§5.1 step 2).
pub(crate) fn turn_messages(turn: &Turn) -> Vec<Message> {
    let mut out: Vec<Message> = turn
        .input_messages
        .iter()
        .map(|m| match m {
            Message::User { content, .. } => Message::User {
                content: content.clone(),
                context: None,
            },
            other => other.clone(),
        })
        .collect();
    for step in &turn.steps {
        match step {
            Step::Inference { model_response, .. } => out.push(assistant(model_response)),
            Step::ToolExecution { tool_responses, .. } => {
                out.extend(tool_responses.iter().map(|r| Message::Tool {
                    call_id: r.call_id.clone(),
                    content: r.content.clone(),
                    tool_name: None,
                }))
            }
            Step::ShieldCall {
                violation: Some(v), ..
            } => out.push(Message::Assistant {
                content: InterleavedContent::Text(v.user_message.clone().unwrap_or_default()),
                stop_reason: StopReason::EndOfTurn,
                tool_calls: Vec::new(),
            }),
            Step::ShieldCall { .. } => {}
        }
    }
    out
}

pub(crate) fn history(records: &[TurnRecord]) -> Vec<Message> {
    records
        .iter()
        .filter(|r| r.status == "complete")
        .flat_map(|r| turn_messages(&r.turn))
        .collect()
}
