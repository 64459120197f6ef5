//! `/v1/agents/...`: agents, sessions and turns. Turns stream their events as SSE; with
//! `stream: false` the reply is the finished (or paused) `Turn` itself.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use llama_stack_agents::TurnStream;
use llama_stack_stack::Stack;
use llama_stack_types::{
    Agent, AgentCreateResponse, AgentSessionCreateResponse, CreateAgentRequest,
    CreateSessionRequest, CreateTurnRequest, PaginatedResponse, ResumeTurnRequest, Session,
    StepResponse, Turn, TurnEventPayload, TurnStreamChunk,
};

use crate::error::{ApiJson, Classic, ClassicError};
use crate::sse::sse_response;
use crate::table::{Form, RouteTable, declared};
use llama_stack_core::Api;

type Pairs = Query<Vec<(String, String)>>;

fn usize_param(pairs: &[(String, String)], key: &str) -> Result<Option<usize>, ClassicError> {
    match pairs.iter().rev().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            llama_stack_core::Error::invalid(format!("{key} must be a whole number, not {v:?}"))
                .with_location(vec!["query".into(), key.into()])
                .into()
        }),
    }
}

#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = CreateAgentRequest,
    responses((status = 200, body = AgentCreateResponse)))]
pub async fn create_agent(
    State(stack): State<Arc<Stack>>,
    ApiJson(request, ..): ApiJson<CreateAgentRequest, Classic>,
) -> Result<Json<AgentCreateResponse>, ClassicError> {
    Ok(Json(
        stack.agents()?.create_agent(request.agent_config).await?,
    ))
}

#[utoipa::path(get, path = "/v1/agents", tag = "agents",
    params(("start_index" = Option<usize>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = PaginatedResponse<Agent>)))]
pub async fn list_agents(
    State(stack): State<Arc<Stack>>,
    Query(pairs): Pairs,
) -> Result<Json<PaginatedResponse<Agent>>, ClassicError> {
    let (start, limit) = (
        usize_param(&pairs, "start_index")?,
        usize_param(&pairs, "limit")?,
    );
    Ok(Json(stack.agents()?.list_agents(start, limit).await?))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}", tag = "agents",
    params(("agent_id" = String, Path)),
    responses((status = 200, body = Agent)))]
pub async fn get_agent(
    State(stack): State<Arc<Stack>>,
    Path(agent_id): Path<String>,
) -> Result<Json<Agent>, ClassicError> {
    Ok(Json(stack.agents()?.get_agent(&agent_id).await?))
}

#[utoipa::path(delete, path = "/v1/agents/{agent_id}", tag = "agents",
    params(("agent_id" = String, Path)),
    responses((status = 200, description = "`null`")))]
pub async fn delete_agent(
    State(stack): State<Arc<Stack>>,
    Path(agent_id): Path<String>,
) -> Result<Json<()>, ClassicError> {
    stack.agents()?.delete_agent(&agent_id).await?;
    Ok(Json(()))
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/session", tag = "agents",
    params(("agent_id" = String, Path)),
    request_body = CreateSessionRequest,
    responses((status = 200, body = AgentSessionCreateResponse)))]
pub async fn create_session(
    State(stack): State<Arc<Stack>>,
    Path(agent_id): Path<String>,
    ApiJson(request, ..): ApiJson<CreateSessionRequest, Classic>,
) -> Result<Json<AgentSessionCreateResponse>, ClassicError> {
    Ok(Json(
        stack
            .agents()?
            .create_agent_session(&agent_id, request.session_name)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/sessions", tag = "agents",
    params(("agent_id" = String, Path), ("start_index" = Option<usize>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = PaginatedResponse<Session>)))]
pub async fn list_sessions(
    State(stack): State<Arc<Stack>>,
    Path(agent_id): Path<String>,
    Query(pairs): Pairs,
) -> Result<Json<PaginatedResponse<Session>>, ClassicError> {
    let (start, limit) = (
        usize_param(&pairs, "start_index")?,
        usize_param(&pairs, "limit")?,
    );
    Ok(Json(
        stack
            .agents()?
            .list_agent_sessions(&agent_id, start, limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/session/{session_id}", tag = "agents",
    params(("agent_id" = String, Path), ("session_id" = String, Path), ("turn_ids" = Option<String>, Query,
        description = "Only these turns: comma-joined, or the key repeated")),
    responses((status = 200, body = Session)))]
pub async fn get_session(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id)): Path<(String, String)>,
    Query(pairs): Pairs,
) -> Result<Json<Session>, ClassicError> {
    let ids: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "turn_ids")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    let filter = pairs.iter().any(|(k, _)| k == "turn_ids").then_some(ids);
    Ok(Json(
        stack
            .agents()?
            .get_agent_session(&agent_id, &session_id, filter.as_deref())
            .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/agents/{agent_id}/session/{session_id}", tag = "agents",
    params(("agent_id" = String, Path), ("session_id" = String, Path)),
    responses((status = 200, description = "`null`")))]
pub async fn delete_session(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id)): Path<(String, String)>,
) -> Result<Json<()>, ClassicError> {
    stack
        .agents()?
        .delete_agent_session(&agent_id, &session_id)
        .await?;
    Ok(Json(()))
}

/// SSE of the events, or the final turn.
async fn turn_reply(events: TurnStream, stream: bool) -> Result<Response, ClassicError> {
    if stream {
        return Ok(sse_response(events));
    }
    let mut events = events;
    let mut last: Option<Turn> = None;
    while let Some(chunk) = events.next().await {
        let TurnStreamChunk { event } = chunk?;
        if let TurnEventPayload::TurnComplete { turn }
        | TurnEventPayload::TurnAwaitingInput { turn } = event.payload
        {
            last = Some(turn);
        }
    }
    let turn =
        last.ok_or_else(|| llama_stack_core::Error::internal("the turn ended without a result"))?;
    Ok(Json(turn).into_response())
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/session/{session_id}/turn", tag = "agents",
    params(("agent_id" = String, Path), ("session_id" = String, Path)),
    request_body = CreateTurnRequest,
    responses(
        (status = 200, description = "SSE of the turn's events, or with `stream: false` the turn",
            content((TurnStreamChunk = "text/event-stream"), (Turn = "application/json")))))]
pub async fn create_turn(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id)): Path<(String, String)>,
    ApiJson(request, ..): ApiJson<CreateTurnRequest, Classic>,
) -> Result<Response, ClassicError> {
    let stream = request.stream.unwrap_or(false);
    let events = stack
        .agents()?
        .create_agent_turn(&agent_id, &session_id, request)
        .await?;
    turn_reply(events, stream).await
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/resume",
    tag = "agents", params(("agent_id" = String, Path), ("session_id" = String, Path), ("turn_id" = String, Path)), request_body = ResumeTurnRequest,
    responses(
        (status = 200, description = "SSE of the turn's events, or with `stream: false` the turn",
            content((TurnStreamChunk = "text/event-stream"), (Turn = "application/json")))))]
pub async fn resume_turn(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id, turn_id)): Path<(String, String, String)>,
    ApiJson(request, ..): ApiJson<ResumeTurnRequest, Classic>,
) -> Result<Response, ClassicError> {
    let stream = request.stream.unwrap_or(false);
    let events = stack
        .agents()?
        .resume_agent_turn(&agent_id, &session_id, &turn_id, request)
        .await?;
    turn_reply(events, stream).await
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}",
    tag = "agents", params(("agent_id" = String, Path), ("session_id" = String, Path), ("turn_id" = String, Path)), responses((status = 200, body = Turn)))]
pub async fn get_turn(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id, turn_id)): Path<(String, String, String)>,
) -> Result<Json<Turn>, ClassicError> {
    Ok(Json(
        stack
            .agents()?
            .get_agent_turn(&agent_id, &session_id, &turn_id)
            .await?,
    ))
}

#[utoipa::path(get,
    path = "/v1/agents/{agent_id}/session/{session_id}/turn/{turn_id}/step/{step_id}",
    tag = "agents", params(("agent_id" = String, Path), ("session_id" = String, Path), ("turn_id" = String, Path), ("step_id" = String, Path)), responses((status = 200, body = StepResponse)))]
pub async fn get_step(
    State(stack): State<Arc<Stack>>,
    Path((agent_id, session_id, turn_id, step_id)): Path<(String, String, String, String)>,
) -> Result<Json<StepResponse>, ClassicError> {
    Ok(Json(
        stack
            .agents()?
            .get_agent_step(&agent_id, &session_id, &turn_id, &step_id)
            .await?,
    ))
}

/// The routes of this API; see [`crate::table`].
pub(crate) fn declare(table: RouteTable) -> RouteTable {
    table
        .add(
            Some(Api::Agents),
            Form::Plain,
            declared!(create_agent, list_agents),
        )
        .add(
            Some(Api::Agents),
            Form::Plain,
            declared!(get_agent, delete_agent),
        )
        .add(Some(Api::Agents), Form::Plain, declared!(create_session))
        .add(Some(Api::Agents), Form::Plain, declared!(list_sessions))
        .add(
            Some(Api::Agents),
            Form::Plain,
            declared!(get_session, delete_session),
        )
        .add(Some(Api::Agents), Form::Plain, declared!(create_turn))
        .add(Some(Api::Agents), Form::Plain, declared!(resume_turn))
        .add(Some(Api::Agents), Form::Plain, declared!(get_turn))
        .add(Some(Api::Agents), Form::Plain, declared!(get_step))
}
