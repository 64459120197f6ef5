//! Responses and conversations of one user, as another sees them: not at all. Judged by the
//! default policy (the owner, or an unowned resource), since no test here turns enforcement on.

use std::future::Future;
use std::time::Duration;

use llama_stack_core::ErrorKind;
use llama_stack_core::access::{self, Caller};
use llama_stack_types::User;

use super::*;
use crate::store::{
    ResponseRecord, conversation_not_found, new_id, put_response, response_not_found,
};

async fn as_user<F: Future>(name: &str, future: F) -> F::Output {
    access::with_caller(Caller::User(User::new(name)), future).await
}

/// Asserts `result` is the not-found error a missing resource gets.
fn hidden<T: std::fmt::Debug>(result: Result<T>, expected: &Error) {
    let err = result.expect_err("another user's resource is hidden");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert_eq!(err.message(), expected.message());
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a background response to end, read as `name`.
async fn finished(svc: &Arc<BuiltinResponses>, id: &str, name: &str) -> Value {
    for _ in 0..200 {
        let r = as_user(name, svc.get_response(id)).await.unwrap();
        if r["status"] != "queued" && r["status"] != "in_progress" {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("background response {id} did not finish");
}

#[tokio::test]
async fn another_user_cannot_see_use_or_delete_a_response() {
    let (svc, _) = provider(vec![Reply::Text("hi alice", "stop")]);
    let r = as_user("alice", create(&svc, json!({"model": "m", "input": "hi"})))
        .await
        .unwrap();
    let id = r["id"].as_str().unwrap();
    let missing = response_not_found(id);

    as_user("bob", async {
        hidden(svc.get_response(id).await, &missing);
        hidden(
            svc.list_input_items(id, ListQuery::default()).await,
            &missing,
        );
        hidden(svc.cancel_response(id).await, &missing);
        hidden(svc.delete_response(id).await, &missing);
        assert!(
            ids(&svc.list_responses(ListQuery::default()).await.unwrap()).is_empty(),
            "bob lists none of alice's responses"
        );
        let err = create(
            &svc,
            json!({"model": "m", "input": "more", "previous_response_id": id}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), missing.message());
    })
    .await;

    as_user("alice", async {
        assert_eq!(svc.get_response(id).await.unwrap()["id"], id);
        assert_eq!(
            ids(&svc.list_responses(ListQuery::default()).await.unwrap()),
            [id]
        );
        svc.list_input_items(id, ListQuery::default())
            .await
            .unwrap();
        svc.delete_response(id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_listing_pages_over_the_responses_the_caller_may_read() {
    let replies = (0..5).map(|_| Reply::Text("ok", "stop")).collect();
    let (svc, _) = provider(replies);
    let mut mine = Vec::new();
    for name in ["alice", "bob", "alice", "bob", "alice"] {
        let r = as_user(name, create(&svc, json!({"model": "m", "input": "go"})))
            .await
            .unwrap();
        if name == "alice" {
            mine.push(r["id"].as_str().unwrap().to_string());
        }
    }
    let query = |after: Option<&str>| ListQuery {
        limit: Some(2),
        order: Some("asc".into()),
        after: after.map(str::to_string),
        ..ListQuery::default()
    };
    as_user("alice", async {
        let first = svc.list_responses(query(None)).await.unwrap();
        assert_eq!(ids(&first), mine[..2]);
        assert_eq!(first["has_more"], true);
        let rest = svc.list_responses(query(Some(&mine[1]))).await.unwrap();
        assert_eq!(ids(&rest), mine[2..]);
        assert_eq!(rest["has_more"], false);
    })
    .await;
}

#[tokio::test]
async fn another_user_cannot_reach_a_conversation_or_its_items() {
    let (svc, model) = provider(vec![Reply::Text("ok", "stop")]);
    let conv = as_user(
        "alice",
        svc.create_conversation(body(
            json!({"items": [{"type": "message", "role": "user", "content": "hello"}]}),
        )),
    )
    .await
    .unwrap();
    let id = conv["id"].as_str().unwrap();
    let missing = conversation_not_found(id);
    let items = as_user(
        "alice",
        svc.list_conversation_items(id, ListQuery::default()),
    )
    .await
    .unwrap();
    let item = items["data"][0]["id"].as_str().unwrap().to_string();

    as_user("bob", async {
        hidden(svc.get_conversation(id).await, &missing);
        hidden(
            svc.update_conversation(id, body(json!({"metadata": {"k": "v"}})))
                .await,
            &missing,
        );
        hidden(
            svc.list_conversation_items(id, ListQuery::default()).await,
            &missing,
        );
        hidden(svc.get_conversation_item(id, &item).await, &missing);
        hidden(
            svc.add_conversation_items(
                id,
                body(json!({"items": [{"type": "message", "role": "user", "content": "x"}]})),
            )
            .await,
            &missing,
        );
        hidden(svc.delete_conversation_item(id, &item).await, &missing);
        hidden(svc.delete_conversation(id).await, &missing);
        let err = create(
            &svc,
            json!({"model": "m", "input": "hi", "conversation": id}),
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), missing.message());
    })
    .await;
    assert!(model.requests.lock().unwrap().is_empty());

    as_user("alice", async {
        create(
            &svc,
            json!({"model": "m", "input": "hi", "conversation": id}),
        )
        .await
        .unwrap();
        svc.get_conversation_item(id, &item).await.unwrap();
        svc.update_conversation(id, body(json!({"metadata": {"k": "v"}})))
            .await
            .unwrap();
        svc.delete_conversation(id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn spawned_responses_run_as_their_caller() {
    let (svc, model) = provider(vec![
        Reply::Text("streamed", "stop"),
        Reply::Text("in the background", "stop"),
    ]);
    as_user("alice", async {
        let CreatedResponse::Stream(events) = svc
            .clone()
            .create_response(body(json!({"model": "m", "input": "hi", "stream": true})))
            .await
            .unwrap()
        else {
            panic!("asked for a stream")
        };
        let _: Vec<_> = events.collect().await;
    })
    .await;
    let queued = as_user(
        "alice",
        create(
            &svc,
            json!({"model": "m", "input": "later", "background": true}),
        ),
    )
    .await
    .unwrap();
    let id = queued["id"].as_str().unwrap();
    assert_eq!(finished(&svc, id, "alice").await["status"], "completed");
    hidden(
        as_user("bob", svc.get_response(id)).await,
        &response_not_found(id),
    );
    assert_eq!(
        *model.callers.lock().unwrap(),
        [Some("alice".to_string()), Some("alice".to_string())]
    );
}

#[tokio::test]
async fn a_background_response_resumed_after_a_restart_runs_as_its_owner() {
    let (svc, model) = provider(vec![Reply::Text("resumed", "stop")]);
    let id = new_id("resp");
    let request = json!({"model": "m", "input": "go", "background": true});
    put_response(
        svc.store.as_ref(),
        &ResponseRecord {
            response: json!({"id": id, "object": "response", "status": "in_progress",
                             "created_at": 1, "background": true, "model": "m", "output": []}),
            input: Vec::new(),
            messages: Vec::new(),
            seq: 1,
            request: Some(request),
            owner: Some(User::new("alice")),
        },
    )
    .await
    .unwrap();
    // Start-up has no caller: the response must not run as the server.
    svc.clone().resume_background().await.unwrap();
    assert_eq!(finished(&svc, &id, "alice").await["status"], "completed");
    assert_eq!(*model.callers.lock().unwrap(), [Some("alice".to_string())]);
    hidden(
        as_user("bob", svc.get_response(&id)).await,
        &response_not_found(&id),
    );
}
