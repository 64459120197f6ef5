//! Opening the provider over a temporary folder and a real SQLite registry.

use std::path::Path;
use std::sync::Arc;

use llama_stack_core::RegistryStore;
use llama_stack_memory::files::{FilesProvider, NewFile};
use llama_stack_provider_files_localfs::{LocalfsConfig, LocalfsFiles};
use llama_stack_stack::ProviderContext;
use llama_stack_storage::SqliteRegistryStore;

pub async fn registry(dir: &Path) -> Arc<dyn RegistryStore> {
    Arc::new(
        SqliteRegistryStore::open(&dir.join("registry.db"))
            .await
            .unwrap(),
    )
}

pub fn context(dir: &Path, registry: Option<Arc<dyn RegistryStore>>) -> ProviderContext {
    ProviderContext {
        provider_id: "localfs".into(),
        store_dir: Some(dir.to_path_buf()),
        registry,
        ..Default::default()
    }
}

/// The provider with default config: bytes under `<dir>/files`, records in `<dir>/registry.db`.
pub async fn open(dir: &Path) -> LocalfsFiles {
    open_with(dir, LocalfsConfig::default()).await
}

pub async fn open_with(dir: &Path, config: LocalfsConfig) -> LocalfsFiles {
    LocalfsFiles::open(config, context(dir, Some(registry(dir).await)))
        .await
        .unwrap()
}

pub fn new_file(name: &str, purpose: &str, content: &[u8]) -> NewFile {
    NewFile {
        filename: name.into(),
        purpose: purpose.into(),
        expires_after_seconds: None,
        content: content.to_vec(),
        owner: None,
    }
}

/// Names of the entries in the storage folder.
pub fn stored_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

pub async fn ids(
    provider: &impl FilesProvider,
    query: &llama_stack_memory::files::FileListQuery,
) -> Vec<String> {
    provider
        .list(query)
        .await
        .unwrap()
        .data
        .into_iter()
        .map(|f| f.id)
        .collect()
}
