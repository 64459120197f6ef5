//! `server.limits` on JSON bodies: the checks live in core, shared with gRPC.

pub(crate) use llama_stack_core::limits::{check_body, check_embedding_inputs};
