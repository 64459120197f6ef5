//! The safety API: the trait safety providers implement ([`SafetyProvider`]), the shield
//! registry that routes a check to its shield's provider, and run-shield and moderations as
//! both transports call them.
//!
//! Guard models (Llama Guard) run on the inference API, reached through the
//! `InferenceApi` handle given at assembly. Depends on core, the wire types and the inference
//! API's handle; never on a provider or a transport.

#[cfg(test)]
mod access_tests;
pub mod provider;
mod shields;

pub use provider::{GuardInference, SafetyProvider, SafetyViolation, ViolationLevel};
pub use shields::{RestoredShields, SafetyApi, SafetyService};
