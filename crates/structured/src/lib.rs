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
//! tokenizer (llguidance's own adapter, `toktrie_hf_tokenizers`, pins `tokenizers` 0.21),
//! checks that name the JSON Schema keyword and location that cannot be enforced, bounded
//! whitespace so a model cannot loop forever between two JSON tokens, GBNF grammars
//! (rewritten into llguidance's Lark dialect) and a small API without llguidance types in it.
//!
//! # What a JSON Schema may use
//!
//! `type` (one or a list, so `["string", "null"]` works; OpenAPI's `nullable: true` too),
//! `properties`, `required`, `additionalProperties` (a boolean or a schema; absent means any
//! extra property is allowed, as JSON Schema says), `patternProperties`, `minProperties`,
//! `maxProperties`, `items`, `prefixItems`, `minItems`, `maxItems`, `enum`, `const`, `anyOf`,
//! `oneOf`, `allOf`, `$ref` to `#/$defs/..` or `#/definitions/..` (recursion included),
//! `minLength`, `maxLength`, `pattern` (no look-around or back-references), `minimum`,
//! `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, and `format` (`date-time`,
//! `date`, `time`, `duration`, `email`, `hostname`, `ipv4`, `ipv6`, `uuid`, `uri` become
//! patterns; other formats are ignored). Annotations (`title`, `description`, `default`,
//! `examples`, ..) are ignored.
//!
//! Refused with [`Error::UnsupportedSchema`]: `not`, `if`/`then`/`else`, `dependencies`,
//! `dependentRequired`, `dependentSchemas`, `contains`, `minContains`, `maxContains`,
//! `propertyNames`, `unevaluatedItems`, `unevaluatedProperties`, `uniqueItems: true`,
//! `$dynamicRef`/`$recursiveRef`, and `$ref` to another document.
//!
//! Where the output may still differ from what a validator accepts:
//! - `oneOf` is enforced as `anyOf`: with overlapping branches the output may match several.
//! - `format: date` (and `date-time`) know month lengths but not leap years.
//!
//! A string without `maxLength` (or an array without `maxItems`) can go on for ever: the
//! constraint guarantees validity when the output ends, not that it ends; the engine's token
//! limit does that. Object properties come in the order the schema lists them.
//!
//! llguidance builds `serde_json` with `preserve_order`, and Cargo turns a feature on for
//! every crate in the build: where this crate is linked, `serde_json::Map` keeps insertion
//! order instead of sorting its keys.
//!
//! # In a sampling loop
//!
//! ```no_run
//! use std::sync::Arc;
//! use llama_stack_structured::{Constraint, Error, Format, Vocabulary};
//!
//! fn generate(
//!     vocabulary: &Arc<Vocabulary>,
//!     response_format: &serde_json::Value,
//!     max_tokens: usize,
//!     mut forward: impl FnMut(Option<u32>) -> Vec<f32>, // logits after feeding a token
//!     mut sample: impl FnMut(&[f32]) -> u32,
//! ) -> Result<Vec<u32>, Error> {
//!     // Per request; an Err here that `is_invalid_request()` is the client's 400.
//!     let mut constraint = match Format::from_response_format(response_format)? {
//!         Some(format) => Some(Constraint::new(vocabulary.clone(), &format)?),
//!         None => None,
//!     };
//!     let mut output = Vec::new();
//!     let mut logits = forward(None);
//!     while output.len() < max_tokens {
//!         if let Some(constraint) = &mut constraint {
//!             constraint.apply_to_logits(&mut logits)?;
//!         }
//!         let token = sample(&logits);
//!         if vocabulary.is_eos(token) {
//!             break;
//!         }
//!         if let Some(constraint) = &mut constraint {
//!             constraint.accept(token)?;
//!         }
//!         output.push(token);
//!         // Only an end-of-sequence token could follow: no need for another forward pass.
//!         if constraint.as_ref().is_some_and(Constraint::is_finished) {
//!             break;
//!         }
//!         logits = forward(Some(token));
//!     }
//!     Ok(output)
//! }
//! ```
//!
//! The [`Vocabulary`] is built once per tokenizer, e.g. with the Llama 3 end-of-turn tokens
//! `<|end_of_text|>`, `<|eom_id|>` and `<|eot_id|>`:
//! `Arc::new(Vocabulary::from_tokenizer(&tokenizer, &[128001, 128008, 128009])?)`.

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
