//! The agents API (`/v1/agents/...`): the trait an agents provider implements. The reference
//! implementation, with its turn loop, is the `inline::meta-reference` provider; another
//! implementation is one provider crate implementing [`Agents`] plus one registration line.
//!
//! Depends on core and the wire types only. Providers get the inference, safety and tool
//! runtime APIs as handles when they are built.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use llama_stack_core::Result;
use llama_stack_types::{
    Agent, AgentConfig, AgentCreateResponse, AgentSessionCreateResponse, CreateTurnRequest,
    PaginatedResponse, ResumeTurnRequest, Session, StepResponse, Turn, TurnStreamChunk,
};

/// The events of one turn as it runs, ending with `turn_complete` or `turn_awaiting_input`.
pub type TurnStream = BoxStream<'static, Result<TurnStreamChunk>>;

#[async_trait]
pub trait Agents: Send + Sync {
    /// `POST /v1/agents`.
    async fn create_agent(&self, config: AgentConfig) -> Result<AgentCreateResponse>;
    /// `GET /v1/agents`, paged by `start_index` and `limit`.
    async fn list_agents(
        &self,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Agent>>;
    async fn get_agent(&self, agent_id: &str) -> Result<Agent>;
    /// Deletes the agent with its sessions and turns.
    async fn delete_agent(&self, agent_id: &str) -> Result<()>;
    async fn create_agent_session(
        &self,
        agent_id: &str,
        session_name: String,
    ) -> Result<AgentSessionCreateResponse>;
    async fn list_agent_sessions(
        &self,
        agent_id: &str,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Session>>;
    /// A session with its turns, or only the turns named by `turn_ids`.
    async fn get_agent_session(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_ids: Option<&[String]>,
    ) -> Result<Session>;
    async fn delete_agent_session(&self, agent_id: &str, session_id: &str) -> Result<()>;
    async fn get_agent_turn(&self, agent_id: &str, session_id: &str, turn_id: &str)
    -> Result<Turn>;
    async fn get_agent_step(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        step_id: &str,
    ) -> Result<StepResponse>;
    /// Starts a turn; it runs to its end even when the caller stops reading the stream. Turns
    /// of one session run one after the other, each reading the history the one before it
    /// stored, also when they reach different servers sharing the metadata store.
    async fn create_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        request: CreateTurnRequest,
    ) -> Result<TurnStream>;
    /// Continues a turn that paused for client tool results.
    async fn resume_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        request: ResumeTurnRequest,
    ) -> Result<TurnStream>;
}
