//! `metadata_store: {type: postgres, ...}`: checked field by field, and built against a real
//! (throwaway) PostgreSQL.

use llama_stack_distribution::schema::StoreConfig;
use llama_stack_distribution::{ConfigErrors, LoadedConfig, build, builtin_registry, load_str};

use crate::support::{env, expect};

fn run_yaml(store: &str) -> String {
    format!("version: 2\nimage_name: pg-registry\nproviders: {{}}\nmetadata_store:\n{store}")
}

fn load(store: &str, vars: &[(&str, &str)]) -> Result<LoadedConfig, ConfigErrors> {
    load_str(&run_yaml(store), &env(vars), &builtin_registry())
}

#[test]
fn postgres_metadata_store_with_upstream_fields_loads() {
    let store = "  type: postgres\n  host: ${env.POSTGRES_HOST:=localhost}\n  port: ${env.POSTGRES_PORT:=5432}\n  db: ${env.POSTGRES_DB}\n  user: ${env.POSTGRES_USER}\n  password: ${env.POSTGRES_PASSWORD}\n  table_name: llamastack_kvstore\n";
    let loaded = load(
        store,
        &[
            ("POSTGRES_PORT", "6543"),
            ("POSTGRES_DB", "stack"),
            ("POSTGRES_USER", "app"),
            ("POSTGRES_PASSWORD", "s3cret"),
        ],
    )
    .unwrap();
    let Some(StoreConfig::Postgres(pg)) = &loaded.config.metadata_store else {
        panic!("{:?}", loaded.config.metadata_store);
    };
    assert_eq!(
        (
            pg.host.as_str(),
            pg.port,
            pg.db.as_str(),
            pg.user.as_deref()
        ),
        ("localhost", 6543, "stack", Some("app"))
    );
    assert!(!format!("{loaded:?}").contains("s3cret"), "password shown");
    assert!(
        !loaded
            .not_implemented
            .iter()
            .any(|n| n.contains("not implemented yet; the registry")),
        "{:?}",
        loaded.not_implemented
    );
    assert!(
        loaded
            .not_implemented
            .iter()
            .any(|n| n.starts_with("metadata_store.table_name")),
        "{:?}",
        loaded.not_implemented
    );
}

#[test]
fn every_postgres_store_problem_is_reported_with_its_path() {
    let errors = load(
        "  type: postgres\n  host: ''\n  port: 70000\n  db: ' '\n  ssl_mode: require\n  ca_cert_path: /ca.pem\n",
        &[],
    )
    .unwrap_err();
    expect(&errors, "metadata_store.host", &["PostgreSQL server"]);
    expect(&errors, "metadata_store.port", &["70000"]);
    expect(&errors, "metadata_store.db", &["database"]);
    expect(&errors, "metadata_store.user", &["missing"]);
    expect(&errors, "metadata_store.ssl_mode", &["require", "TLS"]);
    expect(&errors, "metadata_store.ca_cert_path", &["TLS"]);
    assert_eq!(errors.problems.len(), 6, "{errors}");

    let errors = load(
        "  type: postgres\n  user: u\n  hostname: x\n  port: many\n",
        &[],
    )
    .unwrap_err();
    expect(&errors, "metadata_store.hostname", &["hostname"]);
    expect(&errors, "metadata_store.port", &["integer"]);
}

#[tokio::test]
async fn the_registry_is_built_in_postgres_and_an_unreachable_one_is_named() {
    let Some(db) = llama_stack_pg_test_server::database("distribution_registry") else {
        return;
    };
    let store = "  type: postgres\n  host: ${env.POSTGRES_HOST}\n  port: ${env.POSTGRES_PORT}\n  db: ${env.POSTGRES_DB}\n  user: ${env.POSTGRES_USER}\n  password: ${env.POSTGRES_PASSWORD}\n";
    let port = db.port.to_string();
    let vars = [
        ("POSTGRES_HOST", db.host.as_str()),
        ("POSTGRES_PORT", port.as_str()),
        ("POSTGRES_DB", db.database.as_str()),
        ("POSTGRES_USER", db.user.as_str()),
        ("POSTGRES_PASSWORD", db.password.as_str()),
    ];
    for _ in 0..2 {
        build(load(store, &vars).unwrap()).await.unwrap();
    }
    let server = llama_stack_pg_test_server::shared().unwrap();
    let tables = server
        .psql(
            &db.database,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'llama_stack_registry'",
        )
        .unwrap();
    assert_eq!(tables, "1");

    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut vars = vars;
    vars[1] = ("POSTGRES_PORT", unused.as_str());
    let err = build(load(store, &vars).unwrap()).await.err().unwrap();
    let message = err.message();
    assert!(
        message.starts_with("metadata_store: cannot open the registry at PostgreSQL database"),
        "{message}"
    );
    assert!(
        message.contains(&format!("127.0.0.1:{unused}")),
        "{message}"
    );
    assert!(!message.contains(&db.password), "{message}");
}
