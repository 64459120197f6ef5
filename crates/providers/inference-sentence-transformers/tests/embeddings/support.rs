//! Shared helpers: where the real model is, and a provider with it registered.

use std::path::PathBuf;

use llama_stack_core::Result;
use llama_stack_inference::{Embeddings, InferenceProvider};
use llama_stack_provider_inference_sentence_transformers::{
    SentenceTransformersConfig, SentenceTransformersProvider,
};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{EmbeddingsRequest, Model, ModelType};

/// The all-MiniLM-L6-v2 folder scripts/fetch-minilm.sh writes, or `None` (with the reason
/// printed) when it is absent, so the test can skip. CI always fetches it first.
pub fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MINILM_MODEL_PATH")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".llama/test-models/all-MiniLM-L6-v2"))
        })?;
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: all-MiniLM-L6-v2 is not at {}; run scripts/fetch-minilm.sh",
            dir.display()
        );
        None
    }
}

pub fn embedding_model(provider_model_id: &str, dimension: u64) -> Model {
    Model {
        identifier: format!("sentence-transformers/{provider_model_id}"),
        provider_resource_id: provider_model_id.into(),
        provider_id: "sentence-transformers".into(),
        resource_type: "model".into(),
        metadata: serde_json::json!({ "embedding_dimension": dimension })
            .as_object()
            .cloned()
            .unwrap(),
        model_type: ModelType::Embedding,
        owner: None,
    }
}

pub fn provider(config: SentenceTransformersConfig) -> SentenceTransformersProvider {
    SentenceTransformersProvider::new(config, ProviderContext::default()).unwrap()
}

pub fn config_for(dir: &std::path::Path) -> SentenceTransformersConfig {
    SentenceTransformersConfig {
        model_path: Some(dir.to_string_lossy().into_owned()),
        ..Default::default()
    }
}

/// A provider serving the real MiniLM, with its model registered.
pub async fn minilm(config: SentenceTransformersConfig) -> (SentenceTransformersProvider, Model) {
    let provider = provider(config);
    let model = embedding_model("all-MiniLM-L6-v2", 384);
    provider.register_model(&model).await.unwrap();
    (provider, model)
}

pub fn request(texts: &[&str]) -> EmbeddingsRequest {
    EmbeddingsRequest {
        model_id: "all-MiniLM-L6-v2".into(),
        contents: texts.iter().map(|t| serde_json::json!(t)).collect(),
        text_truncation: None,
        output_dimension: None,
        task_type: None,
    }
}

pub async fn embed(
    provider: &SentenceTransformersProvider,
    model: &Model,
    request: EmbeddingsRequest,
) -> Result<Embeddings> {
    provider.embeddings(model, request).await
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
