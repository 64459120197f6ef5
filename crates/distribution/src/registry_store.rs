//! Opening the registry `metadata_store` names: SQLite (the default) or PostgreSQL.

use std::sync::Arc;

use llama_stack_core::{Error, RegistryStore};
use llama_stack_storage::{PostgresRegistryStore, PostgresSettings, SqliteRegistryStore};

use crate::LoadedConfig;
use crate::schema::{PostgresStoreConfig, StoreConfig};

/// The open registry and how to talk about it in messages.
pub(crate) struct OpenedRegistry {
    pub store: Arc<dyn RegistryStore>,
    /// Where it is: a file path, or a PostgreSQL database and server.
    pub location: String,
    /// What to change to start from an empty registry.
    pub elsewhere: &'static str,
}

/// Opens (creating tables as needed) the registry of a checked configuration.
pub(crate) async fn open(loaded: &LoadedConfig) -> Result<OpenedRegistry, Error> {
    let fail = |location: &str, err: Error| {
        Error::new(
            err.kind(),
            format!(
                "metadata_store: cannot open the registry at {location}: {}",
                err.message()
            ),
        )
    };
    if let Some(StoreConfig::Postgres(config)) = &loaded.config.metadata_store {
        let settings = postgres_settings(config);
        let location = format!(
            "PostgreSQL database `{}` at {}",
            settings.db,
            settings.address()
        );
        let store = PostgresRegistryStore::connect(&settings)
            .await
            .map_err(|err| fail(&location, err))?;
        tracing::info!(db = %settings.db, server = %settings.address(), "Registry kept in PostgreSQL");
        return Ok(OpenedRegistry {
            store: Arc::new(store),
            location,
            elsewhere: "another metadata_store database",
        });
    }
    let db_path = loaded.registry_db_path();
    let location = db_path.display().to_string();
    let store = SqliteRegistryStore::open(db_path)
        .await
        .map_err(|err| fail(&location, err))?;
    Ok(OpenedRegistry {
        store: Arc::new(store),
        location,
        elsewhere: "another SQLITE_STORE_DIR",
    })
}

/// Validation has checked the ranges; the fallbacks are never used.
fn postgres_settings(config: &PostgresStoreConfig) -> PostgresSettings {
    PostgresSettings {
        host: config.host.clone(),
        port: u16::try_from(config.port).unwrap_or(5432),
        db: config.db.clone(),
        user: config.user.clone().unwrap_or_default(),
        password: config.password.clone().filter(|p| !p.is_empty()),
        max_connections: 4,
    }
}
