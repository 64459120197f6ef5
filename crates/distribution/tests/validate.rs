//! Integration tests of run.yaml loading and stack assembly, one module per topic.

#[path = "validate/build_stack.rs"]
mod build_stack;
#[path = "validate/distributions.rs"]
mod distributions;
#[path = "validate/fixtures.rs"]
mod fixtures;
#[path = "validate/metadata_store.rs"]
mod metadata_store;
#[path = "validate/samples.rs"]
mod samples;
#[path = "validate/starter.rs"]
mod starter;
#[path = "validate/support.rs"]
mod support;
