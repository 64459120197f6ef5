//! Two instances over one shared store, as two replicas: a background response whose holder
//! stopped renewing its lease is taken over by exactly one of them, and run once.

use std::sync::Arc;
use std::time::Duration;

use llama_stack_core::RegistryStore;
use llama_stack_memory::lease;
use llama_stack_storage::{PostgresRegistryStore, PostgresSettings, SqliteRegistryStore};

use super::*;
use crate::store::{RESPONSE_KIND, ResponseRecord, new_id, put_response};

fn instance(store: Arc<dyn RegistryStore>) -> (Arc<BuiltinResponses>, Arc<Scripted>) {
    let model = Arc::new(Scripted {
        replies: Mutex::new(vec![Reply::Text("taken over", "stop")].into()),
        ..Scripted::default()
    });
    let svc = BuiltinResponses::new(
        store,
        model.clone(),
        &ApiHandles::default(),
        BuiltinResponsesConfig::default(),
    );
    (Arc::new(svc), model)
}

/// A background response left `in_progress` by `holder`, whose lease ends at `expires_at_ms`.
async fn orphan(store: &dyn RegistryStore, holder: &str, expires_at_ms: i64) -> String {
    let id = new_id("resp");
    put_response(
        store,
        &ResponseRecord {
            response: json!({"id": id, "object": "response", "status": "in_progress",
                             "created_at": 1, "background": true, "model": "m", "output": []}),
            input: Vec::new(),
            messages: Vec::new(),
            seq: 1,
            request: Some(json!({"model": "m", "input": "go", "background": true})),
            owner: None,
        },
    )
    .await
    .unwrap();
    let mut value = store.get(RESPONSE_KIND, &id).await.unwrap().unwrap();
    value["lease"] = json!({"holder": holder, "expires_at_ms": expires_at_ms});
    store.put(RESPONSE_KIND, &id, &value).await.unwrap();
    id
}

async fn ended(store: &dyn RegistryStore, id: &str) -> Value {
    for _ in 0..500 {
        let value = store.get(RESPONSE_KIND, id).await.unwrap().unwrap();
        if !crate::lease::unfinished(&value) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("background response {id} did not finish");
}

async fn taken_over_once(a_store: Arc<dyn RegistryStore>, b_store: Arc<dyn RegistryStore>) {
    let (a, a_model) = instance(a_store.clone());
    let (b, b_model) = instance(b_store);
    let far = i64::MAX / 2;
    let held = orphan(a_store.as_ref(), "holder_alive", far).await;
    let id = orphan(a_store.as_ref(), "holder_dead", 0).await;

    // Both scan at once; the claim under the lock lets one of them have it.
    let (from_a, from_b) = tokio::join!(a.claim_background(), b.claim_background());
    assert_eq!(from_a.unwrap() + from_b.unwrap(), 1);
    let done = ended(a_store.as_ref(), &id).await;
    assert_eq!(done["response"]["status"], "completed", "{done}");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "taken over"
    );
    assert!(
        done.get("lease").is_none(),
        "a finished job holds no lease: {done}"
    );
    let calls = a_model.requests.lock().unwrap().len() + b_model.requests.lock().unwrap().len();
    assert_eq!(calls, 1, "the response ran once");

    // Nothing more to take: the finished one, and the one a live holder renews.
    assert_eq!(a.claim_background().await.unwrap(), 0);
    assert_eq!(b.claim_background().await.unwrap(), 0);
    let still = a_store.get(RESPONSE_KIND, &held).await.unwrap().unwrap();
    assert_eq!(lease::holder_of(&still), Some("holder_alive"));

    // The same claim guards file batches: one record, two claimants, one winner.
    let batch = json!({"id": "vsfb_1", "status": "in_progress",
                       "lease": {"holder": "holder_dead", "expires_at_ms": 0}});
    a_store
        .put("lease_test_batch", "vsfb_1", &batch)
        .await
        .unwrap();
    let running = |r: &Value| r["status"] == "in_progress";
    let (x, y) = tokio::join!(
        lease::claim(
            a_store.as_ref(),
            "lease_test_batch",
            "vsfb_1",
            "holder_a",
            running
        ),
        lease::claim(
            b.store.as_ref(),
            "lease_test_batch",
            "vsfb_1",
            "holder_b",
            running
        ),
    );
    assert_eq!(
        [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|c| c.is_some())
            .count(),
        1
    );
}

#[tokio::test]
async fn a_dead_holders_response_is_taken_over_once_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let a = SqliteRegistryStore::open(&path).await.unwrap();
    let b = SqliteRegistryStore::open(&path).await.unwrap();
    taken_over_once(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn a_dead_holders_response_is_taken_over_once_on_postgresql() {
    let Some(db) = llama_stack_pg_test_server::database("responses_leases") else {
        return;
    };
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
    taken_over_once(Arc::new(a), Arc::new(b)).await;
}

#[tokio::test]
async fn a_holder_that_lost_its_lease_stores_nothing() {
    let (svc, _) = instance(Arc::new(MemoryStore::default()));
    let id = orphan(svc.store.as_ref(), "holder_other", i64::MAX / 2).await;
    let record = crate::store::get_response(svc.store.as_ref(), &id)
        .await
        .unwrap();
    let mut done = record.clone();
    done.response["status"] = json!("completed");
    assert!(!svc.write_held(&done, false).await.unwrap());
    let kept = svc.store.get(RESPONSE_KIND, &id).await.unwrap().unwrap();
    assert_eq!(kept["response"]["status"], "in_progress");
}
