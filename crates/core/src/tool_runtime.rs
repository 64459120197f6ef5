//! Tool runtimes: the built-in tools the stack runs itself.

pub use llama_stack_documents::FetchPolicy;

/// A built tool runtime provider.
#[derive(Debug, Clone)]
pub enum ToolRuntime {
    /// `inline::rag-runtime`: the `builtin::rag` tools over the vector IO API.
    Rag(RagSettings),
}

/// How the RAG runtime loads documents given by URL.
#[derive(Debug, Clone, Default)]
pub struct RagSettings {
    pub fetch: FetchPolicy,
}
