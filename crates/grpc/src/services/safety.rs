//! `llama_stack.v1.SafetyService`: running shields and the shield registry.

use std::sync::Arc;

use llama_stack_stack::Stack;
use tonic::{Request, Response, Status};

use crate::convert::safety as convert;
use crate::pb;
use crate::pb::safety_service_server::SafetyService;
use crate::status::status;

pub(crate) struct Safety(pub Arc<Stack>);

/// Identifiers may carry a leading `/` from a client base URL; HTTP forgives it too.
fn id(raw: &str) -> &str {
    raw.trim_start_matches('/')
}

#[tonic::async_trait]
impl SafetyService for Safety {
    async fn moderate(
        &self,
        request: Request<pb::ModerateRequest>,
    ) -> Result<Response<pb::ModerateResponse>, Status> {
        use crate::convert::json::map_to_struct;
        let request = request.into_inner();
        let moderation = llama_stack_types::ModerationRequest {
            input: llama_stack_types::ModerationInput::Many(request.input),
            model: Some(request.model).filter(|m| !m.is_empty()),
        };
        let object = self
            .0
            .safety
            .run_moderation(moderation)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ModerateResponse {
            id: object.id,
            model: object.model,
            results: object
                .results
                .into_iter()
                .map(|r| pb::ModerationResult {
                    flagged: r.flagged,
                    categories: Some(map_to_struct(&r.categories)),
                    category_scores: Some(map_to_struct(&r.category_scores)),
                    category_applied_input_types: Some(map_to_struct(
                        &r.category_applied_input_types,
                    )),
                    user_message: r.user_message,
                    metadata: Some(map_to_struct(&r.metadata)),
                })
                .collect(),
        }))
    }

    async fn run_shield(
        &self,
        request: Request<pb::RunShieldRequest>,
    ) -> Result<Response<pb::RunShieldResponse>, Status> {
        let request = convert::run_shield_from_pb(request.into_inner()).map_err(status)?;
        let response = self.0.safety.run_shield(request).await.map_err(status)?;
        Ok(Response::new(pb::RunShieldResponse {
            violation: response.violation.map(convert::violation_to_pb),
        }))
    }

    async fn list_shields(
        &self,
        _request: Request<pb::ListShieldsRequest>,
    ) -> Result<Response<pb::ListShieldsResponse>, Status> {
        let data = self
            .0
            .safety
            .list_shields()
            .await
            .into_iter()
            .map(convert::shield_to_pb)
            .collect();
        Ok(Response::new(pb::ListShieldsResponse { data }))
    }

    async fn get_shield(
        &self,
        request: Request<pb::GetShieldRequest>,
    ) -> Result<Response<pb::Shield>, Status> {
        let identifier = request.into_inner().identifier;
        let shield = self
            .0
            .safety
            .get_shield(id(&identifier))
            .await
            .map_err(status)?;
        Ok(Response::new(convert::shield_to_pb(shield)))
    }

    async fn register_shield(
        &self,
        request: Request<pb::RegisterShieldRequest>,
    ) -> Result<Response<pb::Shield>, Status> {
        let request = convert::register_shield_from_pb(request.into_inner());
        let shield = self
            .0
            .safety
            .register_shield(request)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::shield_to_pb(shield)))
    }

    async fn unregister_shield(
        &self,
        request: Request<pb::UnregisterShieldRequest>,
    ) -> Result<Response<pb::UnregisterShieldResponse>, Status> {
        let identifier = request.into_inner().identifier;
        self.0
            .safety
            .unregister_shield(id(&identifier))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::UnregisterShieldResponse {}))
    }
}
