//! Document QA against a running Llama Stack server, over its HTTP API only: register a vector
//! DB, insert the documents of a folder with the RAG tool, create an agent that searches them
//! with `builtin::rag`, and stream its answers with the documents it retrieved.
//!
//! ```text
//! cargo run -p doc-qa-example -- http://localhost:8321 ./my-docs "What is the refund policy?"
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use clap::Parser;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Ask questions about a folder of documents through a Llama Stack server")]
struct Args {
    /// The server, e.g. http://localhost:8321.
    base_url: String,
    /// A folder of .txt, .md, .html, .htm and .pdf files (read recursively).
    docs: PathBuf,
    /// The questions to answer.
    #[arg(required = true)]
    questions: Vec<String>,
    /// The LLM to answer with (default: the server's first LLM).
    #[arg(long)]
    model: Option<String>,
    /// The embedding model of the vector DB (default: the server's first embedding model).
    #[arg(long)]
    embedding_model: Option<String>,
    /// The vector DB id (default: `doc-qa-<hash of the documents>`).
    #[arg(long)]
    vector_db: Option<String>,
}

const INSTRUCTIONS: &str = "You answer questions about a collection of documents. For every \
question, call the knowledge_search tool to retrieve the relevant passages, and answer only \
from what it returns. Cite the documents you used by their document_id in square brackets. \
If the passages do not contain the answer, say that the documents do not say.";

const FILE_TYPES: [(&str, &str); 5] = [
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("html", "text/html"),
    ("htm", "text/html"),
    ("pdf", "application/pdf"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // reqwest is built without a default TLS crypto provider; https base URLs need one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let api = Api {
        http: reqwest::Client::new(),
        base: args.base_url.trim_end_matches('/').to_string(),
    };

    let models = api.get("/v1/models").await?;
    let model = pick_model(&models, args.model.as_deref(), "llm")?;
    let embedding_model = pick_model(&models, args.embedding_model.as_deref(), "embedding")?;

    let files = document_files(&args.docs)?;
    let vector_db_id = match args.vector_db {
        Some(id) => id,
        None => default_vector_db_id(&args.docs, &files, &embedding_model)?,
    };
    // Registering again with the same settings returns the existing DB.
    api.post(
        "/v1/vector-dbs",
        json!({"vector_db_id": vector_db_id, "embedding_model": embedding_model}),
    )
    .await?;
    // One document per request, so a bad one is reported and the others still go in.
    // Chunk ids are derived from the content, so inserting a document again replaces it.
    let mut inserted = 0;
    for path in &files {
        let id = document_id(&args.docs, path);
        let result = async {
            let mime = mime_type(path).unwrap_or("text/plain");
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            api.post(
                "/v1/tool-runtime/rag-tool/insert",
                json!({
                    "vector_db_id": vector_db_id,
                    "documents": [{
                        "document_id": id,
                        "content": format!("data:{mime};base64,{data}"),
                        "mime_type": mime,
                        "metadata": {},
                    }],
                }),
            )
            .await
        }
        .await;
        match result {
            Ok(_) => inserted += 1,
            Err(err) => eprintln!("error: document `{id}` not inserted: {err:#}"),
        }
    }
    if inserted == 0 {
        bail!("none of the {} documents could be inserted", files.len());
    }
    eprintln!(
        "Inserted {inserted} of {} documents into `{vector_db_id}`",
        files.len()
    );

    let agent = api
        .post(
            "/v1/agents",
            json!({"agent_config": {
                "model": model,
                "instructions": INSTRUCTIONS,
                "toolgroups": [{
                    "name": "builtin::rag/knowledge_search",
                    "args": {"vector_db_ids": [vector_db_id]},
                }],
            }}),
        )
        .await?;
    let agent_id = agent["agent_id"]
        .as_str()
        .context("no agent_id")?
        .to_string();
    let answered = async {
        let session = api
            .post(
                &format!("/v1/agents/{agent_id}/session"),
                json!({"session_name": "doc-qa"}),
            )
            .await?;
        let session_id = session["session_id"].as_str().context("no session_id")?;
        for (i, question) in args.questions.iter().enumerate() {
            if i > 0 {
                println!();
            }
            ask(&api, &agent_id, session_id, question).await?;
        }
        anyhow::Ok(())
    }
    .await;
    // Agents are stored on the server; this one was only for this run.
    let _ = api
        .http
        .delete(format!("{}/v1/agents/{agent_id}", api.base))
        .send()
        .await;
    answered
}

/// Streams one turn (SSE): prints the answer as it arrives, then the retrieved documents.
async fn ask(api: &Api, agent_id: &str, session_id: &str, question: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let response = api
        .http
        .post(format!(
            "{}/v1/agents/{agent_id}/session/{session_id}/turn",
            api.base
        ))
        .json(&json!({"messages": [{"role": "user", "content": question}], "stream": true}))
        .send()
        .await?;
    let response = check(response).await?;
    let mut events = response.bytes_stream().eventsource();
    let mut answer = String::new();
    let mut sources: Vec<String> = Vec::new();
    let mut completed = false;
    while let Some(event) = events.next().await {
        let event: Value = serde_json::from_str(&event?.data)?;
        if let Some(error) = event.get("error") {
            bail!("the turn failed: {error}");
        }
        let payload = &event["event"]["payload"];
        match payload["event_type"].as_str() {
            Some("step_progress")
                if payload["step_type"] == "inference" && payload["delta"]["type"] == "text" =>
            {
                let text = payload["delta"]["text"].as_str().unwrap_or_default();
                print!("{text}");
                std::io::stdout().flush()?;
                answer.push_str(text);
            }
            Some("step_complete") if payload["step_type"] == "tool_execution" => {
                let responses = payload["step_details"]["tool_responses"].as_array();
                for response in responses.into_iter().flatten() {
                    if response["tool_name"] != "knowledge_search" {
                        continue;
                    }
                    let ids = response["metadata"]["document_ids"].as_array();
                    for id in ids.into_iter().flatten().filter_map(Value::as_str) {
                        if !sources.iter().any(|s| s == id) {
                            sources.push(id.to_string());
                        }
                    }
                }
            }
            Some("turn_complete") => completed = true,
            _ => {}
        }
    }
    if !completed {
        bail!("the turn ended without completing");
    }
    if !answer.ends_with('\n') {
        println!();
    }
    println!("Sources: {}", sources.join(", "));
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        Ok(check(response).await?.json().await?)
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let response = check(response).await?;
        let text = response.text().await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// Turns an error status into an error carrying the server's message.
async fn check(response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().path().to_string();
    let body = response.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.get("detail")).cloned())
        .map(|d| {
            d.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| d.to_string())
        })
        .unwrap_or(body);
    bail!("{url}: {status}: {detail}")
}

fn pick_model(models: &Value, requested: Option<&str>, model_type: &str) -> anyhow::Result<String> {
    if let Some(id) = requested {
        return Ok(id.to_string());
    }
    let all = models["data"].as_array().cloned().unwrap_or_default();
    all.iter()
        .find(|m| m["model_type"] == model_type)
        .and_then(|m| m["identifier"].as_str())
        .map(str::to_string)
        .with_context(|| {
            let ids: Vec<_> = all
                .iter()
                .filter_map(|m| m["identifier"].as_str())
                .collect();
            format!(
                "the server has no {model_type} model (models: {})",
                if ids.is_empty() {
                    "none".into()
                } else {
                    ids.join(", ")
                }
            )
        })
}

fn mime_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    FILE_TYPES.iter().find(|(e, _)| *e == ext).map(|(_, m)| *m)
}

fn document_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if entry.file_type()?.is_dir() {
                walk(&path, out)?;
            } else if mime_type(&path).is_some() {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(root, &mut files).with_context(|| format!("reading the folder {}", root.display()))?;
    if files.is_empty() {
        bail!(
            "no .txt, .md, .html, .htm or .pdf files in {}",
            root.display()
        );
    }
    Ok(files)
}

/// The path inside the docs folder, with `/` separators.
fn document_id(root: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(root).unwrap_or(path);
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `doc-qa-` and 12 hex digits naming the documents' contents and the embedding model, so
/// different folders never share a vector DB.
fn default_vector_db_id(
    root: &Path,
    files: &[PathBuf],
    embedding_model: &str,
) -> anyhow::Result<String> {
    let mut summary = format!("{embedding_model}\n");
    for path in files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &bytes);
        summary.push_str(&format!("{}\t{digest}\n", document_id(root, path)));
    }
    let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, summary.as_bytes()).simple();
    Ok(format!("doc-qa-{}", &id.to_string()[..12]))
}
