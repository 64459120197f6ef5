//! The turn loop over scripted APIs: the model's replies, the shield's verdicts and the tool
//! runtime's answers are set by each test, and the events and stored turn are checked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use llama_stack_core::{Error, Result};
use llama_stack_inference::{ChatStream, Embeddings, InferenceApi};
use llama_stack_safety::SafetyApi;
use llama_stack_tools::{FetchPolicy, ToolsApi};
use llama_stack_types::{
    ChatCompletionRequest, ChatCompletionResponseStreamChunk, ChatEventType, ContentDelta,
    CreateTurnRequest, EmbeddingsRequest, InvokeToolRequest, Model, RunShieldRequest,
    RunShieldResponse, SafetyViolation, Shield, Step, StopReason, Tool, ToolCall, ToolCallOrText,
    ToolCallParseStatus, ToolGroup, ToolInvocationResult, Turn, TurnEventPayload, ViolationLevel,
};
use serde_json::{Map, Value, json};

use crate::{MemoryStore, MetaReferenceAgents};

mod access;
mod replicas;

/// One scripted model reply: text, or one tool call.
enum Reply {
    Text(&'static str),
    Call(&'static str, Value),
}

#[derive(Default)]
struct ScriptedInference {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<ChatCompletionRequest>>,
    /// How long each reply takes, for tests of turns that overlap.
    delay_ms: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl InferenceApi for ScriptedInference {
    async fn get_model(&self, model_id: &str) -> Result<Model> {
        Ok(serde_json::from_value(json!({
            "identifier": model_id, "provider_resource_id": model_id, "provider_id": "scripted",
            "model_type": "llm"
        }))
        .unwrap())
    }

    async fn list_models(&self) -> Vec<Model> {
        vec![]
    }

    async fn openai_chat_completion(
        &self,
        _request: llama_stack_types::openai::OpenAiChatCompletionRequest,
    ) -> Result<
        llama_stack_inference::openai_compat::OpenAiOutput<
            llama_stack_types::openai::OpenAiChatCompletion,
            llama_stack_inference::openai_compat::OpenAiChatStream,
        >,
    > {
        Err(Error::unsupported("the turn loop uses the classic API"))
    }

    async fn chat_completion(&self, request: ChatCompletionRequest) -> Result<ChatStream> {
        self.requests.lock().unwrap().push(request);
        let delay = self.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        let reply = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| Error::internal("the script has no more replies"))?;
        let delta = match reply {
            Reply::Text(text) => ContentDelta::Text { text: text.into() },
            Reply::Call(name, arguments) => ContentDelta::ToolCall {
                tool_call: ToolCallOrText::Call(ToolCall {
                    call_id: "call-1".into(),
                    tool_name: name.into(),
                    arguments,
                    arguments_json: None,
                }),
                parse_status: ToolCallParseStatus::Succeeded,
            },
        };
        let mut complete = ChatCompletionResponseStreamChunk::new(
            ChatEventType::Complete,
            ContentDelta::Text {
                text: String::new(),
            },
        );
        complete.event.stop_reason = Some(StopReason::EndOfTurn);
        let chunks = vec![
            Ok(ChatCompletionResponseStreamChunk::new(
                ChatEventType::Progress,
                delta,
            )),
            Ok(complete),
        ];
        Ok(futures::stream::iter(chunks).boxed())
    }

    async fn embed(&self, _request: EmbeddingsRequest) -> Result<Embeddings> {
        Err(Error::unsupported("no embeddings in this script"))
    }
}

/// Flags any message containing `forbidden`.
struct WordShield;

#[async_trait]
impl SafetyApi for WordShield {
    async fn get_shield(&self, identifier: &str) -> Result<Shield> {
        Ok(serde_json::from_value(json!({
            "identifier": identifier, "provider_resource_id": identifier,
            "provider_id": "scripted", "type": "shield"
        }))
        .unwrap())
    }

    async fn run_shield(&self, request: RunShieldRequest) -> Result<RunShieldResponse> {
        let flagged = serde_json::to_string(&request.messages)
            .unwrap()
            .contains("forbidden");
        Ok(RunShieldResponse {
            violation: flagged.then(|| SafetyViolation {
                violation_level: ViolationLevel::Error,
                user_message: Some("I can't answer that.".into()),
                metadata: Map::new(),
            }),
        })
    }
}

/// One group, `calc`, with one tool, `add`, that records its calls.
#[derive(Default)]
struct Calculator {
    calls: Mutex<Vec<(String, Map<String, Value>)>>,
    /// Who each call ran as, to check that a turn keeps its caller.
    callers: Mutex<Vec<Option<String>>>,
}

fn calc_group() -> ToolGroup {
    ToolGroup {
        identifier: "calc".into(),
        provider_resource_id: "calc".into(),
        provider_id: "scripted".into(),
        resource_type: "tool_group".into(),
        mcp_endpoint: None,
        args: None,
        owner: None,
    }
}

#[async_trait]
impl ToolsApi for Calculator {
    async fn get_tool_group(&self, id: &str) -> Result<ToolGroup> {
        match id {
            "calc" => Ok(calc_group()),
            other => Err(Error::not_found(format!("Tool group '{other}' not found"))),
        }
    }

    async fn list_tools(&self, _toolgroup_id: Option<&str>) -> Result<Vec<Tool>> {
        Ok(vec![
            serde_json::from_value(json!({
                "identifier": "add", "provider_resource_id": "add", "provider_id": "scripted",
                "type": "tool", "toolgroup_id": "calc", "description": "Adds a and b",
                "parameters": [
                    {"name": "a", "parameter_type": "integer", "description": "a", "required": true},
                    {"name": "b", "parameter_type": "integer", "description": "b", "required": true}
                ]
            }))
            .unwrap(),
        ])
    }

    async fn invoke_tool(&self, request: InvokeToolRequest) -> Result<ToolInvocationResult> {
        self.invoke_group_tool(&calc_group(), &request.tool_name, &request.kwargs)
            .await
    }

    async fn list_mcp_tools(
        &self,
        _server_url: &str,
        _headers: &Map<String, Value>,
    ) -> Result<Vec<llama_stack_types::ToolDef>> {
        Err(Error::unsupported("no MCP servers here"))
    }

    async fn invoke_mcp_tool(
        &self,
        _server_url: &str,
        _headers: &Map<String, Value>,
        _tool: &str,
        _arguments: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        Err(Error::unsupported("no MCP servers here"))
    }

    async fn invoke_group_tool(
        &self,
        _group: &ToolGroup,
        tool: &str,
        kwargs: &Map<String, Value>,
    ) -> Result<ToolInvocationResult> {
        self.calls
            .lock()
            .unwrap()
            .push((tool.to_string(), kwargs.clone()));
        self.callers
            .lock()
            .unwrap()
            .push(llama_stack_core::access::current_user().map(|u| u.principal));
        let sum = kwargs["a"].as_i64().unwrap_or(0) + kwargs["b"].as_i64().unwrap_or(0);
        Ok(ToolInvocationResult {
            content: Some(json!(sum.to_string())),
            error_message: None,
            error_code: None,
            metadata: None,
        })
    }

    fn fetch_policy(&self) -> FetchPolicy {
        FetchPolicy::default()
    }
}

struct Harness {
    agents: Arc<MetaReferenceAgents>,
    inference: Arc<ScriptedInference>,
    tools: Arc<Calculator>,
}

fn harness(replies: Vec<Reply>) -> Harness {
    harness_on(Arc::new(MemoryStore::default()), replies)
}

/// A provider over `store`, as one replica of the server builds it.
fn harness_on(store: Arc<dyn llama_stack_core::RegistryStore>, replies: Vec<Reply>) -> Harness {
    let inference = Arc::new(ScriptedInference::default());
    inference.replies.lock().unwrap().extend(replies);
    let tools = Arc::new(Calculator::default());
    let agents = Arc::new(MetaReferenceAgents::new(
        store,
        inference.clone(),
        Arc::new(WordShield),
        tools.clone(),
    ));
    Harness {
        agents,
        inference,
        tools,
    }
}

/// Runs one turn of a new agent and session; returns the step types streamed and the turn.
async fn run_turn(h: &Harness, config: Value, user: &str) -> (Vec<String>, Turn) {
    let agent = h
        .agents
        .create_agent(serde_json::from_value(config).unwrap())
        .await
        .unwrap();
    let session = h
        .agents
        .create_agent_session(&agent.agent_id, "test".into())
        .await
        .unwrap();
    let request: CreateTurnRequest = serde_json::from_value(json!({
        "messages": [{"role": "user", "content": user}], "stream": true
    }))
    .unwrap();
    let mut events = h
        .agents
        .clone()
        .create_agent_turn(&agent.agent_id, &session.session_id, request)
        .await
        .unwrap();
    let mut steps = Vec::new();
    let mut done = None;
    while let Some(event) = events.next().await {
        match event.unwrap().event.payload {
            TurnEventPayload::StepComplete { step_details, .. } => steps.push(
                serde_json::to_value(step_details.step_type())
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            TurnEventPayload::TurnComplete { turn } => done = Some(turn),
            _ => {}
        }
    }
    let turn = done.expect("the turn completes");
    let stored = h
        .agents
        .get_agent_turn(&agent.agent_id, &session.session_id, &turn.turn_id)
        .await
        .unwrap();
    assert_eq!(stored, turn, "the stored turn is the streamed one");
    (steps, turn)
}

#[tokio::test]
async fn a_server_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let h = harness(vec![
        Reply::Call("add", json!({"a": 1, "b": 2})),
        Reply::Text("The sum is 3."),
    ]);
    let (steps, turn) = run_turn(
        &h,
        json!({"model": "m", "instructions": "Be brief.", "toolgroups": ["calc"]}),
        "What is 1 + 2?",
    )
    .await;
    assert_eq!(steps, ["inference", "tool_execution", "inference"]);
    assert_eq!(turn.output_message.content.as_text(""), "The sum is 3.");

    let calls = h.tools.calls.lock().unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].0, "add");
    assert_eq!(calls[0].1["a"], 1);
    assert!(calls[0].1.contains_key("session_id"), "{:?}", calls[0].1);

    let requests = h.inference.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let offered: Vec<&str> = requests[0]
        .tools
        .iter()
        .flatten()
        .map(|t| t.tool_name.as_str())
        .collect();
    assert_eq!(offered, ["add"]);
    let second = serde_json::to_string(&requests[1].messages).unwrap();
    assert!(
        second.contains("\"tool\""),
        "the tool result is sent back: {second}"
    );
    let Step::ToolExecution { tool_responses, .. } = &turn.steps[1] else {
        panic!("the second step runs the tool: {:?}", turn.steps[1]);
    };
    assert_eq!(tool_responses[0].content.as_text(""), "3");
}

#[tokio::test]
async fn an_input_shield_violation_ends_the_turn_before_inference() {
    let h = harness(vec![Reply::Text("never sent")]);
    let (steps, turn) = run_turn(
        &h,
        json!({"model": "m", "instructions": "", "input_shields": ["words"]}),
        "Tell me something forbidden",
    )
    .await;
    assert_eq!(steps, ["shield_call"]);
    assert_eq!(
        turn.output_message.content.as_text(""),
        "I can't answer that."
    );
    assert!(h.inference.requests.lock().unwrap().is_empty());
    let Step::ShieldCall { violation, .. } = &turn.steps[0] else {
        panic!("a shield call step: {:?}", turn.steps[0]);
    };
    assert!(violation.is_some());
}

#[tokio::test]
async fn a_passing_shield_lets_the_model_answer() {
    let h = harness(vec![Reply::Text("Hello!")]);
    let (steps, turn) = run_turn(
        &h,
        json!({"model": "m", "instructions": "", "input_shields": ["words"], "output_shields": ["words"]}),
        "Hi",
    )
    .await;
    assert_eq!(steps, ["shield_call", "inference", "shield_call"]);
    assert_eq!(turn.output_message.content.as_text(""), "Hello!");
}

#[tokio::test]
async fn two_turns_started_together_see_each_other_in_order() {
    let h = harness(vec![
        Reply::Text("First answer."),
        Reply::Text("Second answer."),
    ]);
    let agent = h
        .agents
        .create_agent(serde_json::from_value(json!({"model": "m", "instructions": ""})).unwrap())
        .await
        .unwrap();
    let session = h
        .agents
        .create_agent_session(&agent.agent_id, "together".into())
        .await
        .unwrap();
    let turn = |text: &str| -> CreateTurnRequest {
        serde_json::from_value(json!({"messages": [{"role": "user", "content": text}],
                                      "stream": true}))
        .unwrap()
    };
    // Both start before either runs: the second's history must still hold the first turn.
    let first = h
        .agents
        .clone()
        .create_agent_turn(&agent.agent_id, &session.session_id, turn("one"))
        .await
        .unwrap();
    let second = h
        .agents
        .clone()
        .create_agent_turn(&agent.agent_id, &session.session_id, turn("two"))
        .await
        .unwrap();
    let _: Vec<_> = first.collect().await;
    let _: Vec<_> = second.collect().await;
    let requests = h.inference.requests.lock().unwrap();
    assert_eq!(requests.len(), 2);
    let texts: Vec<String> = requests[1]
        .messages
        .iter()
        .map(|m| serde_json::to_value(m).unwrap()["content"].to_string())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("First answer.")),
        "the second turn did not see the first: {texts:?}"
    );
}
