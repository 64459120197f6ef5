//! `remote::postgres` files against a real (throwaway) PostgreSQL: the shared conformance
//! suite, two replicas on one database, parts, and start-up errors.

use llama_stack_core::ErrorKind;
use llama_stack_memory::files::FilesProvider;
use llama_stack_pg_test_server::PgTestDatabase;
use llama_stack_provider_files_postgres::conformance;
use llama_stack_provider_files_postgres::{PostgresFiles, PostgresFilesConfig};

fn config(db: &PgTestDatabase) -> PostgresFilesConfig {
    PostgresFilesConfig {
        host: db.host.clone(),
        port: db.port.into(),
        db: db.database.clone(),
        user: db.user.clone(),
        password: Some(db.password.clone()),
        pool_size: 4,
        // The smallest parts, so a modest file spans several.
        part_bytes: 64 << 10,
        ..Default::default()
    }
}

/// A provider on a fresh database; `None` when PostgreSQL tests are skipped.
async fn fresh(prefix: &str) -> Option<(PostgresFiles, PgTestDatabase)> {
    let db = llama_stack_pg_test_server::database(prefix)?;
    let files = PostgresFiles::connect(&config(&db)).await.unwrap();
    Some((files, db))
}

#[tokio::test]
async fn conformance_suite() {
    let Some((files, _)) = fresh("files_round_trip").await else {
        return;
    };
    conformance::round_trip(&files).await;
    conformance::foreign_ids_are_not_found(&files).await;
    conformance::content_is_exact(&files, 300 << 10).await;
    let Some((files, _)) = fresh("files_listing").await else {
        return;
    };
    conformance::listings_page_in_upload_order(&files).await;
    let Some((files, _)) = fresh("files_expiry").await else {
        return;
    };
    conformance::expired_files_are_gone(&files).await;
    conformance::owners_are_kept(&files).await;
}

#[tokio::test]
async fn replicas_on_one_database_share_files() {
    let Some(db) = llama_stack_pg_test_server::database("files_replicas") else {
        return;
    };
    // Both start together, as replicas of one deployment do: the tables are created once.
    let config = config(&db);
    let (a, b) = tokio::join!(
        PostgresFiles::connect(&config),
        PostgresFiles::connect(&config)
    );
    conformance::replicas(&a.unwrap(), &b.unwrap()).await;
}

#[tokio::test]
async fn bytes_are_kept_in_parts_and_go_with_the_file() {
    let Some((files, db)) = fresh("files_parts").await else {
        return;
    };
    let content = vec![7u8; (64 << 10) * 2 + 1];
    let file = files
        .create(conformance::upload("p.bin", "batch", &content))
        .await
        .unwrap();
    let server = llama_stack_pg_test_server::shared().unwrap();
    let parts = server
        .psql(
            &db.database,
            &format!(
                "SELECT count(*) || ':' || sum(length(data)) FROM llama_stack_file_parts \
                 WHERE file_id = '{}'",
                file.id
            ),
        )
        .unwrap();
    assert_eq!(parts.trim(), format!("3:{}", content.len()));
    files.delete(&file.id).await.unwrap();
    let left = server
        .psql(&db.database, "SELECT count(*) FROM llama_stack_file_parts")
        .unwrap();
    assert_eq!(left.trim(), "0");
}

#[tokio::test]
async fn an_unreachable_server_is_named() {
    let mut config = PostgresFilesConfig {
        host: "127.0.0.1".into(),
        ..Default::default()
    };
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.port = listener.local_addr().unwrap().port().into();
    drop(listener);
    let err = match PostgresFiles::connect(&config).await {
        Ok(_) => panic!("connected to nothing"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Upstream, "{err}");
    assert!(
        err.message()
            .contains(&format!("127.0.0.1:{}", config.port)),
        "{err}"
    );
}

/// The provider is what the distribution builds from a run.yaml `config:` block.
#[tokio::test]
async fn builds_from_a_config_block() {
    let Some(db) = llama_stack_pg_test_server::database("files_build") else {
        return;
    };
    let mut registry = llama_stack_stack::ProviderRegistry::new();
    llama_stack_provider_files_postgres::register(&mut registry);
    let spec = registry.get("remote::postgres").unwrap();
    let block = serde_json::json!({
        "host": db.host, "port": db.port, "db": db.database, "user": db.user,
        "password": db.password,
    });
    assert!((spec.validate)(&block).is_empty());
    let instance = (spec.build)(block, Default::default()).await.unwrap();
    let llama_stack_stack::ProviderInstance::Files(files) = instance else {
        panic!("not a files provider");
    };
    let file = files
        .create(conformance::upload("b.txt", "assistants", b"b"))
        .await
        .unwrap();
    assert_eq!(files.content(&file.id).await.unwrap(), b"b");
}
