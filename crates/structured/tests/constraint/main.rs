//! Constraints over the real Llama 3 vocabulary. Needs Meta's `tokenizer.model`
//! (scripts/fetch-tokenizer.sh); each test says so and passes when it is missing.

mod eos;
mod grammar;
mod json_object;
mod json_schema;
mod support;
