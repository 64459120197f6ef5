//! Decode-time constrained generation: at each decoding step, the set of tokens that keep the
//! output on course to be valid JSON, JSON that validates against a JSON Schema, or a sentence
//! of a grammar.
//!
//! The crate owns the token-level side of structured output (`response_format`): turning a
//! tokenizer into a byte-level [`Vocabulary`], compiling a request's [`Format`] into a
//! [`Constraint`], and answering "which tokens may come next" in well under a millisecond on
//! the 128,256-token Llama 3 vocabulary. It knows nothing about models, tensors, HTTP or the
//! wire types, and must not depend on other workspace crates: the inference engine calls it
//! from its sampling loop.
//!
//! The masks come from [llguidance](https://github.com/guidance-ai/llguidance), the Earley
//! parser and token trie that vLLM, SGLang and mistral.rs use for the same job. This crate
//! adds what the engine needs around it: a vocabulary built from a `tokenizers` 0.23
//! tokenizer (llguidance's own adapter pins an older `tokenizers`), checks that name the JSON
//! Schema keyword and location that cannot be enforced, bounded whitespace so a model cannot
//! loop forever between two JSON tokens, GBNF grammars (rewritten into llguidance's Lark
//! dialect) and a small API without llguidance types in it.
//!
//! ```no_run
//! # fn demo(tokenizer: &tokenizers::Tokenizer, logits: &mut [f32]) -> Result<(), llama_stack_structured::Error> {
//! use std::sync::Arc;
//! use llama_stack_structured::{Constraint, Format, Vocabulary};
//!
//! // Once per tokenizer: <|end_of_text|>, <|eom_id|>, <|eot_id|> end a Llama 3 turn.
//! let vocabulary = Arc::new(Vocabulary::from_tokenizer(tokenizer, &[128001, 128008, 128009])?);
//! // Once per request.
//! let schema = serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}});
//! let mut constraint = Constraint::new(vocabulary.clone(), &Format::JsonSchema(schema))?;
//! // Each step: mask the logits, sample, then advance.
//! constraint.apply_to_logits(logits)?;
//! let token = 42; // sampled from the masked logits
//! if !vocabulary.is_eos(token) {
//!     constraint.accept(token)?;
//! }
//! # Ok(()) }
//! ```

mod constraint;
mod error;
mod format;
mod gbnf;
mod schema;
mod vocabulary;

pub use constraint::{Constraint, ConstraintOptions, TokenSet};
pub use error::Error;
pub use format::Format;
pub use gbnf::gbnf_to_lark;
pub use vocabulary::Vocabulary;
