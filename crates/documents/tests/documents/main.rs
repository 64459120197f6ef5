//! Integration tests of `llama-stack-documents`, one module per topic.

mod chunking;
mod extraction;
mod fetching;
mod python_repr;
