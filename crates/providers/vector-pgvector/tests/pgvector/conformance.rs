//! The conformance suite every vector IO provider passes.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_memory::vector_io::VectorIoProvider;
use llama_stack_pg_test_server::PgTestDatabase;
use llama_stack_vector_conformance::{Harness, conformance_tests};

use crate::support::{provider_for, shared_database};

/// Every `open` connects a new provider to the same database: a restart.
struct PgVectorHarness {
    db: PgTestDatabase,
}

#[async_trait]
impl Harness for PgVectorHarness {
    async fn open(&self) -> Arc<dyn VectorIoProvider> {
        Arc::new(provider_for(&self.db).await)
    }
}

conformance_tests!(optional: shared_database().map(|db| PgVectorHarness { db }));
