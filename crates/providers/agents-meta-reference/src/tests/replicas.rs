//! Two providers over one store, as two replicas of the server sharing the metadata store:
//! a session made through one goes on through the other, and turns of one session started on
//! both at once run one after the other. Each scenario runs on SQLite (one file opened twice)
//! and on PostgreSQL (two connection pools, so the lock is the database's).

use std::sync::atomic::Ordering;
use std::time::Duration;

use llama_stack_core::RegistryStore;
use llama_stack_storage::{PostgresRegistryStore, PostgresSettings, SqliteRegistryStore};
use llama_stack_types::{ResumeTurnRequest, TurnStreamChunk};

use super::*;

type Store = Arc<dyn RegistryStore>;

/// Two stores over one SQLite file; the folder goes when the guard drops.
async fn sqlite_pair() -> (Store, Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let a = SqliteRegistryStore::open(&path).await.unwrap();
    let b = SqliteRegistryStore::open(&path).await.unwrap();
    (Arc::new(a), Arc::new(b), dir)
}

/// Two stores over one fresh PostgreSQL database, each with the pool size a server uses;
/// `None` when PostgreSQL tests are skipped.
async fn postgres_pair(name: &str) -> Option<(Store, Store)> {
    let db = llama_stack_pg_test_server::database(name)?;
    let settings = PostgresSettings {
        host: db.host.clone(),
        port: db.port,
        db: db.database.clone(),
        user: db.user.clone(),
        password: Some(db.password.clone()),
        max_connections: 4,
    };
    let a = PostgresRegistryStore::connect(&settings).await.unwrap();
    let b = PostgresRegistryStore::connect(&settings).await.unwrap();
    Some((Arc::new(a), Arc::new(b)))
}

fn say(text: &str) -> CreateTurnRequest {
    serde_json::from_value(json!({"messages": [{"role": "user", "content": text}],
                                  "stream": true}))
    .unwrap()
}

/// The turn a stream ended with (complete or awaiting input).
async fn last_turn(events: llama_stack_agents::TurnStream) -> Turn {
    let events: Vec<Result<TurnStreamChunk>> = events.collect().await;
    match events.last().map(|e| &e.as_ref().unwrap().event.payload) {
        Some(TurnEventPayload::TurnComplete { turn })
        | Some(TurnEventPayload::TurnAwaitingInput { turn }) => turn.clone(),
        other => panic!("the turn ends: {other:?}"),
    }
}

/// Everything the model was sent, as one string.
fn sent(h: &Harness, request: usize) -> String {
    serde_json::to_string(&h.inference.requests.lock().unwrap()[request].messages).unwrap()
}

fn inputs(session: &llama_stack_types::Session) -> Vec<String> {
    session
        .turns
        .iter()
        .map(|t| serde_json::to_value(&t.input_messages[0]).unwrap()["content"].to_string())
        .collect()
}

/// An agent without `enable_session_persistence` made on A is used on B, and back.
async fn a_session_goes_on_through_either_replica(a: Store, b: Store) {
    let a = harness_on(a, vec![Reply::Text("Hello from A.")]);
    let b = harness_on(b, vec![Reply::Text("Hello from B.")]);
    let agent = a
        .agents
        .create_agent(serde_json::from_value(json!({"model": "m", "instructions": ""})).unwrap())
        .await
        .unwrap()
        .agent_id;
    let session = a
        .agents
        .create_agent_session(&agent, "shared".into())
        .await
        .unwrap()
        .session_id;

    b.agents.get_agent(&agent).await.unwrap();
    let listed = b.agents.list_agent_sessions(&agent, None, None).await;
    assert_eq!(listed.unwrap().data[0].session_id, session);
    let first = b
        .agents
        .clone()
        .create_agent_turn(&agent, &session, say("one"));
    let first = last_turn(first.await.unwrap()).await;
    assert_eq!(first.output_message.content.as_text(""), "Hello from B.");

    let second = a
        .agents
        .clone()
        .create_agent_turn(&agent, &session, say("two"));
    last_turn(second.await.unwrap()).await;
    assert!(sent(&a, 0).contains("Hello from B."), "{}", sent(&a, 0));

    let read = b.agents.get_agent_session(&agent, &session, None).await;
    assert_eq!(inputs(&read.unwrap()), ["\"one\"", "\"two\""]);
    let turn = a.agents.get_agent_turn(&agent, &session, &first.turn_id);
    assert_eq!(turn.await.unwrap(), first);
}

/// A turn started on B while A's turn of the same session runs waits for it and reads it.
async fn turns_of_one_session_run_one_after_the_other(a: Store, b: Store) {
    let a = harness_on(a, vec![Reply::Text("First answer.")]);
    let b = harness_on(b, vec![Reply::Text("Second answer.")]);
    a.inference.delay_ms.store(300, Ordering::SeqCst);
    let agent = a
        .agents
        .create_agent(serde_json::from_value(json!({"model": "m", "instructions": ""})).unwrap())
        .await
        .unwrap()
        .agent_id;
    let session = b
        .agents
        .create_agent_session(&agent, "together".into())
        .await
        .unwrap()
        .session_id;

    let first = a
        .agents
        .clone()
        .create_agent_turn(&agent, &session, say("one"))
        .await
        .unwrap();
    // A is inside its turn (it holds the lock) before B asks.
    for _ in 0..200 {
        if !a.inference.requests.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(a.inference.requests.lock().unwrap().len(), 1);
    let second = b
        .agents
        .clone()
        .create_agent_turn(&agent, &session, say("two"))
        .await
        .unwrap();
    let (_, second) = futures::join!(last_turn(first), last_turn(second));
    assert!(
        sent(&b, 0).contains("First answer."),
        "the second turn did not see the first: {}",
        sent(&b, 0)
    );

    // A replica whose clock is behind records an earlier start; the order stays the store's.
    let kind = crate::store::turn_kind(&agent, &session);
    for mut record in a.agents.store.list(&kind).await.unwrap() {
        if record["turn"]["turn_id"] == second.turn_id.as_str() {
            record["turn"]["started_at"] = json!("2000-01-01T00:00:00Z");
            let key = format!("{:012}", record["seq"].as_u64().unwrap());
            a.agents.store.put(&kind, &key, &record).await.unwrap();
        }
    }
    let read = a.agents.get_agent_session(&agent, &session, None).await;
    assert_eq!(inputs(&read.unwrap()), ["\"one\"", "\"two\""]);
}

/// A turn paused for a client tool on A is resumed on B, once.
async fn a_paused_turn_resumes_on_the_other_replica(a: Store, b: Store) {
    let a = harness_on(
        a,
        vec![Reply::Call("get_weather", json!({"city": "Paris"}))],
    );
    let b = harness_on(b, vec![Reply::Text("It is sunny.")]);
    let agent = a
        .agents
        .create_agent(
            serde_json::from_value(json!({"model": "m", "instructions": "",
                "client_tools": [{"name": "get_weather", "parameters": []}]}))
            .unwrap(),
        )
        .await
        .unwrap()
        .agent_id;
    let session = a.agents.create_agent_session(&agent, "tools".into());
    let session = session.await.unwrap().session_id;
    let paused = a
        .agents
        .clone()
        .create_agent_turn(&agent, &session, say("weather?"));
    let paused = last_turn(paused.await.unwrap()).await;
    assert_eq!(paused.output_message.tool_calls.len(), 1);

    let resume = || -> ResumeTurnRequest {
        serde_json::from_value(json!({"tool_responses": [
            {"call_id": "call-1", "tool_name": "get_weather", "content": "sunny"}]}))
        .unwrap()
    };
    let resumed = b
        .agents
        .clone()
        .resume_agent_turn(&agent, &session, &paused.turn_id, resume());
    let done = last_turn(resumed.await.unwrap()).await;
    assert_eq!(done.turn_id, paused.turn_id);
    assert_eq!(done.output_message.content.as_text(""), "It is sunny.");
    assert!(sent(&b, 0).contains("sunny"), "{}", sent(&b, 0));
    let again = a
        .agents
        .clone()
        .resume_agent_turn(&agent, &session, &paused.turn_id, resume())
        .await;
    assert!(again.is_err(), "a finished turn is not resumed twice");
    let read = a.agents.get_agent_session(&agent, &session, None).await;
    assert_eq!(read.unwrap().turns, [done]);
}

#[tokio::test]
async fn sqlite_a_session_goes_on_through_either_replica() {
    let (a, b, _dir) = sqlite_pair().await;
    a_session_goes_on_through_either_replica(a, b).await;
}

#[tokio::test]
async fn sqlite_turns_of_one_session_run_one_after_the_other() {
    let (a, b, _dir) = sqlite_pair().await;
    turns_of_one_session_run_one_after_the_other(a, b).await;
}

#[tokio::test]
async fn sqlite_a_paused_turn_resumes_on_the_other_replica() {
    let (a, b, _dir) = sqlite_pair().await;
    a_paused_turn_resumes_on_the_other_replica(a, b).await;
}

#[tokio::test]
async fn postgres_a_session_goes_on_through_either_replica() {
    if let Some((a, b)) = postgres_pair("agents_replicas").await {
        a_session_goes_on_through_either_replica(a, b).await;
    }
}

#[tokio::test]
async fn postgres_turns_of_one_session_run_one_after_the_other() {
    if let Some((a, b)) = postgres_pair("agents_replicas").await {
        turns_of_one_session_run_one_after_the_other(a, b).await;
    }
}

#[tokio::test]
async fn postgres_a_paused_turn_resumes_on_the_other_replica() {
    if let Some((a, b)) = postgres_pair("agents_replicas").await {
        a_paused_turn_resumes_on_the_other_replica(a, b).await;
    }
}
