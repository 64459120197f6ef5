//! The gRPC transport end to end: a real stack (canned OpenAI-compatible upstream, code
//! scanner, sqlite-vec, RAG runtime, meta-reference agents) served over gRPC and HTTP at once,
//! driven with the generated clients and compared with the HTTP answers.

mod agents;
mod compat;
mod inference;
mod inspect;
mod metrics;
mod models;
mod responses;
mod safety;
mod support;
mod tools;
mod trace_context;
mod upstream;
mod vector_io;
