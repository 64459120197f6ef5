//! The response loop over a scripted model: what ends a response, what continues it, what is
//! stored, and the events streamed. The end-to-end tests run the same loop with real clients.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::{Error, MemoryStore, Result};
use llama_stack_inference::openai_compat::{OpenAiChatStream, OpenAiOutput};
use llama_stack_inference::{ChatStream, Embeddings, InferenceApi};
use llama_stack_responses::{CreatedResponse, ListQuery, Responses};
use llama_stack_stack::ApiHandles;
use llama_stack_types::openai::{OpenAiChatCompletion, OpenAiChatCompletionRequest};
use llama_stack_types::{ChatCompletionRequest, EmbeddingsRequest, Model};
use serde_json::{Map, Value, json};

use crate::{BuiltinResponses, BuiltinResponsesConfig};

mod access;
mod replicas;

/// One scripted reply: text, or a tool call, and the finish reason.
enum Reply {
    Text(&'static str, &'static str),
    Call(&'static str, &'static str),
}

#[derive(Default)]
struct Scripted {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Value>>,
    /// Who each request ran as, to check that spawned work keeps its caller.
    callers: Mutex<Vec<Option<String>>>,
}

#[async_trait]
impl InferenceApi for Scripted {
    async fn get_model(&self, model_id: &str) -> Result<Model> {
        if model_id != "m" {
            return Err(Error::not_found(format!("Model '{model_id}' not found")));
        }
        Ok(
            serde_json::from_value(json!({"identifier": "m", "provider_resource_id": "m",
            "provider_id": "scripted", "model_type": "llm"}))
            .unwrap(),
        )
    }

    async fn list_models(&self) -> Vec<Model> {
        Vec::new()
    }

    async fn chat_completion(&self, _request: ChatCompletionRequest) -> Result<ChatStream> {
        Err(Error::unsupported("responses use the OpenAI API"))
    }

    async fn embed(&self, _request: EmbeddingsRequest) -> Result<Embeddings> {
        Err(Error::unsupported("no embeddings here"))
    }

    async fn openai_chat_completion(
        &self,
        request: OpenAiChatCompletionRequest,
    ) -> Result<OpenAiOutput<OpenAiChatCompletion, OpenAiChatStream>> {
        self.requests
            .lock()
            .unwrap()
            .push(serde_json::to_value(&request).unwrap());
        self.callers
            .lock()
            .unwrap()
            .push(llama_stack_core::access::current_user().map(|u| u.principal));
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .expect("a scripted reply");
        let (delta, finish) = match reply {
            Reply::Text(text, finish) => (json!({"content": text}), finish),
            Reply::Call(name, args) => (
                json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": name, "arguments": args}}]}),
                "tool_calls",
            ),
        };
        let chunks = vec![
            Ok(json!({"choices": [{"index": 0, "delta": delta}]})),
            Ok(
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                      "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
            ),
        ];
        Ok(OpenAiOutput::ForwardedStream(
            futures::stream::iter(chunks).boxed(),
        ))
    }
}

fn provider(replies: Vec<Reply>) -> (Arc<BuiltinResponses>, Arc<Scripted>) {
    let model = Arc::new(Scripted {
        replies: Mutex::new(replies.into()),
        ..Scripted::default()
    });
    let responses = BuiltinResponses::new(
        Arc::new(MemoryStore::default()),
        model.clone(),
        &ApiHandles::default(),
        BuiltinResponsesConfig::default(),
    );
    (Arc::new(responses), model)
}

fn body(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

async fn create(svc: &Arc<BuiltinResponses>, request: Value) -> Result<Value> {
    match svc.clone().create_response(body(request)).await? {
        CreatedResponse::Object(object) => Ok(object),
        CreatedResponse::Stream(_) => panic!("asked for an object"),
    }
}

const TOOL: &str =
    r#"{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}"#;

#[tokio::test]
async fn a_function_call_ends_the_response_and_its_output_continues_it() {
    let (svc, model) = provider(vec![
        Reply::Call("get_weather", r#"{"city":"Paris"}"#),
        Reply::Text("Sunny in Paris.", "stop"),
    ]);
    let tool: Value = serde_json::from_str(TOOL).unwrap();
    let first = create(
        &svc,
        json!({"model": "m", "input": "weather?", "tools": [tool],
                                     "instructions": "Be brief."}),
    )
    .await
    .unwrap();
    assert_eq!(first["status"], "completed");
    assert_eq!(first["output"][0]["type"], "function_call");
    assert_eq!(first["output"][0]["call_id"], "call_1");
    assert_eq!(first["usage"]["total_tokens"], 10);
    let second = create(
        &svc,
        json!({"model": "m", "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]}),
    )
    .await
    .unwrap();
    assert_eq!(second["output"][0]["content"][0]["text"], "Sunny in Paris.");
    let sent = model.requests.lock().unwrap()[1]["messages"].clone();
    // No instructions this time; the history is the first response's.
    assert_eq!(sent[0], json!({"role": "user", "content": "weather?"}));
    assert_eq!(sent[1]["tool_calls"][0]["id"], "call_1");
    assert_eq!(sent[2]["role"], "tool");
    assert_eq!(sent[2]["content"], "sunny");
}

#[tokio::test]
async fn a_made_up_tool_is_answered_and_the_loop_goes_on() {
    let (svc, model) = provider(vec![
        Reply::Call("teleport", "{}"),
        Reply::Text("Sorry.", "stop"),
    ]);
    let tool: Value = serde_json::from_str(TOOL).unwrap();
    let r = create(&svc, json!({"model": "m", "input": "go", "tools": [tool]}))
        .await
        .unwrap();
    assert_eq!(r["output"].as_array().unwrap().len(), 1);
    assert_eq!(r["output"][0]["content"][0]["text"], "Sorry.");
    let second = model.requests.lock().unwrap()[1]["messages"].clone();
    assert!(
        second[2]["content"]
            .as_str()
            .unwrap()
            .contains("no tool named 'teleport'")
    );
}

#[tokio::test]
async fn the_token_limit_makes_the_response_incomplete() {
    let (svc, _) = provider(vec![Reply::Text("cut", "length")]);
    let r = create(
        &svc,
        json!({"model": "m", "input": "go", "max_output_tokens": 3}),
    )
    .await
    .unwrap();
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
}

#[tokio::test]
async fn a_stream_numbers_its_events_and_names_the_response() {
    let (svc, _) = provider(vec![Reply::Text("Hello", "stop")]);
    let CreatedResponse::Stream(events) = svc
        .clone()
        .create_response(body(json!({"model": "m", "input": "hi", "stream": true})))
        .await
        .unwrap()
    else {
        panic!("asked for a stream")
    };
    let events: Vec<Value> = events.map(|e| e.unwrap()).collect().await;
    let numbers: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (0..events.len() as u64).collect::<Vec<_>>());
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed");
    let id = last["response"]["id"].clone();
    let added = events
        .iter()
        .find(|e| e["type"] == "response.output_item.added")
        .unwrap();
    assert_eq!(added["response_id"], id);
    // Stored before the completed event went out.
    assert_eq!(
        svc.get_response(id.as_str().unwrap()).await.unwrap()["status"],
        "completed"
    );
}

#[tokio::test]
async fn a_conversation_collects_each_response_in_order() {
    let (svc, model) = provider(vec![Reply::Text("one", "stop"), Reply::Text("two", "stop")]);
    let conv = svc.create_conversation(Map::new()).await.unwrap();
    let id = conv["id"].as_str().unwrap();
    for input in ["a", "b"] {
        create(
            &svc,
            json!({"model": "m", "input": input, "conversation": id}),
        )
        .await
        .unwrap();
    }
    let items = svc
        .list_conversation_items(
            id,
            ListQuery {
                order: Some("asc".into()),
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    let roles: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(
        model.requests.lock().unwrap()[1]["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    svc.delete_conversation(id).await.unwrap();
    assert!(svc.get_conversation(id).await.is_err());
}

#[tokio::test]
async fn only_background_responses_can_be_cancelled() {
    let (svc, _) = provider(vec![Reply::Text("done", "stop")]);
    let r = create(&svc, json!({"model": "m", "input": "go"}))
        .await
        .unwrap();
    let err = svc
        .cancel_response(r["id"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::Conflict);
    let err = create(&svc, json!({"model": "nope", "input": "go"}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), llama_stack_core::ErrorKind::NotFound);
    assert_eq!(err.location().unwrap(), &[json!("body"), json!("model")]);
}
