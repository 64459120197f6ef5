//! Responses and conversations over a stack whose responses provider is an in-test fake: this
//! checks the transport (bodies in, objects and events out, statuses, health), not the
//! provider, which has its own tests.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use llama_stack_core::{Api, Error, RegistryStore, Result};
use llama_stack_grpc::pb;
use llama_stack_responses::{CreatedResponse, ListQuery, Responses};
use llama_stack_stack::{ProviderHandle, ProviderInstance, Services, Stack, StackInfo};
use pb::responses_service_client::ResponsesServiceClient;
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::json_of;

const ANSWER: &str = "Paris is in France.";

/// Answers as the builtin provider would for one known response and one known conversation,
/// and remembers the bodies it was given.
#[derive(Default)]
struct Fake {
    bodies: Mutex<Vec<Map<String, Value>>>,
}

fn response(model: &Value) -> Value {
    json!({"id": "resp_1", "object": "response", "status": "completed", "model": model,
           "output": [{"type": "message", "role": "assistant",
                       "content": [{"type": "output_text", "text": ANSWER}]}],
           "usage": {"input_tokens": 5, "output_tokens": 6, "total_tokens": 11}})
}

fn known(kind: &str, id: &str, known: &str) -> Result<()> {
    if id == known {
        Ok(())
    } else {
        Err(Error::not_found(format!("{kind} with id '{id}' not found")))
    }
}

/// The query as the fake saw it, so the test can check the paging fields arrive.
fn echo_list(query: ListQuery) -> Value {
    json!({"object": "list",
           "data": [{"id": "item_1", "limit": query.limit, "order": query.order,
                     "after": query.after, "before": query.before, "model": query.model}],
           "first_id": "item_1", "last_id": "item_1", "has_more": true})
}

#[tonic::async_trait]
impl Responses for Fake {
    async fn create_response(self: Arc<Self>, body: Map<String, Value>) -> Result<CreatedResponse> {
        self.bodies.lock().unwrap().push(body.clone());
        let done = response(&body["model"]);
        if body.get("stream") != Some(&Value::Bool(true)) {
            return Ok(CreatedResponse::Object(done));
        }
        let events = vec![
            json!({"type": "response.created", "sequence_number": 0,
                   "response": {"id": "resp_1", "status": "in_progress"}}),
            json!({"type": "response.output_text.delta", "sequence_number": 1, "delta": "Paris "}),
            json!({"type": "response.output_text.delta", "sequence_number": 2,
                   "delta": "is in France."}),
            json!({"type": "response.completed", "sequence_number": 3, "response": done}),
        ];
        Ok(CreatedResponse::Stream(
            futures::stream::iter(events.into_iter().map(Ok)).boxed(),
        ))
    }
    async fn get_response(&self, id: &str) -> Result<Value> {
        known("Response", id, "resp_1")?;
        Ok(response(&json!("m")))
    }
    async fn list_responses(&self, query: ListQuery) -> Result<Value> {
        Ok(echo_list(query))
    }
    async fn delete_response(&self, id: &str) -> Result<Value> {
        known("Response", id, "resp_1")?;
        Ok(json!({"id": id, "object": "response", "deleted": true}))
    }
    async fn list_input_items(&self, id: &str, query: ListQuery) -> Result<Value> {
        known("Response", id, "resp_1")?;
        Ok(echo_list(query))
    }
    async fn cancel_response(&self, id: &str) -> Result<Value> {
        known("Response", id, "resp_1")?;
        Err(Error::invalid(
            "Only a background response can be cancelled",
        ))
    }
    async fn resume_background(self: Arc<Self>) -> Result<()> {
        Ok(())
    }
    async fn create_conversation(&self, body: Map<String, Value>) -> Result<Value> {
        Ok(
            json!({"id": "conv_1", "object": "conversation", "created_at": 1,
                  "metadata": body.get("metadata").cloned().unwrap_or(json!({}))}),
        )
    }
    async fn get_conversation(&self, id: &str) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        Ok(json!({"id": id, "object": "conversation", "created_at": 1, "metadata": {}}))
    }
    async fn update_conversation(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        Ok(json!({"id": id, "object": "conversation", "created_at": 1,
                  "metadata": body["metadata"]}))
    }
    async fn delete_conversation(&self, id: &str) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        Ok(json!({"id": id, "object": "conversation.deleted", "deleted": true}))
    }
    async fn list_conversation_items(&self, id: &str, query: ListQuery) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        Ok(echo_list(query))
    }
    async fn add_conversation_items(&self, id: &str, body: Map<String, Value>) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        let items = body["items"].clone();
        Ok(
            json!({"object": "list", "data": items, "first_id": "msg_1", "last_id": "msg_1",
                  "has_more": false}),
        )
    }
    async fn get_conversation_item(&self, id: &str, item_id: &str) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        known("Item", item_id, "msg_1")?;
        Ok(json!({"id": item_id, "type": "message", "role": "user"}))
    }
    async fn delete_conversation_item(&self, id: &str, item_id: &str) -> Result<Value> {
        known("Conversation", id, "conv_1")?;
        known("Item", item_id, "msg_1")?;
        Ok(json!({"id": id, "object": "conversation", "created_at": 1, "metadata": {}}))
    }
}

/// A registry that keeps nothing: the fake needs none.
struct NoStore;

#[tonic::async_trait]
impl RegistryStore for NoStore {
    async fn put(&self, _: &str, _: &str, _: &Value) -> Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &str, _: &str) -> Result<bool> {
        Ok(false)
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Value>> {
        Ok(None)
    }
    async fn list(&self, _: &str) -> Result<Vec<Value>> {
        Ok(Vec::new())
    }
}

/// Serves a stack with `fake` as its responses provider (none when `None`) over gRPC.
async fn start(fake: Option<Arc<Fake>>) -> Channel {
    let handles: Vec<ProviderHandle> = fake
        .into_iter()
        .map(|fake| ProviderHandle {
            api: Api::Responses,
            provider_id: "fake".into(),
            provider_type: "inline::fake".into(),
            redacted_config: json!({}),
            instance: ProviderInstance::Responses(fake),
        })
        .collect();
    let services = Services::over(&handles, Arc::new(NoStore), None);
    let info = StackInfo {
        image_name: "grpc-responses-test".into(),
        apis: handles.iter().map(|h| h.api).collect(),
        ..Default::default()
    };
    let stack = Arc::new(Stack::new(info, handles, services));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(llama_stack_grpc::serve(
        listener,
        stack,
        std::future::pending(),
    ));
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn body(value: Value) -> Option<prost_types::Struct> {
    let Value::Object(map) = value else {
        panic!("a body is an object")
    };
    Some(prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_pb(v))).collect(),
    })
}

fn to_pb(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_pb).collect(),
        }),
        Value::Object(_) => Kind::StructValue(body(value).unwrap()),
    };
    prost_types::Value { kind: Some(kind) }
}

fn json(s: Option<prost_types::Struct>) -> Value {
    json_of(&prost_types::Value {
        kind: Some(prost_types::value::Kind::StructValue(s.unwrap())),
    })
}

#[tokio::test]
async fn create_response_answers_with_the_object_and_refuses_stream_true() {
    let fake = Arc::new(Fake::default());
    let mut client = ResponsesServiceClient::new(start(Some(fake.clone())).await);
    let object = client
        .create_response(pb::CreateResponseRequest {
            body: body(json!({"model": "m", "input": "Where is Paris?"})),
        })
        .await
        .unwrap()
        .into_inner();
    let object = json(object.response);
    assert_eq!(object["id"], "resp_1");
    assert_eq!(object["status"], "completed");
    assert_eq!(object["model"], "m");
    assert_eq!(object["output"][0]["content"][0]["text"], ANSWER);
    assert_eq!(object["usage"]["total_tokens"], 11.0);
    assert_eq!(fake.bodies.lock().unwrap()[0]["input"], "Where is Paris?");

    let refused = client
        .create_response(pb::CreateResponseRequest {
            body: body(json!({"model": "m", "input": "x", "stream": true})),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("StreamResponse"), "{refused:?}");
    assert_eq!(
        fake.bodies.lock().unwrap().len(),
        1,
        "a refused call never reaches the provider"
    );
}

#[tokio::test]
async fn stream_response_streams_numbered_events_ending_with_completed() {
    let fake = Arc::new(Fake::default());
    let mut client = ResponsesServiceClient::new(start(Some(fake.clone())).await);
    let events: Vec<pb::ResponseEvent> = client
        .stream_response(pb::CreateResponseRequest {
            body: body(json!({"model": "m", "input": "Where is Paris?"})),
        })
        .await
        .unwrap()
        .into_inner()
        .map(|event| event.unwrap())
        .collect()
        .await;
    assert_eq!(fake.bodies.lock().unwrap()[0]["stream"], true);
    assert_eq!(events.len(), 4);
    assert!(
        events
            .windows(2)
            .all(|w| w[0].sequence_number < w[1].sequence_number),
        "sequence numbers increase"
    );
    let last = events.last().unwrap();
    assert_eq!(last.r#type, "response.completed");
    let whole = json(last.event.clone());
    assert_eq!(whole["type"], "response.completed");
    assert_eq!(whole["response"]["output"][0]["content"][0]["text"], ANSWER);
    let text: String = events
        .iter()
        .filter(|e| e.r#type == "response.output_text.delta")
        .map(|e| json(e.event.clone())["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, ANSWER);
}

#[tokio::test]
async fn unknown_ids_answer_not_found_with_the_error_kind() {
    let mut client = ResponsesServiceClient::new(start(Some(Arc::default())).await);
    let missing = client
        .get_response(pb::GetResponseRequest {
            response_id: "resp_missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("resp_missing"));
    assert!(
        missing
            .metadata()
            .get(llama_stack_grpc::status::ERROR_KIND_KEY)
            .is_some()
    );
    let missing = client
        .get_conversation_item(pb::GetConversationItemRequest {
            conversation_id: "conv_1".into(),
            item_id: "msg_missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let refused = client
        .cancel_response(pb::CancelResponseRequest {
            response_id: "resp_1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn paging_fields_reach_the_provider_and_lists_come_back_typed() {
    let mut client = ResponsesServiceClient::new(start(Some(Arc::default())).await);
    let page = client
        .list_responses(pb::ListResponsesRequest {
            limit: Some(7),
            order: Some("asc".into()),
            after: Some("resp_0".into()),
            before: None,
            model: Some("m".into()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.first_id.as_deref(), Some("item_1"));
    assert!(page.has_more);
    let seen = json(page.data.into_iter().next());
    assert_eq!(
        seen,
        json!({"id": "item_1", "limit": 7.0, "order": "asc", "after": "resp_0",
               "before": null, "model": "m"})
    );
    let items = client
        .list_input_items(pb::ListInputItemsRequest {
            response_id: "resp_1".into(),
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(items.data.into_iter().next())["limit"], 2.0);
    let deleted = client
        .delete_response(pb::DeleteResponseRequest {
            response_id: "resp_1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            deleted.id.as_str(),
            deleted.object.as_str(),
            deleted.deleted
        ),
        ("resp_1", "response", true)
    );
}

#[tokio::test]
async fn conversations_round_trip_their_bodies() {
    let mut client = ResponsesServiceClient::new(start(Some(Arc::default())).await);
    let created = client
        .create_conversation(pb::CreateConversationRequest {
            body: body(json!({"metadata": {"topic": "geo"}})),
        })
        .await
        .unwrap()
        .into_inner();
    let created = json(created.conversation);
    assert_eq!(created["id"], "conv_1");
    assert_eq!(created["metadata"]["topic"], "geo");
    let updated = client
        .update_conversation(pb::UpdateConversationRequest {
            conversation_id: "conv_1".into(),
            body: body(json!({"metadata": {"topic": "maps"}})),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(updated.conversation)["metadata"]["topic"], "maps");
    let added = client
        .add_conversation_items(pb::AddConversationItemsRequest {
            conversation_id: "conv_1".into(),
            body: body(json!({"items": [{"type": "message", "role": "user", "content": "Hi"}]})),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.data.len(), 1);
    assert_eq!(added.last_id.as_deref(), Some("msg_1"));
    let item = client
        .get_conversation_item(pb::GetConversationItemRequest {
            conversation_id: "conv_1".into(),
            item_id: "msg_1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json(item.item)["role"], "user");
    let deleted = client
        .delete_conversation(pb::DeleteConversationRequest {
            conversation_id: "conv_1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.object, "conversation.deleted");
    assert!(deleted.deleted);
}

#[tokio::test]
async fn health_and_calls_follow_whether_the_stack_serves_responses() {
    let service = || HealthCheckRequest {
        service: "llama_stack.v1.ResponsesService".into(),
    };
    let channel = start(Some(Arc::default())).await;
    let reply = HealthClient::new(channel).check(service()).await.unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::Serving);

    let channel = start(None).await;
    let reply = HealthClient::new(channel.clone())
        .check(service())
        .await
        .unwrap();
    assert_eq!(reply.into_inner().status(), ServingStatus::NotServing);
    let off = ResponsesServiceClient::new(channel)
        .stream_response(pb::CreateResponseRequest {
            body: body(json!({"model": "m", "input": "x"})),
        })
        .await
        .unwrap_err();
    assert_eq!(off.code(), Code::Unimplemented);
    assert!(off.message().contains("providers.responses"), "{off:?}");
}
