//! `llama-stack recipe ...`: ready-made applications that run a distribution in-process and
//! drive the stack's core functions directly, with no HTTP server in between.

mod doc_qa;
mod documents;
mod images;
mod setup;

use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum RecipeCommand {
    /// Answer questions about documents: ingest them into a vector DB, then ask an agent that
    /// searches them with the RAG tool and cites them.
    ///
    /// The vector DB is named after the documents and the embedding model
    /// (`doc-qa-<hash>`) and kept in the distribution's store, so running again on the same
    /// documents skips ingestion.
    DocQa(DocQaArgs),
}

#[derive(Args, Debug)]
pub struct DocQaArgs {
    /// Folders (read recursively for .txt, .md, .html, .htm and .pdf files, and .png, .jpg and
    /// .jpeg image pages), single files, or http(s) URLs (fetched by the stack under its
    /// address policy).
    #[arg(long, required = true, num_args = 1.., value_name = "FOLDER|FILE|URL")]
    pub docs: Vec<String>,
    /// A question to answer; repeat for several. Without any, questions are read from stdin,
    /// one per line.
    #[arg(long = "question", value_name = "TEXT")]
    pub questions: Vec<String>,
    /// Path to a run.yaml, or the name of a shipped distribution.
    #[arg(long, default_value = "local", value_name = "NAME|PATH")]
    pub distribution: String,
    /// Set an environment variable for ${env.X} substitution, e.g. --env INFERENCE_MODEL=x.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// The LLM the agent answers with (default: the first LLM in run.yaml, else the first
    /// registered one).
    #[arg(long, value_name = "ID")]
    pub model: Option<String>,
    /// The vision model that describes image pages at ingestion (default: the answering
    /// model; when that one takes no images, the images are skipped with a warning).
    #[arg(long, value_name = "ID")]
    pub vision_model: Option<String>,
    /// The most tokens a description of one image page may take.
    #[arg(long, default_value_t = 512, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub vision_max_tokens: u32,
    /// The embedding model of a new vector DB (default: the first embedding model in
    /// run.yaml, else the first registered one).
    #[arg(long, value_name = "ID")]
    pub embedding_model: Option<String>,
    /// The vector DB to use (default: `doc-qa-<hash of the documents and embedding model>`).
    /// An existing one is used as it is unless --reingest is given.
    #[arg(long, value_name = "ID")]
    pub vector_db: Option<String>,
    /// Insert the documents even when the vector DB already exists (chunks of a document
    /// inserted before are replaced, not duplicated).
    #[arg(long)]
    pub reingest: bool,
}

pub fn execute(command: RecipeCommand) -> anyhow::Result<ExitCode> {
    match command {
        RecipeCommand::DocQa(args) => doc_qa::run(args),
    }
}

/// The log filter recipes use without RUST_LOG: their stderr is for the user, so only warnings
/// show, and not the per-document ingestion warnings the recipe reports itself.
pub const DEFAULT_LOG_FILTER: &str = "warn,llama_stack_memory::rag=error";
