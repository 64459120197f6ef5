//! Wire types of the Llama Stack HTTP APIs: the exact JSON shapes clients send and receive.
//!
//! This crate owns data only: no IO, no async, no provider knowledge. Every other crate of the
//! workspace may depend on it; it depends on nothing of ours.

pub mod agents;
pub mod content;
pub mod inference;
pub mod inspect;
pub mod lenient;
pub mod memory;
pub mod models;
pub mod openai;
pub mod rerank;
pub mod safety;
pub mod user;

pub use agents::*;
pub use content::*;
pub use inference::*;
pub use inspect::*;
pub use memory::*;
pub use models::*;
pub use rerank::*;
pub use safety::*;
pub use user::User;
