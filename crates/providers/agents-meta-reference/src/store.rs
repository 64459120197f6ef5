//! Agents, sessions and turns as the meta-reference provider keeps them.
//!
//! Everything is kept in the distribution's registry store, so it lives in SQLite or PostgreSQL with
//! the rest of the registry: every session, whatever `enable_session_persistence` says (as
//! upstream stores them), because the next turn may reach another replica sharing the store.
//! Nothing is cached here: each call reads the store.
//!
//! Each turn is written as one record when it ends (or pauses for client tools), so a crash
//! never leaves half a turn visible. Order comes from the store, not from a replica's clock:
//! a turn's position is assigned under its session's lock from the turns already stored, and
//! agents and sessions take the next value of a counter kept in the store.

use llama_stack_types::{
    Agent, AgentConfig, AgentCreateResponse, AgentSessionCreateResponse, PaginatedResponse,
    Session, Turn, User,
};
use serde::{Deserialize, Serialize};

use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, Result};

use crate::MetaReferenceAgents;
use crate::agent_config;

const AGENT_KIND: &str = "agent";

/// Counters in the store that number agents and sessions in the order they were created.
const AGENT_ORDER: &str = "agents:order:agent";
const SESSION_ORDER: &str = "agents:order:session";
/// The counters never start again (see [`llama_stack_core::RegistryStore::increment`]).
const ORDER_WINDOW: &str = "all";

/// Resource types as access policies name them.
pub(crate) const AGENT_RESOURCE: &str = "agent";
pub(crate) const SESSION_RESOURCE: &str = "session";

fn session_kind(agent_id: &str) -> String {
    format!("agent_session:{agent_id}")
}

pub(crate) fn turn_kind(agent_id: &str, session_id: &str) -> String {
    format!("agent_turn:{agent_id}:{session_id}")
}

pub(crate) use llama_stack_core::now_iso as now;

/// An agent as stored: the wire agent plus who owns it. The owner stays out of the wire
/// `Agent`, which upstream answers without one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AgentRecord {
    #[serde(flatten)]
    pub agent: Agent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
    /// Its place among the agents; `None` for agents stored before agents were numbered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A session as stored: the wire fields plus who owns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SessionRecord {
    pub session_id: String,
    pub session_name: String,
    pub started_at: String,
    /// The user that created it; `None` while auth is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
    /// Its place among the sessions; `None` for sessions stored before they were numbered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A turn as stored: the wire turn plus what a paused turn needs to resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TurnRecord {
    pub turn: Turn,
    /// `complete`, or `awaiting_input` while client tool calls are pending.
    pub status: String,
    /// Inference iterations used so far; resume continues the count.
    pub iterations: u32,
    /// The turn's own tool groups, when it replaced the agent's; resume offers the same tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolgroups: Option<Vec<llama_stack_types::AgentToolGroup>>,
    /// Its place in the session, counted from 0, which also names its record. `None` for
    /// turns stored before turns were numbered: those are named by their id and come first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl TurnRecord {
    /// The record's identifier in the store. Zero-padded, so the store lists turns in order.
    fn key(&self) -> String {
        match self.seq {
            Some(seq) => format!("{seq:012}"),
            None => self.turn.turn_id.clone(),
        }
    }
}

/// The place of the next turn of a session whose turns are `records`.
pub(crate) fn next_turn_seq(records: &[TurnRecord]) -> u64 {
    let after_last = records
        .iter()
        .filter_map(|r| r.seq)
        .max()
        .map_or(0, |s| s + 1);
    after_last.max(records.len() as u64)
}

/// Numbered records in their number's order, after the ones stored before numbering (in the
/// order of their clock, the best there is for them).
fn by_seq<T>(records: &mut [T], seq: impl Fn(&T) -> Option<u64>, time: impl Fn(&T) -> &str) {
    records.sort_by(|a, b| {
        (seq(a).is_some(), seq(a), time(a)).cmp(&(seq(b).is_some(), seq(b), time(b)))
    });
}

fn agent_not_found(agent_id: &str) -> Error {
    Error::not_found(format!("Agent {agent_id} not found"))
}

fn session_not_found(session_id: &str) -> Error {
    Error::not_found(format!("Session {session_id} not found"))
}

impl MetaReferenceAgents {
    /// The agent, once the caller may do `action` to it; one they cannot read is not found.
    pub(crate) async fn agent_record(&self, agent_id: &str, action: Action) -> Result<Agent> {
        let record = self
            .store
            .get(AGENT_KIND, agent_id)
            .await?
            .and_then(|v| serde_json::from_value::<AgentRecord>(v).ok())
            .ok_or_else(|| agent_not_found(agent_id))?;
        access::check(
            action,
            AGENT_RESOURCE,
            agent_id,
            record.owner.as_ref(),
            || agent_not_found(agent_id),
        )?;
        Ok(record.agent)
    }

    /// `POST /v1/agents`.
    pub async fn create_agent(&self, mut config: AgentConfig) -> Result<AgentCreateResponse> {
        if config.model.trim().is_empty() {
            return Err(Error::invalid("agent_config.model must name a model")
                .with_location(vec!["body".into(), "agent_config".into(), "model".into()]));
        }
        self.inference.get_model(&config.model).await?;
        agent_config::fold_tool_config(&mut config)?;
        agent_config::check_client_tools(&config)?;
        let agent_id = uuid::Uuid::new_v4().to_string();
        access::check_create(AGENT_RESOURCE, &agent_id)?;
        let agent = Agent {
            agent_id,
            agent_config: config,
            created_at: now(),
        };
        let record = AgentRecord {
            agent: agent.clone(),
            owner: access::owner_for_new(),
            seq: Some(self.store.increment(AGENT_ORDER, ORDER_WINDOW).await?),
        };
        self.store
            .put(AGENT_KIND, &agent.agent_id, &to_value(&record)?)
            .await?;
        tracing::info!(agent = %agent.agent_id, model = %agent.agent_config.model, "Created agent");
        Ok(AgentCreateResponse {
            agent_id: agent.agent_id,
        })
    }

    /// `GET /v1/agents`, oldest first: the agents the caller may read.
    pub async fn list_agents(
        &self,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Agent>> {
        let mut records: Vec<AgentRecord> = self
            .store
            .list(AGENT_KIND)
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value::<AgentRecord>(v).ok())
            .filter(|r| access::can_read(AGENT_RESOURCE, &r.agent.agent_id, r.owner.as_ref()))
            .collect();
        by_seq(&mut records, |r| r.seq, |r| &r.agent.created_at);
        let agents = records.into_iter().map(|r| r.agent).collect();
        Ok(page(agents, start_index, limit))
    }

    pub async fn get_agent(&self, agent_id: &str) -> Result<Agent> {
        self.agent_record(agent_id, Action::Read).await
    }

    /// `DELETE /v1/agents/{agent_id}`: the agent, its sessions and their turns, whoever owns
    /// the sessions: they cannot outlive their agent.
    pub async fn delete_agent(&self, agent_id: &str) -> Result<()> {
        let agent = self.agent_record(agent_id, Action::Delete).await?;
        let sessions = self.session_records(&agent).await?;
        for session in sessions {
            self.delete_session_records(&agent, &session.session_id)
                .await?;
        }
        self.store.delete(AGENT_KIND, agent_id).await?;
        tracing::info!(agent = %agent_id, "Deleted agent");
        Ok(())
    }

    /// `POST /v1/agents/{agent_id}/session`.
    pub async fn create_agent_session(
        &self,
        agent_id: &str,
        session_name: String,
    ) -> Result<AgentSessionCreateResponse> {
        self.agent_record(agent_id, Action::Read).await?;
        let session_id = uuid::Uuid::new_v4().to_string();
        access::check_create(SESSION_RESOURCE, &session_id)?;
        let record = SessionRecord {
            session_id,
            session_name,
            started_at: now(),
            owner: access::owner_for_new(),
            seq: Some(self.store.increment(SESSION_ORDER, ORDER_WINDOW).await?),
        };
        self.store
            .put(
                &session_kind(agent_id),
                &record.session_id,
                &to_value(&record)?,
            )
            .await?;
        Ok(AgentSessionCreateResponse {
            session_id: record.session_id,
        })
    }

    async fn session_records(&self, agent: &Agent) -> Result<Vec<SessionRecord>> {
        let mut sessions: Vec<SessionRecord> = self
            .store
            .list(&session_kind(&agent.agent_id))
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        by_seq(&mut sessions, |s| s.seq, |s| &s.started_at);
        Ok(sessions)
    }

    /// The session, once the caller may do `action` to it; one they cannot read is not found.
    pub(crate) async fn session_record(
        &self,
        agent: &Agent,
        session_id: &str,
        action: Action,
    ) -> Result<SessionRecord> {
        let record: SessionRecord = self
            .store
            .get(&session_kind(&agent.agent_id), session_id)
            .await?
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| session_not_found(session_id))?;
        access::check(
            action,
            SESSION_RESOURCE,
            session_id,
            record.owner.as_ref(),
            || session_not_found(session_id),
        )?;
        Ok(record)
    }

    pub(crate) async fn turn_records(
        &self,
        agent: &Agent,
        session_id: &str,
    ) -> Result<Vec<TurnRecord>> {
        let mut turns: Vec<TurnRecord> = self
            .store
            .list(&turn_kind(&agent.agent_id, session_id))
            .await?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        by_seq(&mut turns, |t| t.seq, |t| &t.turn.started_at);
        Ok(turns)
    }

    pub(crate) async fn save_turn(
        &self,
        agent: &Agent,
        session_id: &str,
        record: &TurnRecord,
    ) -> Result<()> {
        self.store
            .put(
                &turn_kind(&agent.agent_id, session_id),
                &record.key(),
                &to_value(record)?,
            )
            .await
    }

    async fn delete_session_records(&self, agent: &Agent, session_id: &str) -> Result<()> {
        for record in self.turn_records(agent, session_id).await? {
            self.store
                .delete(&turn_kind(&agent.agent_id, session_id), &record.key())
                .await?;
        }
        self.store
            .delete(&session_kind(&agent.agent_id), session_id)
            .await?;
        Ok(())
    }

    /// `GET /v1/agents/{agent_id}/sessions`: the sessions the caller may read.
    pub async fn list_agent_sessions(
        &self,
        agent_id: &str,
        start_index: Option<usize>,
        limit: Option<usize>,
    ) -> Result<PaginatedResponse<Session>> {
        let agent = self.agent_record(agent_id, Action::Read).await?;
        let mut sessions = Vec::new();
        for record in self.session_records(&agent).await? {
            if access::can_read(SESSION_RESOURCE, &record.session_id, record.owner.as_ref()) {
                sessions.push(self.session_view(&agent, record, None).await?);
            }
        }
        Ok(page(sessions, start_index, limit))
    }

    /// `GET /v1/agents/{agent_id}/session/{session_id}`, optionally only the listed turns.
    pub async fn get_agent_session(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_ids: Option<&[String]>,
    ) -> Result<Session> {
        let agent = self.agent_record(agent_id, Action::Read).await?;
        let record = self
            .session_record(&agent, session_id, Action::Read)
            .await?;
        self.session_view(&agent, record, turn_ids).await
    }

    async fn session_view(
        &self,
        agent: &Agent,
        record: SessionRecord,
        turn_ids: Option<&[String]>,
    ) -> Result<Session> {
        let turns = self
            .turn_records(agent, &record.session_id)
            .await?
            .into_iter()
            .map(|t| t.turn)
            .filter(|t| turn_ids.is_none_or(|ids| ids.contains(&t.turn_id)))
            .collect();
        Ok(Session {
            session_id: record.session_id,
            session_name: record.session_name,
            turns,
            started_at: record.started_at,
        })
    }

    /// `DELETE /v1/agents/{agent_id}/session/{session_id}`: the session and its turns.
    pub async fn delete_agent_session(&self, agent_id: &str, session_id: &str) -> Result<()> {
        let agent = self.agent_record(agent_id, Action::Read).await?;
        self.session_record(&agent, session_id, Action::Delete)
            .await?;
        self.delete_session_records(&agent, session_id).await
    }

    /// `GET .../turn/{turn_id}`.
    pub async fn get_agent_turn(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
    ) -> Result<Turn> {
        let agent = self.agent_record(agent_id, Action::Read).await?;
        self.session_record(&agent, session_id, Action::Read)
            .await?;
        self.turn_records(&agent, session_id)
            .await?
            .into_iter()
            .map(|t| t.turn)
            .find(|t| t.turn_id == turn_id)
            .ok_or_else(|| Error::not_found(format!("Turn {turn_id} not found")))
    }

    /// `GET .../turn/{turn_id}/step/{step_id}`.
    pub async fn get_agent_step(
        &self,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        step_id: &str,
    ) -> Result<llama_stack_types::StepResponse> {
        let turn = self.get_agent_turn(agent_id, session_id, turn_id).await?;
        turn.steps
            .into_iter()
            .find(|s| s.step_id() == step_id)
            .map(|step| llama_stack_types::StepResponse { step })
            .ok_or_else(|| Error::not_found(format!("Step {step_id} not found")))
    }
}

fn page<T>(
    items: Vec<T>,
    start_index: Option<usize>,
    limit: Option<usize>,
) -> PaginatedResponse<T> {
    let start = start_index.unwrap_or(0).min(items.len());
    let end = match limit {
        Some(limit) => (start + limit).min(items.len()),
        None => items.len(),
    };
    let has_more = end < items.len();
    PaginatedResponse {
        data: items.into_iter().skip(start).take(end - start).collect(),
        has_more,
    }
}

fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))
}
