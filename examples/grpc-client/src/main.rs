//! A streamed chat completion and a streamed agent turn over the gRPC API of a running Llama
//! Stack server, with the clients `llama-stack-grpc` generates from `proto/`.
//!
//! ```text
//! llama-stack run local                                   # HTTP on :8321, gRPC on :8322
//! cargo run -p grpc-client-example -- meta-llama/Llama-3.2-1B-Instruct
//! ```

use std::io::Write;

use anyhow::{Context, bail};
use clap::Parser;
use llama_stack_grpc::pb;
use pb::agents_service_client::AgentsServiceClient;
use pb::inference_service_client::InferenceServiceClient;
use pb::turn_event_payload::EventType;
use tonic::transport::Channel;

#[derive(Parser)]
#[command(about = "Chat and run an agent turn over the Llama Stack gRPC API")]
struct Args {
    /// The model to use (an LLM the server lists, e.g. `meta-llama/Llama-3.2-1B-Instruct`).
    model: String,
    /// The server's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:8322")]
    url: String,
    /// What to ask, in the chat and in the agent turn.
    #[arg(
        long,
        default_value = "What is the capital of France? Answer in one sentence."
    )]
    prompt: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let channel = Channel::from_shared(args.url.clone())
        .with_context(|| format!("`{}` is not a URL", args.url))?
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot connect to {}; is `llama-stack run` serving gRPC there (server.grpc_port)?",
                args.url
            )
        })?;
    chat(channel.clone(), &args).await?;
    println!();
    agent_turn(channel, &args).await
}

fn user(text: &str) -> pb::Message {
    pb::Message {
        message: Some(pb::message::Message::User(pb::UserMessage {
            content: Some(pb::InterleavedContent {
                content: Some(pb::interleaved_content::Content::Text(text.to_string())),
            }),
            context: None,
        })),
    }
}

/// The text of a content delta, if it carries text.
fn delta_text(delta: Option<&pb::ContentDelta>) -> Option<&str> {
    match delta?.delta.as_ref()? {
        pb::content_delta::Delta::Text(text) => Some(text),
        _ => None,
    }
}

/// The text parts of a message's content, joined.
fn content_text(content: Option<&pb::InterleavedContent>) -> String {
    use pb::content_item::Item;
    use pb::interleaved_content::Content;
    match content.and_then(|c| c.content.as_ref()) {
        None => String::new(),
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Items(list)) => list
            .items
            .iter()
            .filter_map(|i| match &i.item {
                Some(Item::Text(text)) => Some(text.as_str()),
                _ => None,
            })
            .collect(),
    }
}

/// Prints text as it arrives; a stream's tokens would otherwise wait for a newline.
fn print_now(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `InferenceService/StreamChatCompletion`: one event per token, between a start and a
/// complete event.
async fn chat(channel: Channel, args: &Args) -> anyhow::Result<()> {
    let mut inference = InferenceServiceClient::new(channel);
    let request = pb::ChatCompletionRequest {
        model_id: args.model.clone(),
        messages: vec![user(&args.prompt)],
        ..Default::default()
    };
    let mut stream = inference
        .stream_chat_completion(request)
        .await
        .context("starting the chat completion")?
        .into_inner();
    print_now("chat> ")?;
    while let Some(chunk) = stream.message().await.context("reading the chat stream")? {
        let Some(event) = chunk.event else { continue };
        if let Some(text) = delta_text(event.delta.as_ref()) {
            print_now(text)?;
        }
        if event.event_type() == pb::ChatEventType::Complete {
            println!();
            println!("(stop reason: {})", event.stop_reason().as_str_name());
        }
    }
    Ok(())
}

fn step_name(step_type: pb::StepType) -> &'static str {
    match step_type {
        pb::StepType::Inference => "inference",
        pb::StepType::ToolExecution => "tool_execution",
        pb::StepType::ShieldCall => "shield_call",
        pb::StepType::MemoryRetrieval => "memory_retrieval",
        pb::StepType::Unspecified => "unspecified",
    }
}

/// An agent and a session, then `AgentsService/CreateTurn`: the turn's events as they come,
/// the last one carrying the whole turn.
async fn agent_turn(channel: Channel, args: &Args) -> anyhow::Result<()> {
    let mut agents = AgentsServiceClient::new(channel);
    let config = pb::AgentConfig {
        model: args.model.clone(),
        instructions: "You are a helpful assistant. Keep answers short.".into(),
        name: Some("grpc-client-example".into()),
        ..Default::default()
    };
    let agent_id = agents
        .create_agent(pb::CreateAgentRequest {
            agent_config: Some(config),
        })
        .await
        .context("creating the agent (does the distribution serve the agents API?)")?
        .into_inner()
        .agent_id;
    let session_id = agents
        .create_session(pb::CreateSessionRequest {
            agent_id: agent_id.clone(),
            session_name: "grpc-client-example".into(),
        })
        .await
        .context("creating the session")?
        .into_inner()
        .session_id;
    println!("agent {agent_id}, session {session_id}");

    let mut stream = agents
        .create_turn(pb::CreateTurnRequest {
            agent_id: agent_id.clone(),
            session_id,
            messages: vec![user(&args.prompt)],
            ..Default::default()
        })
        .await
        .context("starting the turn")?
        .into_inner();
    let mut answer = None;
    while let Some(chunk) = stream.message().await.context("reading the turn")? {
        let event = chunk.event.and_then(|e| e.payload?.event_type);
        match event {
            Some(EventType::StepStart(step)) => {
                print_now(&format!("[step_start {}] ", step_name(step.step_type())))?;
            }
            Some(EventType::StepProgress(progress)) => {
                if let Some(text) = delta_text(progress.delta.as_ref()) {
                    print_now(text)?;
                }
            }
            Some(EventType::StepComplete(step)) => {
                println!(" [step_complete {}]", step_name(step.step_type()));
            }
            Some(EventType::TurnComplete(done)) => {
                println!("[turn_complete]");
                let message = done.turn.and_then(|t| t.output_message);
                answer = Some(content_text(message.and_then(|m| m.content).as_ref()));
            }
            Some(EventType::TurnAwaitingInput(_)) => {
                bail!("the turn waits for a client tool's result, but this agent offers none")
            }
            None => {}
        }
    }
    let Some(answer) = answer else {
        bail!("the turn stream ended without turn_complete");
    };
    println!("answer: {answer}");
    agents
        .delete_agent(pb::DeleteAgentRequest { agent_id })
        .await
        .context("deleting the agent")?;
    Ok(())
}
