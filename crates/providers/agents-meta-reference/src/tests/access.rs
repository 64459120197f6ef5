//! Agents and sessions of one user, as another sees them: not at all. Judged by the default
//! policy (the owner, or an unowned resource), since no test here turns enforcement on.

use std::future::Future;

use llama_stack_core::ErrorKind;
use llama_stack_core::access::{self, Caller};
use llama_stack_types::{AgentConfig, User};

use super::*;

async fn as_user<F: Future>(name: &str, future: F) -> F::Output {
    access::with_caller(Caller::User(User::new(name)), future).await
}

/// Asserts `result` is the not-found error a missing resource gets.
fn hidden<T: std::fmt::Debug>(result: Result<T>, message: &str) {
    let err = result.expect_err("another user's resource is hidden");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert_eq!(err.message(), message);
}

fn config(value: Value) -> AgentConfig {
    serde_json::from_value(value).unwrap()
}

fn say(text: &str) -> CreateTurnRequest {
    serde_json::from_value(json!({"messages": [{"role": "user", "content": text}],
                                  "stream": true}))
    .unwrap()
}

#[tokio::test]
async fn another_user_cannot_see_use_or_delete_an_agent() {
    let h = harness(Vec::new());
    let (agent, session) = as_user("alice", async {
        let agent = h
            .agents
            .create_agent(config(json!({"model": "m", "instructions": ""})))
            .await
            .unwrap()
            .agent_id;
        let session = h
            .agents
            .create_agent_session(&agent, "s".into())
            .await
            .unwrap()
            .session_id;
        (agent, session)
    })
    .await;
    let missing = format!("Agent {agent} not found");

    as_user("bob", async {
        let agents = &h.agents;
        assert!(
            agents
                .list_agents(None, None)
                .await
                .unwrap()
                .data
                .is_empty()
        );
        hidden(agents.get_agent(&agent).await, &missing);
        hidden(
            agents.create_agent_session(&agent, "mine".into()).await,
            &missing,
        );
        hidden(
            agents.list_agent_sessions(&agent, None, None).await,
            &missing,
        );
        hidden(
            agents.get_agent_session(&agent, &session, None).await,
            &missing,
        );
        hidden(
            agents
                .clone()
                .create_agent_turn(&agent, &session, say("hi"))
                .await
                .map(|_| ()),
            &missing,
        );
        hidden(agents.delete_agent(&agent).await, &missing);
    })
    .await;

    as_user("alice", async {
        let listed = h.agents.list_agents(None, None).await.unwrap();
        assert_eq!(listed.data.len(), 1);
        assert_eq!(listed.data[0].agent_id, agent);
        h.agents.get_agent(&agent).await.unwrap();
        h.agents.delete_agent(&agent).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn sessions_of_a_shared_agent_belong_to_their_creator() {
    let h = harness(vec![Reply::Text("Hello alice.")]);
    // Created with no caller: unowned, so every user may use it.
    let agent = h
        .agents
        .create_agent(config(json!({"model": "m", "instructions": ""})))
        .await
        .unwrap()
        .agent_id;
    let session = as_user(
        "alice",
        h.agents.create_agent_session(&agent, "alice's".into()),
    )
    .await
    .unwrap()
    .session_id;
    let bobs = as_user("bob", h.agents.create_agent_session(&agent, "bob's".into()))
        .await
        .unwrap()
        .session_id;
    let missing = format!("Session {session} not found");

    let turn = as_user("alice", async {
        let events = h
            .agents
            .clone()
            .create_agent_turn(&agent, &session, say("hi"))
            .await
            .unwrap();
        let events: Vec<_> = events.collect().await;
        match &events.last().unwrap().as_ref().unwrap().event.payload {
            TurnEventPayload::TurnComplete { turn } => turn.turn_id.clone(),
            other => panic!("the turn completes: {other:?}"),
        }
    })
    .await;

    as_user("bob", async {
        let agents = &h.agents;
        let listed = agents
            .list_agent_sessions(&agent, None, None)
            .await
            .unwrap();
        let ids: Vec<&str> = listed.data.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, [bobs.as_str()]);
        hidden(
            agents.get_agent_session(&agent, &session, None).await,
            &missing,
        );
        hidden(
            agents.get_agent_turn(&agent, &session, &turn).await,
            &missing,
        );
        hidden(
            agents.get_agent_step(&agent, &session, &turn, "s").await,
            &missing,
        );
        hidden(
            agents
                .clone()
                .create_agent_turn(&agent, &session, say("mine now"))
                .await
                .map(|_| ()),
            &missing,
        );
        hidden(
            agents
                .clone()
                .resume_agent_turn(
                    &agent,
                    &session,
                    &turn,
                    serde_json::from_value(json!({"tool_responses": []})).unwrap(),
                )
                .await
                .map(|_| ()),
            &missing,
        );
        hidden(
            agents.delete_agent_session(&agent, &session).await,
            &missing,
        );
    })
    .await;

    as_user("alice", async {
        let listed = h.agents.list_agent_sessions(&agent, None, None).await;
        assert_eq!(listed.unwrap().data.len(), 1);
        let got = h.agents.get_agent_session(&agent, &session, None).await;
        assert_eq!(got.unwrap().turns.len(), 1);
        h.agents
            .get_agent_turn(&agent, &session, &turn)
            .await
            .unwrap();
        h.agents
            .delete_agent_session(&agent, &session)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_listing_pages_over_the_agents_the_caller_may_read() {
    let h = harness(Vec::new());
    let mut mine = Vec::new();
    for name in ["alice", "bob", "alice", "bob", "alice"] {
        let id = as_user(
            name,
            h.agents
                .create_agent(config(json!({"model": "m", "instructions": ""}))),
        )
        .await
        .unwrap()
        .agent_id;
        if name == "alice" {
            mine.push(id);
        }
    }
    as_user("alice", async {
        let first = h.agents.list_agents(None, Some(2)).await.unwrap();
        let ids: Vec<String> = first.data.into_iter().map(|a| a.agent_id).collect();
        assert!(first.has_more);
        let rest = h.agents.list_agents(Some(2), Some(2)).await.unwrap();
        assert!(!rest.has_more);
        let mut all = ids;
        all.extend(rest.data.into_iter().map(|a| a.agent_id));
        all.sort();
        mine.sort();
        assert_eq!(all, mine);
    })
    .await;
}

#[tokio::test]
async fn a_turns_tool_calls_run_as_the_user_who_started_it() {
    let h = harness(vec![
        Reply::Call("add", json!({"a": 1, "b": 2})),
        Reply::Text("3"),
    ]);
    as_user(
        "alice",
        run_turn(
            &h,
            json!({"model": "m", "instructions": "", "toolgroups": ["calc"]}),
            "1 + 2?",
        ),
    )
    .await;
    assert_eq!(
        *h.tools.callers.lock().unwrap(),
        [Some("alice".to_string())]
    );
}
