//! Agents: the registry, streamed turns with the SSE events' shape, client tools and resume.

use futures::StreamExt;
use llama_stack_grpc::pb;
use pb::agents_service_client::AgentsServiceClient;
use pb::turn_event_payload::EventType;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::{self, LLM, text, text_of, user};
use crate::upstream::ANSWER;

fn config() -> pb::AgentConfig {
    pb::AgentConfig {
        model: LLM.into(),
        instructions: "You are terse.".into(),
        client_tools: vec![pb::ClientToolDef {
            name: "get_x".into(),
            description: Some("Looks x up".into()),
            parameters: vec![pb::ClientToolParameter {
                name: "x".into(),
                parameter_type: "integer".into(),
                description: "which x".into(),
                required: Some(true),
                default: None,
            }],
            metadata: None,
        }],
        ..Default::default()
    }
}

/// The `event_type` tag of each event, as the HTTP payload names it.
fn tag(event: &EventType) -> &'static str {
    match event {
        EventType::StepStart(_) => "step_start",
        EventType::StepProgress(_) => "step_progress",
        EventType::StepComplete(_) => "step_complete",
        EventType::TurnComplete(_) => "turn_complete",
        EventType::TurnAwaitingInput(_) => "turn_awaiting_input",
    }
}

async fn events(stream: tonic::Streaming<pb::TurnStreamChunk>) -> Vec<EventType> {
    stream
        .map(|chunk| {
            chunk
                .unwrap()
                .event
                .unwrap()
                .payload
                .unwrap()
                .event_type
                .unwrap()
        })
        .collect()
        .await
}

async fn session(agents: &mut AgentsServiceClient<Channel>, agent_id: &str) -> String {
    agents
        .create_session(pb::CreateSessionRequest {
            agent_id: agent_id.into(),
            session_name: "s".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .session_id
}

#[tokio::test]
async fn a_streamed_turn_mirrors_the_sse_events() {
    let h = support::start().await;
    let mut agents = AgentsServiceClient::new(h.channel.clone());
    let agent_id = agents
        .create_agent(pb::CreateAgentRequest {
            agent_config: Some(config()),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    let session_id = session(&mut agents, &agent_id).await;
    let stream = agents
        .create_turn(pb::CreateTurnRequest {
            agent_id: agent_id.clone(),
            session_id: session_id.clone(),
            messages: vec![user("Where is Paris?")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let grpc = events(stream).await;
    let Some(EventType::TurnComplete(done)) = grpc.last() else {
        panic!("the last event completes the turn: {grpc:?}");
    };
    let turn = done.turn.clone().unwrap();
    assert_eq!(text_of(&turn.output_message.unwrap().content), ANSWER);

    let (_, http_session) = h
        .post(
            &format!("/v1/agents/{agent_id}/session"),
            json!({"session_name": "http"}),
        )
        .await;
    let http_session = http_session["session_id"].as_str().unwrap();
    let sse = h
        .post_sse(
            &format!("/v1/agents/{agent_id}/session/{http_session}/turn"),
            json!({"stream": true, "messages": [{"role": "user", "content": "Where is Paris?"}]}),
        )
        .await;
    let http_tags: Vec<&str> = sse
        .iter()
        .map(|e| e["event"]["payload"]["event_type"].as_str().unwrap())
        .collect();
    let grpc_tags: Vec<&str> = grpc.iter().map(tag).collect();
    assert_eq!(grpc_tags, http_tags);
    let last = &sse.last().unwrap()["event"]["payload"]["turn"];
    assert_eq!(last["output_message"]["content"], ANSWER);

    // The stored turn, session and step read back.
    let stored = agents
        .get_turn(pb::GetTurnRequest {
            agent_id: agent_id.clone(),
            session_id: session_id.clone(),
            turn_id: turn.turn_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.turn_id, turn.turn_id);
    let step_id = stored.steps[0].step_id.clone();
    let step = agents
        .get_step(pb::GetStepRequest {
            agent_id: agent_id.clone(),
            session_id: session_id.clone(),
            turn_id: turn.turn_id.clone(),
            step_id,
        })
        .await
        .unwrap()
        .into_inner()
        .step
        .unwrap();
    assert!(matches!(
        step.details,
        Some(pb::step::Details::Inference(_))
    ));
    let full = agents
        .get_session(pb::GetSessionRequest {
            agent_id: agent_id.clone(),
            session_id: session_id.clone(),
            turn_ids: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(full.turns.len(), 1);

    let err = agents
        .create_turn(pb::CreateTurnRequest {
            agent_id: agent_id.clone(),
            session_id: session_id.clone(),
            messages: vec![pb::Message {
                message: Some(pb::message::Message::System(pb::SystemMessage {
                    content: text("not allowed in a turn"),
                })),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_client_tool_pauses_the_turn_and_resume_finishes_it() {
    let h = support::start().await;
    let mut agents = AgentsServiceClient::new(h.channel.clone());
    let agent_id = agents
        .create_agent(pb::CreateAgentRequest {
            agent_config: Some(config()),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    let session_id = session(&mut agents, &agent_id).await;
    let paused = events(
        agents
            .create_turn(pb::CreateTurnRequest {
                agent_id: agent_id.clone(),
                session_id: session_id.clone(),
                messages: vec![user("USE_TOOL to find x")],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let Some(EventType::TurnAwaitingInput(waiting)) = paused.last() else {
        panic!("the turn waits for the client tool: {paused:?}");
    };
    let turn = waiting.turn.clone().unwrap();
    let call = &turn.output_message.unwrap().tool_calls[0];
    assert_eq!(call.tool_name, "get_x");

    let resumed = events(
        agents
            .resume_turn(pb::ResumeTurnRequest {
                agent_id: agent_id.clone(),
                session_id: session_id.clone(),
                turn_id: turn.turn_id.clone(),
                tool_responses: vec![pb::ToolResponse {
                    call_id: call.call_id.clone(),
                    tool_name: "get_x".into(),
                    content: text("42"),
                    metadata: None,
                }],
            })
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    let Some(EventType::TurnComplete(done)) = resumed.last() else {
        panic!("the resumed turn completes: {resumed:?}");
    };
    let output = done.turn.clone().unwrap().output_message.unwrap();
    assert_eq!(text_of(&output.content), "The tool said 42");
}

#[tokio::test]
async fn agents_and_sessions_list_get_and_delete() {
    let h = support::start().await;
    let mut agents = AgentsServiceClient::new(h.channel.clone());
    let agent_id = agents
        .create_agent(pb::CreateAgentRequest {
            agent_config: Some(config()),
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    let agent = agents
        .get_agent(pb::GetAgentRequest {
            agent_id: agent_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let stored = agent.agent_config.unwrap();
    let (_, http) = h.get(&format!("/v1/agents/{agent_id}")).await;
    assert_eq!(
        stored.max_infer_iters,
        http["agent_config"]["max_infer_iters"]
            .as_u64()
            .map(|n| n as u32)
    );
    assert_eq!(stored.client_tools[0].name, "get_x");
    assert!(matches!(
        stored.sampling_params.unwrap().strategy,
        Some(pb::sampling_params::Strategy::Greedy(_))
    ));

    let list = agents
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.data.len(), 1);
    assert!(!list.has_more);

    session(&mut agents, &agent_id).await;
    let second = session(&mut agents, &agent_id).await;
    let page = agents
        .list_sessions(pb::ListSessionsRequest {
            agent_id: agent_id.clone(),
            start_index: None,
            limit: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.data.len(), 1);
    assert!(page.has_more);
    agents
        .delete_session(pb::DeleteSessionRequest {
            agent_id: agent_id.clone(),
            session_id: second.clone(),
        })
        .await
        .unwrap();
    let gone = agents
        .get_session(pb::GetSessionRequest {
            agent_id: agent_id.clone(),
            session_id: second,
            turn_ids: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    agents
        .delete_agent(pb::DeleteAgentRequest {
            agent_id: agent_id.clone(),
        })
        .await
        .unwrap();
    let gone = agents
        .get_agent(pb::GetAgentRequest { agent_id })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert!(gone.message().contains("not found"), "{}", gone.message());

    let missing = agents
        .create_agent(pb::CreateAgentRequest { agent_config: None })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
}
