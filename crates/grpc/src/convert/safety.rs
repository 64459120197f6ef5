//! Shields and safety verdicts.

use llama_stack_core::Result;
use llama_stack_types as types;

use super::inference::messages_from_pb;
use super::json::{map_to_struct, opt_struct};
use crate::pb;

pub(crate) fn shield_to_pb(shield: types::Shield) -> pb::Shield {
    pb::Shield {
        identifier: shield.identifier,
        provider_resource_id: shield.provider_resource_id,
        provider_id: shield.provider_id,
        params: Some(map_to_struct(&shield.params.unwrap_or_default())),
    }
}

pub(crate) fn violation_to_pb(violation: types::SafetyViolation) -> pb::SafetyViolation {
    let level = match violation.violation_level {
        types::ViolationLevel::Info => pb::ViolationLevel::Info,
        types::ViolationLevel::Warn => pb::ViolationLevel::Warn,
        types::ViolationLevel::Error => pb::ViolationLevel::Error,
    };
    pb::SafetyViolation {
        violation_level: level as i32,
        user_message: violation.user_message,
        metadata: Some(map_to_struct(&violation.metadata)),
    }
}

/// The core takes messages as JSON (it also accepts OpenAI-shaped ones over HTTP); typed proto
/// messages become the classic JSON shape.
pub(crate) fn run_shield_from_pb(request: pb::RunShieldRequest) -> Result<types::RunShieldRequest> {
    let messages = messages_from_pb(request.messages)?
        .into_iter()
        .map(|m| serde_json::to_value(m).unwrap_or(serde_json::Value::Null))
        .collect();
    Ok(types::RunShieldRequest {
        shield_id: request.shield_id,
        messages,
        params: opt_struct(request.params).map(serde_json::Value::Object),
    })
}

pub(crate) fn register_shield_from_pb(
    request: pb::RegisterShieldRequest,
) -> types::RegisterShieldRequest {
    types::RegisterShieldRequest {
        shield_id: request.shield_id,
        provider_shield_id: request.provider_shield_id,
        provider_id: request.provider_id,
        params: opt_struct(request.params),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_keep_level_message_and_metadata() {
        let violation = types::SafetyViolation {
            violation_level: types::ViolationLevel::Warn,
            user_message: Some("no".into()),
            metadata: serde_json::json!({"violation_type": "S1"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let pb = violation_to_pb(violation);
        assert_eq!(pb.violation_level(), pb::ViolationLevel::Warn);
        assert_eq!(pb.user_message.as_deref(), Some("no"));
        assert!(pb.metadata.unwrap().fields.contains_key("violation_type"));
    }
}
