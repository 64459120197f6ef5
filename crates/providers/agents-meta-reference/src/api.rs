//! The [`Agents`] trait over the provider's own functions.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_agents::{Agents, TurnStream};
use llama_stack_core::Result;
use llama_stack_types::{
    Agent, AgentConfig, AgentCreateResponse, AgentSessionCreateResponse, CreateTurnRequest,
    PaginatedResponse, ResumeTurnRequest, Session, StepResponse, Turn,
};

use crate::MetaReferenceAgents;

#[async_trait]
impl Agents for MetaReferenceAgents {
    async fn create_agent(&self, config: AgentConfig) -> Result<AgentCreateResponse> {
        MetaReferenceAgents::create_agent(self, config).await
    }

    async fn list_agents(
        &self,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Agent>> {
        MetaReferenceAgents::list_agents(self, start_index, limit).await
    }

    async fn get_agent(&self, agent_id: &str) -> Result<Agent> {
        MetaReferenceAgents::get_agent(self, agent_id).await
    }

    async fn delete_agent(&self, agent_id: &str) -> Result<()> {
        MetaReferenceAgents::delete_agent(self, agent_id).await
    }

    async fn create_agent_session(
        &self,
        agent_id: &str,
        session_name: String,
    ) -> Result<AgentSessionCreateResponse> {
        MetaReferenceAgents::create_agent_session(self, agent_id, session_name).await
    }

    async fn list_agent_sessions(
        &self,
        agent_id: &str,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Session>> {
        MetaReferenceAgents::list_agent_sessions(self, agent_id, start_index, limit).await
    }

    async fn get_agent_session(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_ids: Option<&[String]>,
    ) -> Result<Session> {
        MetaReferenceAgents::get_agent_session(self, agent_id, session_id, turn_ids).await
    }

    async fn delete_agent_session(&self, agent_id: &str, session_id: &str) -> Result<()> {
        MetaReferenceAgents::delete_agent_session(self, agent_id, session_id).await
    }

    async fn get_agent_turn(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
    ) -> Result<Turn> {
        MetaReferenceAgents::get_agent_turn(self, agent_id, session_id, turn_id).await
    }

    async fn get_agent_step(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        step_id: &str,
    ) -> Result<StepResponse> {
        MetaReferenceAgents::get_agent_step(self, agent_id, session_id, turn_id, step_id).await
    }

    async fn create_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        request: CreateTurnRequest,
    ) -> Result<TurnStream> {
        MetaReferenceAgents::create_agent_turn(self, agent_id, session_id, request).await
    }

    async fn resume_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        request: ResumeTurnRequest,
    ) -> Result<TurnStream> {
        MetaReferenceAgents::resume_agent_turn(self, agent_id, session_id, turn_id, request).await
    }
}
