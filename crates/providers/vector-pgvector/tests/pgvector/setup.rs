//! Building the provider: the sample config, unreachable servers, missing rights, and sharing
//! a database with the registry.

use std::time::{Duration, Instant};

use llama_stack_core::ErrorKind;
use llama_stack_provider_vector_pgvector::{PROVIDER_TYPE, PgVectorProvider, config, register};
use llama_stack_stack::{ProviderContext, ProviderRegistry};
use llama_stack_storage::{PostgresRegistryStore, PostgresSettings};
use serde_json::{Value, json};

use crate::support::{config_for, own_database, provider_for};

/// `${env.X:=default}` → `default`, as run.yaml loading does with X unset.
fn with_env_defaults(value: Value) -> Value {
    match value {
        Value::String(s) => match s.strip_prefix("${env.").and_then(|r| r.strip_suffix('}')) {
            Some(inner) => match inner.split_once(":=").map(|(_, d)| d) {
                Some("") | None => Value::Null,
                Some(d) => d
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(d.into())),
            },
            None => Value::String(s),
        },
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, with_env_defaults(v)))
            .collect(),
        other => other,
    }
}

#[test]
fn registers_as_a_vector_io_provider_whose_sample_validates() {
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    let spec = registry.get(PROVIDER_TYPE).expect("registered");
    assert_eq!(spec.api, llama_stack_core::Api::VectorIo);
    let sample: Value = serde_norway::from_str(config::SAMPLE_CONFIG).unwrap();
    let issues = (spec.validate)(&with_env_defaults(sample));
    assert!(issues.is_empty(), "{issues:?}");
    let issues = (spec.validate)(&json!({"port": 0, "hnsw": {"ef_search": 5000}, "colour": 1}));
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        ["colour"],
        "unknown fields are reported first: {issues:?}"
    );
    let issues = (spec.validate)(&json!({"port": 0, "hnsw": {"ef_search": 5000}}));
    let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(paths, ["port", "hnsw.ef_search"], "{issues:?}");
}

#[tokio::test]
async fn build_fails_fast_naming_an_unreachable_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    let spec = registry.get(PROVIDER_TYPE).unwrap();
    let started = Instant::now();
    let built = (spec.build)(
        json!({"host": "127.0.0.1", "port": port, "db": "rag", "user": "u", "password": "hunter2"}),
        ProviderContext::default(),
    )
    .await;
    let err = built.err().expect("nothing listens there");
    assert!(
        err.message().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.message().contains("hunter2"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_user_who_may_not_enable_pgvector_is_told_how() {
    let Some(admin_db) = own_database("pgvector_rights") else {
        return;
    };
    let server = llama_stack_pg_test_server::shared().unwrap();
    for sql in [
        "CREATE ROLE reader LOGIN PASSWORD 'reader-pw'",
        "CREATE DATABASE plain_no_vector OWNER reader",
    ] {
        server.psql(&admin_db.database, sql).unwrap();
    }
    let mut db = admin_db.clone();
    db.database = "plain_no_vector".into();
    db.user = "reader".into();
    db.password = "reader-pw".into();
    let err = PgVectorProvider::connect(&config_for(&db))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    assert!(err.message().contains("CREATE EXTENSION vector"), "{err}");
    assert!(err.message().contains("plain_no_vector"), "{err}");

    // Once a superuser enabled it, the same user can use the provider.
    server
        .psql("plain_no_vector", "CREATE EXTENSION vector")
        .unwrap();
    provider_for(&db).await;
}

#[tokio::test]
async fn the_registry_and_the_provider_share_a_database() {
    let Some(db) = own_database("pgvector_shared") else {
        return;
    };
    let settings = PostgresSettings {
        host: db.host.clone(),
        port: db.port,
        db: db.database.clone(),
        user: db.user.clone(),
        password: Some(db.password.clone()),
        max_connections: 2,
    };
    for _ in 0..2 {
        let registry = PostgresRegistryStore::connect(&settings).await.unwrap();
        let provider = provider_for(&db).await;
        assert!(
            provider.pgvector_version().starts_with("0."),
            "{}",
            provider.pgvector_version()
        );
        use llama_stack_core::RegistryStore;
        registry
            .put("vector_db", "v", &json!({"a": 1}))
            .await
            .unwrap();
    }
    // Quota counters in one statement: requests count one, token budgets many, 0 reads.
    use llama_stack_core::RegistryStore;
    let registry = PostgresRegistryStore::connect(&settings).await.unwrap();
    assert_eq!(registry.increment("q", "w1").await.unwrap(), 1);
    assert_eq!(registry.increment_by("q", "w1", 40).await.unwrap(), 41);
    assert_eq!(registry.increment_by("q", "w1", 0).await.unwrap(), 41);
    assert_eq!(registry.increment_by("q", "w2", 5).await.unwrap(), 5);
}
