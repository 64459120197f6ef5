//! The turn loop (reference §5.1–5.2): input shields, tools, inference iterations, server and
//! client tool calls, output shields, and the events streamed while it runs.
//!
//! A turn runs in its own task and streams its events through a channel. A client that goes
//! away does not stop it: the turn finishes and is saved, so the session stays whole.
//!
//! The task holds its session's lock ([`crate::lock`]) from before it reads the history until
//! the turn is stored, so turns of one session run one after the other on whichever replicas
//! they reach, and each builds on the one before.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use llama_stack_types::Step;
use llama_stack_types::{
    Agent, ChatCompletionRequest, ChatEventType, CompletionMessage, ContentDelta,
    CreateTurnRequest, InterleavedContent, InvokeToolRequest, Message, ResumeTurnRequest,
    RunShieldRequest, SafetyViolation, StepType, StopReason, ToolCall, ToolCallOrText,
    ToolCallParseStatus, ToolConfig, ToolDefinition, ToolResponse, Turn, TurnEvent,
    TurnEventPayload, TurnStreamChunk, ViolationLevel,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use llama_stack_agents::TurnStream;
use llama_stack_core::access::{self, Action};
use llama_stack_core::{Error, Result};
use llama_stack_memory::document_text;

use crate::MetaReferenceAgents;
use crate::messages::{
    assistant, blocked, empty_message, history, param_definitions, turn_messages,
};
use crate::store::{TurnRecord, next_turn_seq, now};

/// The tools a turn offers the model.
struct Tools {
    definitions: Vec<ToolDefinition>,
    client: HashSet<String>,
    /// Name the model calls → the server-side tool it runs.
    server: HashMap<String, ServerTool>,
}

/// A tool the server runs, resolved when the turn starts so that a call goes straight to its
/// group's runtime.
struct ServerTool {
    group: llama_stack_types::ToolGroup,
    /// The name the runtime knows; differs from the model's for Llama builtins (the model's
    /// `brave_search` runs the runtime's `web_search`).
    runtime_name: String,
    /// The args given with the group in the agent's or turn's tool groups.
    args: Map<String, Value>,
}

/// The Llama builtin tool a `builtin::*` group's tool is offered as (§5.1 step 5), so a Llama
/// model sees it in the `Tools:` line of its system prompt and calls it with `<|python_tag|>`.
fn llama_builtin(group_id: &str, tool: &str) -> Option<&'static str> {
    if !group_id.starts_with("builtin::") || group_id == llama_stack_tools::BUILTIN_RAG {
        return None;
    }
    match tool {
        "web_search" | "brave_search" => Some("brave_search"),
        "wolfram_alpha" => Some("wolfram_alpha"),
        "code_interpreter" => Some("code_interpreter"),
        _ => None,
    }
}

impl MetaReferenceAgents {
    async fn turn_tools(
        &self,
        agent: &Agent,
        toolgroups: Option<&[llama_stack_types::AgentToolGroup]>,
    ) -> Result<Tools> {
        let config = &agent.agent_config;
        let groups = toolgroups
            .map(<[_]>::to_vec)
            .or_else(|| config.toolgroups.clone())
            .unwrap_or_default();
        let mut tools = Tools {
            definitions: Vec::new(),
            client: HashSet::new(),
            server: HashMap::new(),
        };
        let add = |tools: &mut Tools, def: ToolDefinition| -> Result<()> {
            if tools
                .definitions
                .iter()
                .any(|d| d.tool_name == def.tool_name)
            {
                return Err(Error::invalid(format!(
                    "Tool {} already exists",
                    def.tool_name
                )));
            }
            tools.definitions.push(def);
            Ok(())
        };
        for group in &groups {
            let name = group.name();
            let (registered, only) = match self.tools.get_tool_group(name).await {
                Ok(registered) => (registered, None),
                Err(err) => match name.rsplit_once('/') {
                    Some((g, t)) => (
                        self.tools.get_tool_group(g).await.map_err(|_| err)?,
                        Some(t.to_string()),
                    ),
                    None => return Err(err),
                },
            };
            let group_id = registered.identifier.clone();
            for tool in self.tools.list_tools(Some(&group_id)).await? {
                if only.as_ref().is_some_and(|t| t != &tool.identifier) {
                    continue;
                }
                let parameters = param_definitions(tool.parameters.iter().map(|p| {
                    (
                        &p.name,
                        &p.parameter_type,
                        &p.description,
                        p.required,
                        &p.default,
                    )
                }));
                let name = llama_builtin(&group_id, &tool.identifier)
                    .map(str::to_string)
                    .unwrap_or_else(|| tool.identifier.clone());
                tools.server.insert(
                    name.clone(),
                    ServerTool {
                        group: registered.clone(),
                        runtime_name: tool.identifier.clone(),
                        args: group.args().cloned().unwrap_or_default(),
                    },
                );
                add(
                    &mut tools,
                    ToolDefinition {
                        tool_name: name,
                        description: Some(tool.description.clone()),
                        parameters: Some(parameters),
                    },
                )?;
            }
        }
        for tool in config.client_tools.iter().flatten() {
            let parameters = param_definitions(tool.parameters.iter().map(|p| {
                (
                    &p.name,
                    &p.parameter_type,
                    &p.description,
                    p.required,
                    &p.default,
                )
            }));
            tools.client.insert(tool.name.clone());
            add(
                &mut tools,
                ToolDefinition {
                    tool_name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: Some(parameters),
                },
            )?;
        }
        Ok(tools)
    }

    /// `POST .../session/{session_id}/turn`: starts a turn and streams its events.
    pub async fn create_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        request: CreateTurnRequest,
    ) -> Result<TurnStream> {
        if request.messages.is_empty() {
            return Err(Error::invalid("messages must contain at least one message")
                .with_location(vec!["body".into(), "messages".into()]));
        }
        for (i, m) in request.messages.iter().enumerate() {
            if !matches!(m, Message::User { .. } | Message::Tool { .. }) {
                return Err(Error::invalid(format!(
                    "messages[{i}] is a {} message; a turn takes user and tool messages",
                    m.role()
                ))
                .with_location(vec!["body".into(), "messages".into(), i.into()]));
            }
        }
        // A turn writes to its session, so it needs leave to update the session.
        let agent = self.agent_record(agent_id, Action::Read).await?;
        self.session_record(&agent, session_id, Action::Update)
            .await?;
        let tools = self
            .turn_tools(&agent, request.toolgroups.as_deref())
            .await?;
        let mut input = request.messages.clone();
        self.attach_documents(&mut input, request.documents.as_deref())
            .await?;
        // The history is read once the session's lock is held (see `TurnRun::load`), so a
        // turn started while another runs builds on it.
        let messages = Vec::new();
        let turn_id = uuid::Uuid::new_v4().to_string();
        let run = TurnRun {
            stack: self.clone(),
            tool_config: request
                .tool_config
                .or(agent.agent_config.tool_config.clone()),
            agent,
            session_id: session_id.to_string(),
            turn: Turn {
                turn_id,
                session_id: session_id.to_string(),
                input_messages: input,
                steps: Vec::new(),
                output_message: empty_message(),
                output_attachments: Some(Vec::new()),
                started_at: now(),
                completed_at: None,
            },
            messages,
            tools,
            toolgroups: request.toolgroups,
            iterations: 0,
            seq: None,
            tx: None,
        };
        Ok(run.spawn(Start::Fresh))
    }

    /// `POST .../turn/{turn_id}/resume`: the client's tool results for a paused turn.
    pub async fn resume_agent_turn(
        self: Arc<Self>,
        agent_id: &str,
        session_id: &str,
        turn_id: &str,
        request: ResumeTurnRequest,
    ) -> Result<TurnStream> {
        let agent = self.agent_record(agent_id, Action::Read).await?;
        self.session_record(&agent, session_id, Action::Update)
            .await?;
        let records = self.turn_records(&agent, session_id).await?;
        if records.is_empty() {
            return Err(Error::invalid(format!(
                "No turns found for session {session_id}"
            )));
        }
        let Some(paused) = records.iter().find(|r| r.turn.turn_id == turn_id).cloned() else {
            return Err(Error::not_found(format!("Turn {turn_id} not found")));
        };
        // Checked here to answer a plain error; checked again under the session's lock, where
        // the turn is read afresh, since another replica may resume it meanwhile.
        if paused.status != "awaiting_input" {
            return Err(not_waiting(turn_id));
        }
        let tools = self
            .turn_tools(&agent, paused.toolgroups.as_deref())
            .await?;
        let run = TurnRun {
            stack: self.clone(),
            tool_config: agent.agent_config.tool_config.clone(),
            agent,
            session_id: session_id.to_string(),
            turn: paused.turn,
            messages: Vec::new(),
            tools,
            toolgroups: paused.toolgroups,
            iterations: paused.iterations,
            seq: paused.seq,
            tx: None,
        };
        Ok(run.spawn(Start::Resume(request.tool_responses)))
    }
}

fn not_waiting(turn_id: &str) -> Error {
    Error::invalid(format!("Turn {turn_id} is not waiting for tool responses"))
}

enum Start {
    Fresh,
    Resume(Vec<ToolResponse>),
}

struct TurnRun {
    stack: Arc<MetaReferenceAgents>,
    agent: Agent,
    session_id: String,
    tool_config: Option<ToolConfig>,
    turn: Turn,
    messages: Vec<Message>,
    tools: Tools,
    toolgroups: Option<Vec<llama_stack_types::AgentToolGroup>>,
    iterations: u32,
    /// The turn's place in its session, known once the session's lock is held.
    seq: Option<u64>,
    tx: Option<mpsc::Sender<Result<TurnStreamChunk>>>,
}

impl TurnRun {
    fn spawn(mut self, start: Start) -> TurnStream {
        let (tx, rx) = mpsc::channel(64);
        self.tx = Some(tx.clone());
        // The turn's tool calls and inference are judged as the user who started it.
        let caller = access::current();
        let turn = access::within(caller, async move {
            let stack = self.stack.clone();
            let locked = stack
                .turn_locks
                .lock(stack.store.as_ref(), &self.agent.agent_id, &self.session_id)
                .await;
            // Held until this block ends: after the turn is stored, or has failed.
            let outcome = match locked {
                Ok(_lock) => match self.load(&start).await {
                    Ok(()) => self.run(start).await,
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            };
            if let Err(err) = outcome {
                llama_stack_core::metrics::agent_turn("failed");
                tracing::warn!(turn = %self.turn.turn_id, error = %err, "Agent turn failed");
                let _ = tx.send(Err(err)).await;
            }
        });
        // Its log lines and upstream requests belong to the request that started the turn.
        tokio::spawn(llama_stack_core::trace::carry(turn));
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    /// Reads what the turn builds on, under the session's lock: the session (it may have been
    /// deleted while the turn waited), the turns stored so far and, to resume, the paused turn
    /// as stored now.
    async fn load(&mut self, start: &Start) -> Result<()> {
        self.stack
            .session_record(&self.agent, &self.session_id, Action::Update)
            .await?;
        let records = self
            .stack
            .turn_records(&self.agent, &self.session_id)
            .await?;
        match start {
            Start::Fresh => {
                self.seq = Some(next_turn_seq(&records));
                let mut messages = history(&records);
                messages.extend(self.turn.input_messages.iter().cloned());
                self.messages = messages;
            }
            Start::Resume(_) => {
                let turn_id = self.turn.turn_id.clone();
                let (paused, earlier): (Vec<TurnRecord>, Vec<TurnRecord>) =
                    records.into_iter().partition(|r| r.turn.turn_id == turn_id);
                let paused = paused
                    .into_iter()
                    .find(|r| r.status == "awaiting_input")
                    .ok_or_else(|| not_waiting(&turn_id))?;
                let mut messages = history(&earlier);
                messages.extend(turn_messages(&paused.turn));
                self.messages = messages;
                self.turn = paused.turn;
                self.turn.completed_at = None;
                self.iterations = paused.iterations;
                self.seq = paused.seq;
            }
        }
        Ok(())
    }

    async fn emit(&self, payload: TurnEventPayload) {
        if let Some(tx) = &self.tx {
            // A client that left does not stop the turn.
            let _ = tx
                .send(Ok(TurnStreamChunk {
                    event: TurnEvent { payload },
                }))
                .await;
        }
    }

    fn step_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    async fn run(&mut self, start: Start) -> Result<()> {
        match start {
            Start::Fresh => {
                let shields = self
                    .agent
                    .agent_config
                    .input_shields
                    .clone()
                    .unwrap_or_default();
                let input = self.turn.input_messages.clone();
                if let Some(violation) = self.shields(&shields, &input, "user-input").await? {
                    return self.finish(blocked(&violation)).await;
                }
            }
            Start::Resume(responses) => {
                let calls = self.turn.output_message.tool_calls.clone();
                let step = Step::ToolExecution {
                    turn_id: self.turn.turn_id.clone(),
                    step_id: Self::step_id(),
                    started_at: Some(now()),
                    completed_at: Some(now()),
                    tool_calls: calls,
                    tool_responses: responses.clone(),
                };
                self.emit(TurnEventPayload::StepComplete {
                    step_type: StepType::ToolExecution,
                    step_id: step.step_id().to_string(),
                    step_details: step.clone(),
                })
                .await;
                self.turn.steps.push(step);
                for r in responses {
                    self.messages.push(Message::Tool {
                        call_id: r.call_id,
                        content: r.content,
                        tool_name: None,
                    });
                }
            }
        }
        let max = self.agent.agent_config.max_infer_iters.unwrap_or(10).max(1);
        loop {
            let mut message = self.infer().await?;
            self.iterations += 1;
            if self.iterations >= max {
                message.stop_reason = StopReason::EndOfTurn;
                return self.finish_checked(message).await;
            }
            if message.stop_reason == StopReason::OutOfTokens {
                return self.finish_checked(message).await;
            }
            if message.tool_calls.is_empty() {
                if message.stop_reason == StopReason::EndOfTurn {
                    return self.finish_checked(message).await;
                }
                self.messages.push(assistant(&message));
                continue;
            }
            self.messages.push(assistant(&message));
            let (client, server): (Vec<ToolCall>, Vec<ToolCall>) = message
                .tool_calls
                .iter()
                .cloned()
                .partition(|c| self.tools.client.contains(&c.tool_name));
            for call in server {
                self.execute(call).await;
            }
            if !client.is_empty() {
                let pending = CompletionMessage {
                    role: "assistant".into(),
                    content: InterleavedContent::Text(String::new()),
                    stop_reason: StopReason::EndOfMessage,
                    tool_calls: client,
                };
                return self.pause(pending).await;
            }
        }
    }

    /// One inference step, its deltas streamed as `step_progress`.
    async fn infer(&mut self) -> Result<CompletionMessage> {
        let step_id = Self::step_id();
        let started_at = now();
        self.emit(TurnEventPayload::StepStart {
            step_type: StepType::Inference,
            step_id: step_id.clone(),
            metadata: Map::new(),
        })
        .await;
        let config = &self.agent.agent_config;
        let mut messages = Vec::with_capacity(self.messages.len() + 1);
        if !config.instructions.is_empty() {
            messages.push(Message::system(&config.instructions));
        }
        messages.extend(self.messages.iter().cloned());
        let request = ChatCompletionRequest {
            model_id: config.model.clone(),
            messages,
            sampling_params: config.sampling_params.clone(),
            tools: (!self.tools.definitions.is_empty()).then(|| self.tools.definitions.clone()),
            tool_choice: None,
            tool_prompt_format: None,
            response_format: config.response_format.clone(),
            stream: Some(true),
            logprobs: None,
            tool_config: self.tool_config.clone(),
        };
        let mut stream = self.stack.inference.chat_completion(request).await?;
        let (mut text, mut raw_tool_text) = (String::new(), String::new());
        let mut calls = Vec::new();
        let mut stop_reason = StopReason::EndOfTurn;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if chunk.event.event_type == ChatEventType::Complete {
                stop_reason = chunk.event.stop_reason.unwrap_or(StopReason::EndOfTurn);
            }
            let delta = chunk.event.delta;
            match &delta {
                ContentDelta::Text { text: t } if t.is_empty() => continue,
                ContentDelta::Text { text: t } => text.push_str(t),
                ContentDelta::ToolCall {
                    tool_call,
                    parse_status,
                } => match (parse_status, tool_call) {
                    (ToolCallParseStatus::Succeeded, ToolCallOrText::Call(call)) => {
                        calls.push(call.clone())
                    }
                    (ToolCallParseStatus::InProgress, ToolCallOrText::Text(t)) => {
                        raw_tool_text.push_str(t)
                    }
                    _ => {}
                },
                ContentDelta::Image { .. } => {}
            }
            self.emit(TurnEventPayload::StepProgress {
                step_type: StepType::Inference,
                step_id: step_id.clone(),
                delta,
            })
            .await;
        }
        let content = if calls.is_empty() {
            text + &raw_tool_text
        } else {
            String::new()
        };
        let message = CompletionMessage {
            role: "assistant".into(),
            content: InterleavedContent::Text(content),
            stop_reason,
            tool_calls: calls,
        };
        let step = Step::Inference {
            turn_id: self.turn.turn_id.clone(),
            step_id: step_id.clone(),
            started_at: Some(started_at),
            completed_at: Some(now()),
            model_response: message.clone(),
        };
        self.emit(TurnEventPayload::StepComplete {
            step_type: StepType::Inference,
            step_id,
            step_details: step.clone(),
        })
        .await;
        self.turn.steps.push(step);
        Ok(message)
    }

    /// Runs one server-side tool call as a `tool_execution` step.
    async fn execute(&mut self, call: ToolCall) {
        let step_id = Self::step_id();
        let started_at = now();
        self.emit(TurnEventPayload::StepStart {
            step_type: StepType::ToolExecution,
            step_id: step_id.clone(),
            metadata: Map::new(),
        })
        .await;
        self.emit(TurnEventPayload::StepProgress {
            step_type: StepType::ToolExecution,
            step_id: step_id.clone(),
            delta: ContentDelta::ToolCall {
                tool_call: ToolCallOrText::Call(call.clone()),
                parse_status: ToolCallParseStatus::InProgress,
            },
        })
        .await;
        let mut kwargs = match &call.arguments {
            Value::Object(map) => map.clone(),
            _ => Map::new(),
        };
        kwargs.insert("session_id".into(), Value::String(self.session_id.clone()));
        let result = match self.tools.server.get(&call.tool_name) {
            Some(tool) => {
                kwargs.extend(tool.args.clone());
                self.stack
                    .tools
                    .invoke_group_tool(&tool.group, &tool.runtime_name, &kwargs)
                    .await
            }
            // A name the turn did not offer: the tool runtime says what it knows.
            None => {
                self.stack
                    .tools
                    .invoke_tool(InvokeToolRequest {
                        tool_name: call.tool_name.clone(),
                        kwargs,
                    })
                    .await
            }
        };
        // Tool names the model made up share one label.
        let tool = match self.tools.server.contains_key(&call.tool_name) {
            true => call.tool_name.as_str(),
            false => "unknown",
        };
        let ok = matches!(&result, Ok(r) if r.error_message.is_none());
        llama_stack_core::metrics::tool_call(tool, ok);
        // A failing tool is reported to the model, which may recover, rather than ending the turn.
        let (content, metadata) = match result {
            Ok(r) => match (r.content, r.error_message) {
                (Some(content), _) => (content, r.metadata),
                (None, Some(error)) => (Value::String(format!("Error: {error}")), r.metadata),
                (None, None) => (
                    Value::String(format!("Tool {} does not have any content", call.tool_name)),
                    r.metadata,
                ),
            },
            Err(err) => (Value::String(format!("Error: {}", err.message())), None),
        };
        let content: InterleavedContent = serde_json::from_value(content.clone())
            .unwrap_or_else(|_| InterleavedContent::Text(content.to_string()));
        let response = ToolResponse {
            call_id: call.call_id.clone(),
            tool_name: call.tool_name.clone(),
            content: content.clone(),
            metadata: metadata.and_then(|m| m.as_object().cloned()),
        };
        let step = Step::ToolExecution {
            turn_id: self.turn.turn_id.clone(),
            step_id: step_id.clone(),
            started_at: Some(started_at),
            completed_at: Some(now()),
            tool_calls: vec![call.clone()],
            tool_responses: vec![response],
        };
        self.emit(TurnEventPayload::StepComplete {
            step_type: StepType::ToolExecution,
            step_id,
            step_details: step.clone(),
        })
        .await;
        self.turn.steps.push(step);
        self.messages.push(Message::Tool {
            call_id: call.call_id,
            content,
            tool_name: None,
        });
    }

    /// Runs `shields` over `messages` as one `shield_call` step; returns an `error` violation.
    async fn shields(
        &mut self,
        shields: &[String],
        messages: &[Message],
        touchpoint: &str,
    ) -> Result<Option<SafetyViolation>> {
        if shields.is_empty() {
            return Ok(None);
        }
        let step_id = Self::step_id();
        let started_at = now();
        let mut metadata = Map::new();
        metadata.insert("touchpoint".into(), Value::String(touchpoint.into()));
        self.emit(TurnEventPayload::StepStart {
            step_type: StepType::ShieldCall,
            step_id: step_id.clone(),
            metadata,
        })
        .await;
        let wire: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        let checks = shields.iter().map(|shield_id| {
            self.stack.safety.run_shield(RunShieldRequest {
                shield_id: shield_id.clone(),
                messages: wire.clone(),
                params: None,
            })
        });
        let mut blocking = None;
        for (shield_id, outcome) in shields.iter().zip(futures::future::join_all(checks).await) {
            match outcome?.violation {
                Some(v) if v.violation_level == ViolationLevel::Error => {
                    blocking.get_or_insert(v);
                }
                Some(v) => tracing::warn!(shield = %shield_id, violation = ?v.metadata,
                    "Shield reported a non-blocking violation"),
                None => {}
            }
        }
        let step = Step::ShieldCall {
            turn_id: self.turn.turn_id.clone(),
            step_id: step_id.clone(),
            started_at: Some(started_at),
            completed_at: Some(now()),
            violation: blocking.clone(),
        };
        self.emit(TurnEventPayload::StepComplete {
            step_type: StepType::ShieldCall,
            step_id,
            step_details: step.clone(),
        })
        .await;
        self.turn.steps.push(step);
        Ok(blocking)
    }

    /// Output shields, then the end of the turn.
    async fn finish_checked(&mut self, message: CompletionMessage) -> Result<()> {
        let shields = self
            .agent
            .agent_config
            .output_shields
            .clone()
            .unwrap_or_default();
        let mut checked = self.turn.input_messages.clone();
        checked.push(assistant(&message));
        if let Some(violation) = self.shields(&shields, &checked, "assistant-output").await? {
            return self.finish(blocked(&violation)).await;
        }
        self.finish(message).await
    }

    async fn finish(&mut self, message: CompletionMessage) -> Result<()> {
        self.turn.output_message = message;
        self.turn.completed_at = Some(now());
        self.save("complete").await?;
        llama_stack_core::metrics::agent_turn("complete");
        self.emit(TurnEventPayload::TurnComplete {
            turn: self.turn.clone(),
        })
        .await;
        Ok(())
    }

    async fn pause(&mut self, message: CompletionMessage) -> Result<()> {
        self.turn.output_message = message;
        self.turn.completed_at = Some(now());
        self.save("awaiting_input").await?;
        llama_stack_core::metrics::agent_turn("awaiting_input");
        self.emit(TurnEventPayload::TurnAwaitingInput {
            turn: self.turn.clone(),
        })
        .await;
        Ok(())
    }

    async fn save(&self, status: &str) -> Result<()> {
        let record = TurnRecord {
            turn: self.turn.clone(),
            status: status.into(),
            iterations: self.iterations,
            toolgroups: self.toolgroups.clone(),
            seq: self.seq,
        };
        self.stack
            .save_turn(&self.agent, &self.session_id, &record)
            .await
    }
}

impl MetaReferenceAgents {
    /// Turn documents (0.2.x): each document's text (inline, or loaded from its URL with the
    /// RAG runtime's fetch policy and extracted by MIME type) is appended to the last input
    /// message.
    async fn attach_documents(
        &self,
        messages: &mut [Message],
        documents: Option<&[llama_stack_types::Document]>,
    ) -> Result<()> {
        let Some(documents) = documents.filter(|d| !d.is_empty()) else {
            return Ok(());
        };
        let mut texts = Vec::new();
        for (i, doc) in documents.iter().enumerate() {
            let rag = llama_stack_types::RagDocument {
                document_id: format!("documents[{i}]"),
                content: doc.content.clone(),
                mime_type: Some(doc.mime_type.clone()).filter(|m| !m.is_empty()),
                metadata: Map::new(),
            };
            texts.push(document_text(&rag, &self.tools.fetch_policy()).await?);
        }
        if let Some(Message::User { content, .. } | Message::Tool { content, .. }) =
            messages.last_mut()
        {
            let mut text = content.as_text(" ");
            for t in texts {
                text.push('\n');
                text.push_str(&t);
            }
            *content = InterleavedContent::Text(text);
        }
        Ok(())
    }
}
