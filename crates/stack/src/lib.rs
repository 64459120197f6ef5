//! The assembled stack: the provider registry ([`ProviderRegistry`], how a provider crate
//! says what it builds) and [`Stack`], a plain struct of one service per API that both
//! transports serve.
//!
//! Depends on core and the API crates. Providers depend on it to register themselves; the
//! distribution assembler builds a `Stack`; the transports only read it. It never depends on a
//! provider, a transport or the assembler.

pub mod registry;
pub mod stack;

pub use registry::{
    ApiHandles, BuildFn, ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec,
    ValidateFn,
};
pub use stack::{API_VERSION, ProviderHandle, Services, Stack, StackInfo, redact_config};
