//! The shared vector IO conformance suite against `inline::sqlite-vec`.

use std::sync::Arc;

use async_trait::async_trait;
use llama_stack_memory::vector_io::VectorIoProvider;
use llama_stack_provider_vector_sqlite::{SqliteVecConfig, SqliteVecProvider};
use llama_stack_vector_conformance::{Harness, conformance_tests};

/// One database in a temporary folder; every `open` is a new provider over it.
struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        SqliteHarness {
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn open(&self) -> Arc<dyn VectorIoProvider> {
        let config = SqliteVecConfig {
            db_path: Some(self.dir.path().join("vectors.db").display().to_string()),
            ..SqliteVecConfig::default()
        };
        Arc::new(
            SqliteVecProvider::open(&config, None)
                .await
                .expect("provider opens"),
        )
    }
}

conformance_tests!(SqliteHarness::new());
