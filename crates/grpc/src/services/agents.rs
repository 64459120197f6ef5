//! `llama_stack.v1.AgentsService`: agents, sessions and streamed turns.

use std::sync::Arc;

use llama_stack_stack::Stack;
use tonic::{Request, Response, Status};

use crate::convert::agents as convert;
use crate::pb;
use crate::pb::agents_service_server::AgentsService;
use crate::status::status;
use crate::stream::{ReplyStream, deadline, reply};

pub(crate) struct Agents(pub Arc<Stack>);

fn page(n: Option<u32>) -> Option<usize> {
    n.map(|n| n as usize)
}

#[tonic::async_trait]
impl AgentsService for Agents {
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let config = request
            .into_inner()
            .agent_config
            .ok_or_else(|| Status::invalid_argument("agent_config is required"))?;
        let config = convert::agent_config_from_pb(config).map_err(status)?;
        let created = self
            .0
            .agents()
            .map_err(status)?
            .create_agent(config)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent_id: created.agent_id,
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let request = request.into_inner();
        let agents = self
            .0
            .agents()
            .map_err(status)?
            .list_agents(page(request.start_index), page(request.limit))
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListAgentsResponse {
            data: agents.data.into_iter().map(convert::agent_to_pb).collect(),
            has_more: agents.has_more,
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let agent_id = request.into_inner().agent_id;
        let agent = self
            .0
            .agents()
            .map_err(status)?
            .get_agent(&agent_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::agent_to_pb(agent)))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let agent_id = request.into_inner().agent_id;
        self.0
            .agents()
            .map_err(status)?
            .delete_agent(&agent_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteAgentResponse {}))
    }

    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        let request = request.into_inner();
        let created = self
            .0
            .agents()
            .map_err(status)?
            .create_agent_session(&request.agent_id, request.session_name)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::CreateSessionResponse {
            session_id: created.session_id,
        }))
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let request = request.into_inner();
        let sessions = self
            .0
            .agents()
            .map_err(status)?
            .list_agent_sessions(
                &request.agent_id,
                page(request.start_index),
                page(request.limit),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::ListSessionsResponse {
            data: sessions
                .data
                .into_iter()
                .map(convert::session_to_pb)
                .collect(),
            has_more: sessions.has_more,
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let request = request.into_inner();
        let filter = (!request.turn_ids.is_empty()).then_some(request.turn_ids);
        let session = self
            .0
            .agents()
            .map_err(status)?
            .get_agent_session(&request.agent_id, &request.session_id, filter.as_deref())
            .await
            .map_err(status)?;
        Ok(Response::new(convert::session_to_pb(session)))
    }

    async fn delete_session(
        &self,
        request: Request<pb::DeleteSessionRequest>,
    ) -> Result<Response<pb::DeleteSessionResponse>, Status> {
        let request = request.into_inner();
        self.0
            .agents()
            .map_err(status)?
            .delete_agent_session(&request.agent_id, &request.session_id)
            .await
            .map_err(status)?;
        Ok(Response::new(pb::DeleteSessionResponse {}))
    }

    type CreateTurnStream = ReplyStream<pb::TurnStreamChunk>;

    async fn create_turn(
        &self,
        request: Request<pb::CreateTurnRequest>,
    ) -> Result<Response<Self::CreateTurnStream>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let (agent_id, session_id) = (request.agent_id.clone(), request.session_id.clone());
        let turn = convert::create_turn_from_pb(request).map_err(status)?;
        let events = self
            .0
            .agents()
            .map_err(status)?
            .create_agent_turn(&agent_id, &session_id, turn)
            .await
            .map_err(status)?;
        Ok(Response::new(reply(
            events,
            convert::turn_chunk_to_pb,
            deadline,
        )))
    }

    type ResumeTurnStream = ReplyStream<pb::TurnStreamChunk>;

    async fn resume_turn(
        &self,
        request: Request<pb::ResumeTurnRequest>,
    ) -> Result<Response<Self::ResumeTurnStream>, Status> {
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        let (agent_id, session_id, turn_id) = (
            request.agent_id.clone(),
            request.session_id.clone(),
            request.turn_id.clone(),
        );
        let resume = convert::resume_turn_from_pb(request).map_err(status)?;
        let events = self
            .0
            .agents()
            .map_err(status)?
            .resume_agent_turn(&agent_id, &session_id, &turn_id, resume)
            .await
            .map_err(status)?;
        Ok(Response::new(reply(
            events,
            convert::turn_chunk_to_pb,
            deadline,
        )))
    }

    async fn get_turn(
        &self,
        request: Request<pb::GetTurnRequest>,
    ) -> Result<Response<pb::Turn>, Status> {
        let request = request.into_inner();
        let turn = self
            .0
            .agents()
            .map_err(status)?
            .get_agent_turn(&request.agent_id, &request.session_id, &request.turn_id)
            .await
            .map_err(status)?;
        Ok(Response::new(convert::turn_to_pb(turn)))
    }

    async fn get_step(
        &self,
        request: Request<pb::GetStepRequest>,
    ) -> Result<Response<pb::GetStepResponse>, Status> {
        let request = request.into_inner();
        let step = self
            .0
            .agents()
            .map_err(status)?
            .get_agent_step(
                &request.agent_id,
                &request.session_id,
                &request.turn_id,
                &request.step_id,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(pb::GetStepResponse {
            step: Some(convert::step_to_pb(step.step)),
        }))
    }
}
