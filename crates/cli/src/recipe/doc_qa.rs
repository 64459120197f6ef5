//! `llama-stack recipe doc-qa`: builds the distribution in-process, ingests the documents,
//! then answers each question with an agent that searches them through `builtin::rag`,
//! streaming the answer to stdout followed by a `Sources:` line.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use llama_stack_stack::Stack;
use llama_stack_types::{
    AgentConfig, ContentDelta, CreateTurnRequest, Message, ModelType, Step, StepType,
    TurnEventPayload,
};
use serde_json::{Value, json};

use super::DocQaArgs;
use super::documents::{self, DocSource};
use super::{images, setup};

/// The system prompt: answers come from the retrieved passages, with the documents named.
const INSTRUCTIONS: &str = "You answer questions about a collection of documents. For every \
question, call the knowledge_search tool to retrieve the relevant passages, and answer only \
from what it returns. Cite the documents you used by their document_id in square brackets, \
e.g. [guide.md]. If the passages do not contain the answer, say that the documents do not \
say, rather than guessing.";

pub fn run(args: DocQaArgs) -> anyhow::Result<ExitCode> {
    let env = crate::parse_env(&args.env)?;
    // Local problems (a mistyped folder) are reported before the stack is built.
    let docs = documents::collect(&args.docs)?;
    let fingerprint = documents::fingerprint(&docs)?;
    let path = llama_stack_distribution::resolve_run_config(&args.distribution)
        .map_err(anyhow::Error::msg)?;
    let loaded = llama_stack_distribution::load(&path, &env)
        .map_err(|errors| anyhow!("{} has problems:\n{errors}", path.display()))?;
    for entry in &loaded.disabled {
        tracing::info!(entry = %entry, "Disabled by the environment");
    }
    let declared: Vec<String> = loaded
        .models
        .iter()
        .map(|m| m.request.model_id.clone())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stack = runtime.block_on(async {
        llama_stack_distribution::build(loaded)
            .await
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("building the stack from {}", path.display()))
    })?;
    let stack = stack.stack;
    let cleanup = Cleanup::watch(&runtime, stack.clone());
    let prepared = runtime.block_on(prepare(
        &stack,
        &args,
        &docs,
        &fingerprint,
        &declared,
        &path,
        &cleanup,
    ));
    let result = prepared.and_then(|qa| answer_all(&runtime, &stack, &qa, &args.questions));
    runtime.block_on(cleanup.finish(&stack));
    result.map(|()| ExitCode::SUCCESS)
}

/// An agent and session ready for questions.
struct QaSession {
    agent_id: String,
    session_id: String,
}

async fn prepare(
    stack: &Arc<Stack>,
    args: &DocQaArgs,
    docs: &[DocSource],
    fingerprint: &str,
    declared: &[String],
    config: &std::path::Path,
    cleanup: &Cleanup,
) -> anyhow::Result<QaSession> {
    let model = setup::pick_model(
        stack,
        args.model.as_deref(),
        ModelType::Llm,
        declared,
        "model",
    )
    .await?;
    setup::check_agent_support(stack, config).await?;
    let describer = images::pick_describer(
        stack,
        args.vision_model.as_deref(),
        &model.identifier,
        args.vision_max_tokens,
        docs,
    )
    .await?;
    let fingerprint = images::fingerprint_with(fingerprint, describer.as_ref());
    let db = setup::prepare_vector_db(
        stack,
        args,
        docs,
        &fingerprint,
        declared,
        describer.as_ref(),
        cleanup,
    )
    .await?;
    eprintln!(
        "Answering with `{}` over vector DB `{}` (embedding model `{}`)",
        model.identifier, db.id, db.embedding_model
    );
    let config: AgentConfig = serde_json::from_value(json!({
        "model": model.identifier,
        "instructions": INSTRUCTIONS,
        "name": "doc-qa",
        "toolgroups": [{
            "name": "builtin::rag/knowledge_search",
            "args": {"vector_db_ids": [db.id]},
        }],
    }))
    .context("building the agent config")?;
    let agent = stack
        .agents()?
        .create_agent(config)
        .await
        .map_err(|e| anyhow!("cannot create the agent: {}", e.message()))?;
    cleanup.set_agent(Some(agent.agent_id.clone()));
    let session = stack
        .agents()?
        .create_agent_session(&agent.agent_id, "doc-qa".into())
        .await
        .map_err(|e| anyhow!("cannot create the agent session: {}", e.message()))?;
    Ok(QaSession {
        agent_id: agent.agent_id,
        session_id: session.session_id,
    })
}

/// Answers the `--question`s, or else each line of stdin, stopping at the first failure.
fn answer_all(
    runtime: &tokio::runtime::Runtime,
    stack: &Arc<Stack>,
    qa: &QaSession,
    questions: &[String],
) -> anyhow::Result<()> {
    let mut first = true;
    let mut ask = |question: &str| -> anyhow::Result<()> {
        if !first {
            println!();
        }
        first = false;
        runtime.block_on(answer(stack, qa, question))
    };
    if !questions.is_empty() {
        for question in questions {
            eprintln!("> {question}");
            ask(question)?;
        }
        return Ok(());
    }
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut lines = stdin.lock();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let mut line = String::new();
        if lines.read_line(&mut line).context("reading stdin")? == 0 {
            if interactive {
                eprintln!();
            }
            return Ok(());
        }
        let question = line.trim();
        if !question.is_empty() {
            ask(question)?;
        }
    }
}

/// Runs one turn: streams its text to stdout, then prints the documents knowledge_search
/// returned.
async fn answer(stack: &Arc<Stack>, qa: &QaSession, question: &str) -> anyhow::Result<()> {
    let request = CreateTurnRequest {
        messages: vec![Message::user(question)],
        stream: Some(true),
        documents: None,
        toolgroups: None,
        tool_config: None,
    };
    let mut events = stack
        .agents()?
        .create_agent_turn(&qa.agent_id, &qa.session_id, request)
        .await
        .map_err(|e| anyhow!("the turn could not start: {}", e.message()))?;
    let mut stdout = std::io::stdout();
    let mut printed = String::new();
    let mut sources: Vec<String> = Vec::new();
    let mut completed = false;
    while let Some(chunk) = events.next().await {
        let chunk = chunk.map_err(|e| anyhow!("the turn failed: {}", e.message()))?;
        match chunk.event.payload {
            TurnEventPayload::StepProgress {
                step_type: StepType::Inference,
                delta: ContentDelta::Text { text },
                ..
            } => {
                print!("{text}");
                let _ = stdout.flush();
                printed.push_str(&text);
            }
            TurnEventPayload::StepComplete {
                step_details: Step::ToolExecution { tool_responses, .. },
                ..
            } => {
                for response in tool_responses
                    .iter()
                    .filter(|r| r.tool_name == "knowledge_search")
                {
                    add_sources(&mut sources, response.metadata.as_ref());
                }
            }
            TurnEventPayload::TurnComplete { turn } => {
                // A provider that does not stream still fills the output message.
                if printed.is_empty() {
                    printed = turn.output_message.content.as_text("");
                    print!("{printed}");
                }
                completed = true;
            }
            TurnEventPayload::TurnAwaitingInput { .. } => {
                bail!(
                    "the turn stopped waiting for a client tool, which this recipe does not offer"
                )
            }
            _ => {}
        }
    }
    if !completed {
        bail!("the turn ended without completing");
    }
    if !printed.ends_with('\n') {
        println!();
    }
    println!("Sources: {}", sources_line(&sources));
    let _ = stdout.flush();
    Ok(())
}

/// Adds the `document_ids` of a knowledge_search response, each once, in the order retrieved.
fn add_sources(sources: &mut Vec<String>, metadata: Option<&serde_json::Map<String, Value>>) {
    let ids = metadata
        .and_then(|m| m.get("document_ids"))
        .and_then(Value::as_array);
    for id in ids.into_iter().flatten() {
        let id = match id {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        if !sources.contains(&id) {
            sources.push(id);
        }
    }
}

fn sources_line(sources: &[String]) -> String {
    if sources.is_empty() {
        "(none: the documents were not searched)".to_string()
    } else {
        sources.join(", ")
    }
}

/// What must not outlive the run: the agent it created (agents are stored in the registry),
/// and a vector DB whose ingestion was cut short. Ctrl-C removes both, then exits: once tokio
/// listens for SIGINT, the default handler no longer ends the process.
#[derive(Clone, Default)]
pub struct Cleanup {
    state: Arc<Mutex<CleanupState>>,
}

#[derive(Default)]
struct CleanupState {
    incomplete_db: Option<String>,
    agent: Option<String>,
}

impl Cleanup {
    fn watch(runtime: &tokio::runtime::Runtime, stack: Arc<Stack>) -> Cleanup {
        let cleanup = Cleanup::default();
        let watched = cleanup.clone();
        runtime.spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            eprintln!("\ninterrupted");
            if let Some(id) = watched.take_incomplete_db() {
                let _ = stack.memory.unregister_vector_db(&id).await;
            }
            watched.finish(&stack).await;
            std::process::exit(130);
        });
        cleanup
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CleanupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_incomplete_db(&self, id: Option<String>) {
        self.lock().incomplete_db = id;
    }

    fn take_incomplete_db(&self) -> Option<String> {
        self.lock().incomplete_db.take()
    }

    fn set_agent(&self, id: Option<String>) {
        self.lock().agent = id;
    }

    async fn finish(&self, stack: &Stack) {
        let agent = self.lock().agent.take();
        if let Some(id) = agent
            && let Ok(agents) = stack.agents()
            && let Err(err) = agents.delete_agent(&id).await
        {
            tracing::warn!(agent = %id, error = %err, "Could not delete the recipe's agent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_unique_and_in_retrieval_order() {
        let mut sources = Vec::new();
        let meta = json!({"document_ids": ["b.md", "a.txt", "b.md", null]});
        add_sources(&mut sources, meta.as_object());
        add_sources(
            &mut sources,
            json!({"document_ids": ["c.html", "a.txt"]}).as_object(),
        );
        add_sources(&mut sources, None);
        assert_eq!(sources, ["b.md", "a.txt", "c.html"]);
        assert_eq!(sources_line(&sources), "b.md, a.txt, c.html");
        assert!(sources_line(&[]).starts_with("(none"));
    }
}
