//! Every shipped distribution loads, and `local` says what its README promises.

use std::path::{Path, PathBuf};

use llama_stack_core::Api;
use llama_stack_distribution::{
    builtin_registry, env::substitute, load, load_with, schema::RunConfig,
};
use llama_stack_types::ModelType;

use crate::support::{env, repo_dir};

fn run_configs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_dir().join("distributions"))
        .expect("distributions/ exists")
        .flatten()
        .map(|e| e.path().join("run.yaml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// A value for every variable a file requires (`${env.NAME}` without a default).
fn dummy_env(text: &str) -> llama_stack_distribution::EnvMap {
    let required = regex::Regex::new(r"\$\{env\.([A-Z0-9_]+)\}").unwrap();
    let mut vars = env(&[("SQLITE_STORE_DIR", "/tmp/llama-stack-validate-test")]);
    for caps in required.captures_iter(text) {
        vars.insert(
            caps[1].to_string(),
            format!("dummy-{}", caps[1].to_lowercase()),
        );
    }
    vars
}

#[test]
fn every_distribution_validates() {
    let files = run_configs();
    assert!(!files.is_empty(), "no distributions/*/run.yaml found");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let loaded = load_with(&file, &dummy_env(&text), &builtin_registry())
            .unwrap_or_else(|errors| panic!("{} does not validate:\n{errors}", file.display()));
        assert!(
            !loaded.providers.is_empty(),
            "{} builds no provider",
            file.display()
        );
    }
}

#[test]
fn every_distribution_has_a_readme() {
    for file in run_configs() {
        let readme = file.with_file_name("README.md");
        assert!(readme.is_file(), "{} is missing", readme.display());
    }
}

fn local() -> PathBuf {
    repo_dir().join("distributions/local/run.yaml")
}

#[test]
fn local_defaults() {
    let loaded = load_with(&local(), &env(&[]), &builtin_registry()).unwrap();
    assert_eq!(loaded.config.image_name, "local");
    assert_eq!(loaded.apis, [Api::Inference]);
    assert_eq!(loaded.server.port, 8321);
    assert_eq!(loaded.server.host, None);
    assert!(
        loaded.not_implemented.is_empty(),
        "{:?}",
        loaded.not_implemented
    );
    assert!(loaded.disabled.is_empty(), "{:?}", loaded.disabled);
    assert_eq!(
        loaded.registry_db_path(),
        Path::new("/home/tester/.llama/distributions/local/registry.db")
    );
    assert_eq!(
        loaded.store_dir(),
        Path::new("/home/tester/.llama/distributions/local")
    );

    let provider = &loaded.providers[0];
    assert_eq!(provider.provider_id, "candle");
    assert_eq!(provider.provider_type, "inline::candle");
    assert_eq!(provider.config["model_path"], serde_json::Value::Null);
    assert_eq!(provider.config["device"], "cpu");

    let model = &loaded.models[0].request;
    assert_eq!(model.model_id, "meta-llama/Llama-3.2-1B-Instruct");
    assert_eq!(model.provider_id.as_deref(), Some("candle"));
    assert_eq!(model.model_type, Some(ModelType::Llm));

    let embedder = &loaded.providers[1];
    assert_eq!(embedder.provider_id, "sentence-transformers");
    assert_eq!(embedder.provider_type, "inline::sentence-transformers");
    assert_eq!(embedder.config["model_path"], serde_json::Value::Null);
    let model = &loaded.models[1].request;
    assert_eq!(model.model_id, "all-MiniLM-L6-v2");
    assert_eq!(model.provider_id.as_deref(), Some("sentence-transformers"));
    assert_eq!(model.model_type, Some(ModelType::Embedding));
    assert_eq!(model.metadata.as_ref().unwrap()["embedding_dimension"], 384);
}

#[test]
fn local_follows_its_variables() {
    let vars = env(&[
        ("LLAMA_MODEL_PATH", "/models/Llama-3.2-3B-Instruct"),
        ("EMBEDDING_MODEL_PATH", "/models/all-MiniLM-L6-v2"),
        ("INFERENCE_MODEL", "meta-llama/Llama-3.2-3B-Instruct"),
        ("SQLITE_STORE_DIR", "~/stores/local"),
        ("LLAMA_STACK_PORT", "9000"),
    ]);
    let loaded = load_with(&local(), &vars, &builtin_registry()).unwrap();
    assert_eq!(
        loaded.providers[0].config["model_path"],
        "/models/Llama-3.2-3B-Instruct"
    );
    assert_eq!(
        loaded.models[0].request.model_id,
        "meta-llama/Llama-3.2-3B-Instruct"
    );
    assert_eq!(
        loaded.providers[1].config["model_path"],
        "/models/all-MiniLM-L6-v2"
    );
    assert_eq!(loaded.server.port, 9000);
    assert_eq!(
        loaded.registry_db_path(),
        Path::new("/home/tester/stores/local/registry.db")
    );
}

#[test]
fn load_prefers_overrides_to_the_process_environment() {
    let overrides = [
        ("LLAMA_STACK_PORT", "9123"),
        ("SQLITE_STORE_DIR", "/tmp/llama-stack-override-test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let loaded = load(&local(), &overrides).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.server.port, 9123);
    assert_eq!(
        loaded.store_dir(),
        Path::new("/tmp/llama-stack-override-test")
    );
    assert_eq!(loaded.source.as_deref(), Some(local().as_path()));
}

/// The typed schema reads the substituted file directly too.
#[test]
fn local_deserializes_as_run_config() {
    let text = std::fs::read_to_string(local()).unwrap();
    let yaml: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let (value, errors) = substitute(&yaml, &env(&[]));
    assert!(errors.is_empty(), "{errors:?}");
    let config: RunConfig = serde_json::from_value(value).unwrap();
    assert_eq!(config.version, 2);
    assert_eq!(
        config.providers[&Api::Inference][0].provider_type,
        "inline::candle"
    );
    assert_eq!(config.server.port, 8321);
}
