//! The conformance suite every `VectorIoProvider` passes: insert, search in every mode,
//! filters, deletion, expiry and reopening.
//!
//! A provider crate implements [`Harness`] (how to open the provider over one persistent
//! state) and expands [`conformance_tests!`] in an integration test; each check becomes its
//! own `#[tokio::test]`, named after the check, so a failure says what broke:
//!
//! ```ignore
//! struct MyHarness { dir: tempfile::TempDir }
//!
//! #[async_trait::async_trait]
//! impl llama_stack_vector_conformance::Harness for MyHarness {
//!     async fn open(&self) -> Arc<dyn VectorIoProvider> { /* open over self.dir */ }
//! }
//!
//! llama_stack_vector_conformance::conformance_tests!(MyHarness::new());
//! // or, for a provider that needs an external service:
//! llama_stack_vector_conformance::conformance_tests!(optional: MyHarness::from_env().await);
//! ```
//!
//! The harness expression is evaluated inside each async test, so it may `.await`. Each check
//! deletes the stores it uses before starting, so a harness may share one database between
//! tests. Checks use store ids starting with `conf-`.
//!
//! Depends on core only; providers depend on this crate as a dev-dependency.

pub mod data;
mod lifecycle_checks;
mod search_checks;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_core::{ErrorKind, Result};
use llama_stack_memory::vector_io::{StoreSpec, VectorIoProvider};

pub use lifecycle_checks::*;
pub use search_checks::*;

/// How the suite reaches a provider under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A provider over this harness's persistent state. Every call opens the same state, so
    /// dropping the previous provider and calling `open` again is a restart.
    async fn open(&self) -> Arc<dyn VectorIoProvider>;
}

/// The value of `result`, or a panic naming `what` and the error.
pub fn must<T>(result: Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what} failed: {:?}: {}", err.kind(), err.message()),
    }
}

/// Asserts that `result` is an error of `kind`.
pub fn expect_error<T: Debug>(result: Result<T>, kind: ErrorKind, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected a {kind:?} error, got Ok({value:?})"),
        Err(err) => assert_eq!(
            err.kind(),
            kind,
            "{what}: expected {kind:?}, got {:?}: {}",
            err.kind(),
            err.message()
        ),
    }
}

/// Deletes `store_id` if it exists and creates it empty with `dimension`.
pub async fn fresh_store(provider: &dyn VectorIoProvider, store_id: &str, dimension: usize) {
    must(provider.delete_store(store_id).await, "delete_store");
    must(
        provider
            .create_store(&StoreSpec {
                store_id: store_id.to_string(),
                dimension,
            })
            .await,
        "create_store",
    );
}

/// Expands to one `#[tokio::test]` per check, each running against a fresh evaluation of the
/// harness expression. The calling crate needs `tokio` (with the multi-thread runtime) as a
/// dev-dependency.
///
/// `conformance_tests!(harness)` takes a value implementing [`Harness`];
/// `conformance_tests!(optional: harness)` takes an `Option` of one and skips (passes with a
/// note on stderr) when it is `None`, for providers that need an external service.
#[macro_export]
macro_rules! conformance_tests {
    (optional: $harness:expr) => {
        $crate::conformance_tests!(@all (optional) $harness);
    };
    ($harness:expr) => {
        $crate::conformance_tests!(@all (required) $harness);
    };
    (@all ($how:ident) $harness:expr) => {
        $crate::conformance_tests!(@each ($how) $harness;
            check_vector_search_returns_nearest_first,
            check_k_limits_results,
            check_keyword_search_ranks_rare_word_first,
            check_filters_restrict_vector_search,
            check_filters_restrict_keyword_search,
            check_malformed_vector_queries_are_invalid,
            check_batch_insert_of_thousands,
            check_insert_replaces_existing_chunk_id,
            check_delete_chunks_by_ids_and_by_file,
            check_delete_store_removes_everything,
            check_unknown_store_is_not_found,
            check_create_store_with_other_dimension_is_invalid,
            check_expired_chunks_are_hidden,
            check_chunks_survive_restart,
            check_stores_are_isolated,
            check_failed_insert_leaves_nothing,
        );
    };
    (@each (required) $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let harness = $harness;
                $crate::$check(&harness).await;
            }
        )*
    };
    (@each (optional) $harness:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(harness) = $harness else {
                    eprintln!("{}: skipped, the harness is not available", stringify!($check));
                    return;
                };
                $crate::$check(&harness).await;
            }
        )*
    };
}
