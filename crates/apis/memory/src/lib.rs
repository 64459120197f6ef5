//! The memory API: the traits vector IO and files providers implement ([`VectorIoProvider`],
//! [`FilesProvider`]), the registry of vector DBs and vector stores that routes each store to
//! its provider, files, and the functions both transports call (`/v1/vector-dbs`,
//! `/v1/vector-io/*`, `/v1/vector_stores/*`, `/v1/files/*`).
//!
//! Embedding runs on the inference API, reached through the `InferenceApi` handle given at
//! assembly. The RAG tool runtime reaches this API through [`MemoryApi`]. Depends on core, the
//! wire types, `llama-stack-documents` and the inference API's handle; never on a provider or a
//! transport.

mod api;
mod chunks;
mod documents;
mod file_batches;
pub mod files;
pub mod files_ops;
pub mod lease;
mod replicas;
mod service;
mod vector_dbs;
pub mod vector_io;
mod vector_store_files;
mod vector_stores;

pub use api::MemoryApi;
pub use chunks::{Mode, QueryParams, fuse_rrf};
pub use documents::{document_error, document_text};
pub use files::FilesProvider;
pub use llama_stack_documents::FetchPolicy;
pub use service::{MemoryService, StoreRecord};
pub use vector_io::VectorIoProvider;
pub use vector_stores::PageQuery;
