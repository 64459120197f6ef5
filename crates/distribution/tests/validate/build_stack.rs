//! `build`: providers, the registry store and model registration, across restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use llama_stack_core::{Api, ConfigIssue, Error, ErrorKind, Result, config::parse_config};
use llama_stack_distribution::{build, builtin_registry, load_str, load_with};
use llama_stack_inference::{ChatStream, CompletionStream, InferenceProvider, ProviderModel};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry, ProviderSpec};
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, Model, ModelType, RegisterModelRequest,
};
use serde::Deserialize;

use crate::support::{env, repo_dir};

/// Contexts the test provider was built with, to check what `build` hands providers.
static CONTEXTS: Mutex<Vec<ProviderContext>> = Mutex::new(Vec::new());

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoConfig {
    #[serde(default)]
    api_key: Option<String>,
    /// Model ids the provider refuses to register.
    #[serde(default)]
    refuse: Vec<String>,
    /// Model ids whose files the provider does not find.
    #[serde(default)]
    missing: Vec<String>,
    /// Whether the provider lists models of its own (from [`LISTS`]).
    #[serde(default)]
    lists_models: bool,
}

/// The models each listing test provider offers, by provider id.
static LISTS: Mutex<Vec<(String, Vec<String>)>> = Mutex::new(Vec::new());

fn offer(provider_id: &str, models: &[&str]) {
    let mut lists = LISTS.lock().unwrap();
    lists.retain(|(id, _)| id != provider_id);
    lists.push((
        provider_id.to_string(),
        models.iter().map(|m| m.to_string()).collect(),
    ));
}

struct EchoProvider {
    refuse: Vec<String>,
    missing: Vec<String>,
    /// Set when the provider lists models: its id in [`LISTS`].
    lists_as: Option<String>,
}

#[async_trait]
impl InferenceProvider for EchoProvider {
    async fn register_model(&self, model: &Model) -> Result<()> {
        if self.refuse.contains(&model.provider_resource_id) {
            return Err(Error::invalid("no weights for this model"));
        }
        if self.missing.contains(&model.provider_resource_id) {
            return Err(Error::not_found("model files not found; fetch them first"));
        }
        Ok(())
    }
    async fn chat_completion(&self, _: &Model, _: ChatCompletionRequest) -> Result<ChatStream> {
        Err(Error::unsupported("test provider"))
    }
    async fn completion(&self, _: &Model, _: CompletionRequest) -> Result<CompletionStream> {
        Err(Error::unsupported("test provider"))
    }
    async fn list_provider_models(&self) -> Option<Result<Vec<ProviderModel>>> {
        let id = self.lists_as.as_ref()?;
        let lists = LISTS.lock().unwrap();
        let Some((_, models)) = lists.iter().find(|(p, _)| p == id) else {
            return Some(Err(Error::new(ErrorKind::Upstream, "upstream unreachable")));
        };
        Some(Ok(models
            .iter()
            .map(|m| ProviderModel {
                provider_resource_id: m.clone(),
                model_type: ModelType::Llm,
                metadata: Default::default(),
            })
            .collect()))
    }
}

fn validate(value: &serde_json::Value) -> Vec<ConfigIssue> {
    parse_config::<EchoConfig>(value).err().unwrap_or_default()
}

fn build_echo(
    value: serde_json::Value,
    context: ProviderContext,
) -> BoxFuture<'static, Result<ProviderInstance>> {
    async move {
        let config = parse_config::<EchoConfig>(&value)
            .map_err(|issues| Error::invalid(format!("{issues:?}")))?;
        let _ = config.api_key;
        let lists_as = config.lists_models.then(|| context.provider_id.clone());
        CONTEXTS.lock().unwrap().push(context);
        let provider = EchoProvider {
            refuse: config.refuse,
            missing: config.missing,
            lists_as,
        };
        Ok(ProviderInstance::Inference(Arc::new(provider)))
    }
    .boxed()
}

fn registry() -> ProviderRegistry {
    let mut registry = ProviderRegistry::new();
    registry.register(ProviderSpec {
        api: Api::Inference,
        provider_type: "inline::echo-test",
        aliases: &["inline::echo-alias"],
        description: "test provider",
        sample_config: "{}",
        validate,
        build: build_echo,
    });
    registry
}

fn run_yaml(provider_id: &str, models: &str) -> String {
    format!(
        r#"version: 2
image_name: echo
providers:
  inference:
  - provider_id: {provider_id}
    provider_type: inline::echo-alias
    config:
      api_key: ${{env.ECHO_KEY:=secret-value}}
      refuse: [refused-model]
      missing: [missing-model]
metadata_store:
  type: sqlite
  db_path: ${{env.SQLITE_STORE_DIR}}/registry.db
models:
{models}server:
  port: 8400
"#
    )
}

fn store_env(dir: &Path) -> llama_stack_distribution::EnvMap {
    env(&[("SQLITE_STORE_DIR", dir.to_str().unwrap())])
}

#[tokio::test]
async fn registered_models_persist_across_builds() {
    let store = tempfile::tempdir().unwrap();
    let text = run_yaml(
        "echo-persist",
        "- model_id: m1\n  provider_id: echo-persist\n  metadata: {}\n",
    );
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let built = build(loaded).await.unwrap();
    assert_eq!(built.server.port, 8400);
    let stack = built.stack;
    assert_eq!(stack.info.image_name, "echo");
    assert_eq!(stack.info.apis, [Api::Inference]);

    let handle = &stack.providers()[0];
    assert_eq!(handle.provider_type, "inline::echo-test");
    assert_eq!(handle.redacted_config["api_key"], "********");
    let context = CONTEXTS
        .lock()
        .unwrap()
        .iter()
        .find(|c| c.provider_id == "echo-persist")
        .cloned()
        .expect("provider built with its id");
    assert_eq!(context.store_dir.as_deref(), Some(store.path()));

    let ids: Vec<String> = stack
        .inference
        .list_models()
        .await
        .into_iter()
        .map(|m| m.identifier)
        .collect();
    assert_eq!(ids, ["echo-persist/m1"]);
    stack
        .inference
        .register_model(RegisterModelRequest {
            model_id: "added-at-runtime".into(),
            provider_model_id: None,
            provider_id: None,
            metadata: None,
            model_type: Some(ModelType::Llm),
        })
        .await
        .unwrap();
    drop(stack);

    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let stack = build(loaded).await.unwrap().stack;
    let ids: Vec<String> = stack
        .inference
        .list_models()
        .await
        .into_iter()
        .map(|m| m.identifier)
        .collect();
    assert_eq!(ids, ["echo-persist/added-at-runtime", "echo-persist/m1"]);
}

#[tokio::test]
async fn refused_model_fails_the_build_naming_model_and_path() {
    let store = tempfile::tempdir().unwrap();
    let text = run_yaml(
        "echo-refuse",
        "- model_id: fine\n  provider_id: echo-refuse\n- model_id: refused-model\n  provider_id: echo-refuse\n",
    );
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let err = build(loaded).await.err().expect("build must fail");
    let message = err.to_string();
    assert!(message.contains("models[1]"), "{message}");
    assert!(message.contains("refused-model"), "{message}");
    assert!(message.contains("no weights"), "{message}");
}

/// Log lines written while the returned guard lives (on this thread).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

const EMBEDDER: &str = "- model_id: chat\n  provider_id: {id}\n- model_id: missing-model\n  provider_id: {id}\n  model_type: embedding\n  metadata: {embedding_dimension: 8}\n";

#[tokio::test]
async fn embedding_model_without_files_is_left_out_with_one_warning() {
    let store = tempfile::tempdir().unwrap();
    let text = run_yaml("echo-missing", &EMBEDDER.replace("{id}", "echo-missing"));
    // First run: the files are there, so the model is registered and stored.
    let found = text.replace("missing: [missing-model]", "missing: []");
    let loaded = load_str(&found, &store_env(store.path()), &registry()).unwrap();
    let stack = build(loaded).await.unwrap().stack;
    assert_eq!(stack.inference.list_models().await.len(), 2);
    drop(stack);

    // Then they are gone: the stored copy and the run.yaml entry are one model, one warning.
    let (logs, _guard) = capture_logs();
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let stack = build(loaded).await.expect("starts without the model").stack;
    let ids: Vec<String> = stack
        .inference
        .list_models()
        .await
        .into_iter()
        .map(|m| m.identifier)
        .collect();
    assert_eq!(ids, ["echo-missing/chat"]);
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("Embedding model left out"), "{logs}");
    assert!(warnings[0].contains("fetch them first"), "{logs}");
    assert!(warnings[0].contains("models[1]"), "{logs}");
}

#[tokio::test]
async fn language_model_without_files_still_fails_the_build() {
    let store = tempfile::tempdir().unwrap();
    let text = run_yaml(
        "echo-missing-llm",
        "- model_id: missing-model\n  provider_id: echo-missing-llm\n",
    );
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let message = build(loaded).await.err().expect("fatal").to_string();
    assert!(message.contains("models[0]"), "{message}");
    assert!(message.contains("fetch them first"), "{message}");
}

#[tokio::test]
async fn changed_model_conflicts_with_the_stored_one() {
    let store = tempfile::tempdir().unwrap();
    let first = run_yaml(
        "echo-change",
        "- model_id: m\n  provider_id: echo-change\n  metadata: {revision: 1}\n",
    );
    let second = first.replace("revision: 1", "revision: 2");
    let loaded = load_str(&first, &store_env(store.path()), &registry()).unwrap();
    drop(build(loaded).await.unwrap());
    let loaded = load_str(&second, &store_env(store.path()), &registry()).unwrap();
    let message = build(loaded).await.err().expect("conflict").to_string();
    assert!(message.contains("models[0]"), "{message}");
    assert!(message.contains("SQLITE_STORE_DIR"), "{message}");
}

#[tokio::test]
async fn unopenable_store_is_reported() {
    let store = tempfile::tempdir().unwrap();
    let blocker: PathBuf = store.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let text = run_yaml("echo-store", "  []\n");
    let loaded = load_str(&text, &store_env(&blocker), &registry()).unwrap();
    let message = build(loaded).await.err().expect("store error").to_string();
    assert!(message.contains("metadata_store"), "{message}");
}

/// The shipped `local` distribution on the real candle provider with a tiny test model: the
/// run.yaml model loads, and its registration persists across a second build.
#[tokio::test]
async fn local_distribution_builds_on_candle() {
    use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};
    let tokenizer = test_model::default_tokenizer_path();
    assert!(tokenizer.is_file(), "run scripts/fetch-tokenizer.sh first");
    let model_dir = tempfile::tempdir().unwrap();
    test_model::create(
        model_dir.path(),
        &TestModelOptions {
            preset: Preset::Tiny,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer,
            seed: 0,
        },
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let path = repo_dir().join("distributions/local/run.yaml");
    let mut vars = store_env(store.path());
    vars.insert(
        "LLAMA_MODEL_PATH".into(),
        model_dir.path().to_string_lossy().into_owned(),
    );
    vars.insert(
        "EMBEDDING_MODEL_PATH".into(),
        "/nonexistent/all-MiniLM-L6-v2".into(),
    );
    let loaded = load_with(&path, &vars, &builtin_registry()).unwrap();
    let stack = build(loaded)
        .await
        .expect("the local distribution builds")
        .stack;
    let model = stack
        .inference
        .get_model("candle/meta-llama/Llama-3.2-1B-Instruct")
        .await
        .unwrap();
    assert_eq!(model.provider_id, "candle");
    drop(stack);

    let loaded = load_with(&path, &vars, &builtin_registry()).unwrap();
    let stack = build(loaded).await.unwrap().stack;
    // The embedding model's files are absent here, so it is left out.
    assert_eq!(stack.inference.list_models().await.len(), 1);
    assert!(store.path().join("registry.db").is_file());

    // Without model files the build fails and names the model entry.
    vars.insert("LLAMA_MODEL_PATH".into(), "/nonexistent/model".into());
    let other_store = tempfile::tempdir().unwrap();
    vars.extend(store_env(other_store.path()));
    let loaded = load_with(&path, &vars, &builtin_registry()).unwrap();
    let message = build(loaded)
        .await
        .err()
        .expect("missing model")
        .to_string();
    assert!(message.contains("models[0]"), "{message}");
    assert!(message.contains("/nonexistent/model"), "{message}");
}

/// The shipped `local` distribution with the real all-MiniLM-L6-v2 (scripts/fetch-minilm.sh):
/// both models are served, and embeddings route to the sentence-transformers provider.
#[tokio::test]
async fn local_distribution_serves_minilm_embeddings() {
    use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};
    let minilm = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".llama/test-models/all-MiniLM-L6-v2");
    if !minilm.join("model.safetensors").is_file() {
        eprintln!(
            "skipping: all-MiniLM-L6-v2 is not at {}; run scripts/fetch-minilm.sh",
            minilm.display()
        );
        return;
    }
    let tokenizer = test_model::default_tokenizer_path();
    assert!(tokenizer.is_file(), "run scripts/fetch-tokenizer.sh first");
    let model_dir = tempfile::tempdir().unwrap();
    test_model::create(
        model_dir.path(),
        &TestModelOptions {
            preset: Preset::Tiny,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer,
            seed: 0,
        },
    )
    .unwrap();
    let store = tempfile::tempdir().unwrap();
    let mut vars = store_env(store.path());
    vars.insert(
        "LLAMA_MODEL_PATH".into(),
        model_dir.path().to_string_lossy().into_owned(),
    );
    vars.insert(
        "EMBEDDING_MODEL_PATH".into(),
        minilm.to_string_lossy().into_owned(),
    );
    let path = repo_dir().join("distributions/local/run.yaml");
    let loaded = load_with(&path, &vars, &builtin_registry()).unwrap();
    let stack = build(loaded).await.expect("builds").stack;
    let model = stack
        .inference
        .get_model("sentence-transformers/all-MiniLM-L6-v2")
        .await
        .unwrap();
    assert_eq!(model.model_type, ModelType::Embedding);
    let response = stack
        .inference
        .embeddings(llama_stack_types::EmbeddingsRequest {
            model_id: "all-MiniLM-L6-v2".into(),
            contents: vec![serde_json::json!("hello")],
            text_truncation: None,
            output_dimension: None,
            task_type: None,
        })
        .await
        .unwrap();
    assert_eq!(response.embeddings[0].len(), 384);
}

fn identifiers(models: Vec<Model>) -> Vec<String> {
    models.into_iter().map(|m| m.identifier).collect()
}

#[tokio::test]
async fn provider_listed_models_are_served_beside_registered_ones_and_not_stored() {
    let store = tempfile::tempdir().unwrap();
    let text = run_yaml(
        "echo-lists",
        "- model_id: pinned\n  provider_id: echo-lists\n- model_id: qwen-alias\n  provider_id: echo-lists\n  provider_model_id: qwen:14b\n",
    )
    .replace(
        "missing: [missing-model]",
        "missing: [missing-model]\n      lists_models: true",
    );
    offer("echo-lists", &["llama3.2:3b", "pinned", "qwen:14b"]);
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let stack = build(loaded).await.unwrap().stack;
    let outcome = stack.inference.refresh_provider_models().await;
    assert_eq!(
        outcome.listed["echo-lists"], 1,
        "pinned and qwen:14b are registered"
    );
    assert_eq!(
        identifiers(stack.inference.list_models().await),
        ["echo-lists/llama3.2:3b", "echo-lists/pinned", "qwen-alias"]
    );
    // A registered alias keeps its short id unambiguous.
    let model = stack.inference.get_model("qwen:14b").await.unwrap();
    assert_eq!(model.identifier, "qwen-alias");
    // The short id resolves to the listed model.
    let model = stack.inference.get_model("llama3.2:3b").await.unwrap();
    assert_eq!(model.identifier, "echo-lists/llama3.2:3b");

    // A model the upstream stops offering goes; an unreachable upstream keeps the last list.
    offer("echo-lists", &["qwen:7b"]);
    stack.inference.refresh_provider_models().await;
    assert_eq!(
        identifiers(stack.inference.list_models().await),
        ["echo-lists/pinned", "echo-lists/qwen:7b", "qwen-alias"]
    );
    LISTS.lock().unwrap().retain(|(id, _)| id != "echo-lists");
    let outcome = stack.inference.refresh_provider_models().await;
    assert!(outcome.failed.contains_key("echo-lists"));
    assert_eq!(stack.inference.list_models().await.len(), 3);

    // A listed model can be registered for good; then it is stored like any other.
    stack
        .inference
        .register_model(RegisterModelRequest {
            model_id: "qwen:7b".into(),
            provider_model_id: None,
            provider_id: Some("echo-lists".into()),
            metadata: None,
            model_type: None,
        })
        .await
        .unwrap();
    drop(stack);
    let loaded = load_str(&text, &store_env(store.path()), &registry()).unwrap();
    let stack = build(loaded).await.unwrap().stack;
    assert_eq!(
        identifiers(stack.inference.list_models().await),
        ["echo-lists/pinned", "echo-lists/qwen:7b", "qwen-alias"],
        "listed models are not stored, registered ones are"
    );
}
