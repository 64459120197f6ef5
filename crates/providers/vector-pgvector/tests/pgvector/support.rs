//! Connecting the provider to the test cluster.

use std::sync::OnceLock;

use llama_stack_core::parse_config;
use llama_stack_pg_test_server::PgTestDatabase;
use llama_stack_provider_vector_pgvector::{PgVectorConfig, PgVectorProvider};

/// One database for the whole test binary; checks use their own store ids. `None` when the
/// PostgreSQL tests are skipped (`LLAMA_STACK_SKIP_PG_TESTS=1`).
pub fn shared_database() -> Option<PgTestDatabase> {
    static DATABASE: OnceLock<Option<PgTestDatabase>> = OnceLock::new();
    DATABASE
        .get_or_init(|| llama_stack_pg_test_server::database("pgvector"))
        .clone()
}

/// A fresh database of its own, for tests that need an empty catalog.
pub fn own_database(prefix: &str) -> Option<PgTestDatabase> {
    llama_stack_pg_test_server::database(prefix)
}

pub fn config_for(db: &PgTestDatabase) -> PgVectorConfig {
    parse_config(&serde_json::json!({
        "host": db.host, "port": db.port, "db": db.database,
        "user": db.user, "password": db.password, "pool_size": 4,
    }))
    .expect("a valid test config")
}

pub async fn provider_for(db: &PgTestDatabase) -> PgVectorProvider {
    match PgVectorProvider::connect(&config_for(db)).await {
        Ok(provider) => provider,
        Err(err) => panic!("cannot connect remote::pgvector to the test cluster: {err}"),
    }
}
