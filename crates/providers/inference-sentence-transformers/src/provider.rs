//! The `InferenceProvider` implementation: request checks on the async side, encoding and
//! pair scoring on the engine threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::RwLock;

use async_trait::async_trait;
use candle_core::Device;
use llama_stack_core::{Error, ErrorKind, Result};
use llama_stack_inference::ops::embedding_texts;
use llama_stack_inference::rerank::rerank_texts;
use llama_stack_inference::{ChatStream, CompletionStream, Embeddings, InferenceProvider};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{
    ChatCompletionRequest, CompletionRequest, EmbeddingsRequest, HealthInfo, HealthStatus, Model,
    ModelType, RerankData, RerankRequest, RerankResponse,
};

use crate::config::SentenceTransformersConfig;
use crate::encoder::Truncation;
use crate::engine::{self, EngineHandle, RankerHandle};
use crate::model_files;
use crate::pooling::normalize_in_place;

pub struct SentenceTransformersProvider {
    config: SentenceTransformersConfig,
    device: Device,
    /// One engine per model folder, shared by every model id served from it.
    engines: tokio::sync::Mutex<HashMap<PathBuf, EngineHandle>>,
    /// Engines by provider model id.
    models: RwLock<HashMap<String, EngineHandle>>,
    /// One cross-encoder engine per model folder, shared like `engines`.
    ranker_engines: tokio::sync::Mutex<HashMap<PathBuf, RankerHandle>>,
    /// Cross-encoder engines by provider model id.
    rankers: RwLock<HashMap<String, RankerHandle>>,
}

fn embedding_dimension(model: &Model) -> Option<u64> {
    model
        .metadata
        .get("embedding_dimension")
        .and_then(|v| v.as_u64())
}

/// The lengths a Matryoshka model may be cut to, from `metadata.matryoshka_dimensions`.
fn matryoshka_dimensions(model: &Model) -> Result<Vec<usize>> {
    let Some(value) = model.metadata.get("matryoshka_dimensions") else {
        return Ok(Vec::new());
    };
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            Error::invalid(format!(
                "model '{}': metadata.matryoshka_dimensions must be a list of integers",
                model.identifier
            ))
        })
}

/// The length to cut vectors to, if any. Only a model registered with
/// `metadata.matryoshka_dimensions` was trained so that a prefix of its vector is itself an
/// embedding; cutting any other model's vector would return garbage silently.
fn cut_length(model: &Model, native: usize, requested: Option<u32>) -> Result<Option<usize>> {
    let Some(requested) = requested.map(|d| d as usize) else {
        return Ok(None);
    };
    if requested == native {
        return Ok(None);
    }
    let allowed = matryoshka_dimensions(model)?;
    if allowed.contains(&requested) && requested < native {
        return Ok(Some(requested));
    }
    let message = if allowed.is_empty() {
        format!(
            "model '{}' produces {native}-dimensional embeddings and is not a Matryoshka model (its registration has no metadata.matryoshka_dimensions); ask for {native} dimensions or leave the dimension unset",
            model.identifier
        )
    } else {
        format!(
            "model '{}' produces {native}-dimensional embeddings and can be cut to {:?} only; {requested} is not one of them",
            model.identifier, allowed
        )
    };
    Err(Error::invalid(message).with_location(vec!["body".into(), "output_dimension".into()]))
}

impl SentenceTransformersProvider {
    pub fn new(config: SentenceTransformersConfig, _context: ProviderContext) -> Result<Self> {
        let device = engine::parse_device(&config.device)?;
        Ok(SentenceTransformersProvider {
            config,
            device,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            models: RwLock::new(HashMap::new()),
            ranker_engines: tokio::sync::Mutex::new(HashMap::new()),
            rankers: RwLock::new(HashMap::new()),
        })
    }

    fn engine_for(&self, model: &Model) -> Result<EngineHandle> {
        self.models
            .read()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .get(&model.provider_resource_id)
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!(
                    "model '{}' is registered but not loaded by inline::sentence-transformers",
                    model.identifier
                ))
            })
    }

    /// The engine for the folder at `dir`, loading the model (off the runtime) the first time.
    async fn engine_at(&self, dir: PathBuf, model: &Model) -> Result<EngineHandle> {
        let mut engines = self.engines.lock().await;
        if let Some(handle) = engines.get(&dir) {
            check_dimension(model, handle.dimension, &dir)?;
            return Ok(handle.clone());
        }
        let load_dir = dir.clone();
        let files = tokio::task::spawn_blocking(move || model_files::inspect(&load_dir))
            .await
            .map_err(|e| Error::internal(format!("model inspection task failed: {e}")))??;
        // Checked before loading the weights, so a wrong registration fails fast.
        check_dimension(model, files.config.hidden_size, &dir)?;
        let (device, batch, queue) = (
            self.device.clone(),
            self.config.max_batch_size,
            self.config.max_queue,
        );
        let started = std::time::Instant::now();
        let handle =
            tokio::task::spawn_blocking(move || engine::start(&files, &device, batch, queue))
                .await
                .map_err(|e| Error::internal(format!("model loading task failed: {e}")))??;
        tracing::info!(dir = %dir.display(), dimension = handle.dimension,
            elapsed_ms = started.elapsed().as_millis() as u64, "Loaded embedding model");
        engines.insert(dir, handle.clone());
        Ok(handle)
    }
}

impl SentenceTransformersProvider {
    fn ranker_for(&self, model: &Model) -> Result<RankerHandle> {
        self.rankers
            .read()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .get(&model.provider_resource_id)
            .cloned()
            .ok_or_else(|| {
                Error::internal(format!(
                    "model '{}' is registered but not loaded by inline::sentence-transformers",
                    model.identifier
                ))
            })
    }

    /// The cross-encoder engine for the folder at `dir`, loading it (off the runtime) the
    /// first time.
    async fn ranker_at(&self, dir: PathBuf) -> Result<RankerHandle> {
        let mut engines = self.ranker_engines.lock().await;
        if let Some(handle) = engines.get(&dir) {
            return Ok(handle.clone());
        }
        let load_dir = dir.clone();
        let files =
            tokio::task::spawn_blocking(move || model_files::inspect_cross_encoder(&load_dir))
                .await
                .map_err(|e| Error::internal(format!("model inspection task failed: {e}")))??;
        let (device, batch, queue) = (
            self.device.clone(),
            self.config.max_batch_size,
            self.config.max_queue,
        );
        let started = std::time::Instant::now();
        let handle = tokio::task::spawn_blocking(move || {
            engine::start_ranker(&files, &device, batch, queue)
        })
        .await
        .map_err(|e| Error::internal(format!("model loading task failed: {e}")))??;
        tracing::info!(dir = %dir.display(),
            elapsed_ms = started.elapsed().as_millis() as u64, "Loaded rerank model");
        engines.insert(dir, handle.clone());
        Ok(handle)
    }

    async fn register_ranker(&self, model: &Model) -> Result<()> {
        let id = &model.provider_resource_id;
        let dir = model_files::locate(
            self.config.rerank_model_path.as_deref(),
            self.config.hf_cache_dir.as_deref(),
            id,
        )
        .map_err(|err| match err.kind() {
            ErrorKind::NotFound => Error::not_found(format!(
                "the files of rerank model '{id}' were not found ({}). Set this provider's rerank_model_path to a folder holding the cross-encoder (config.json, tokenizer.json, model.safetensors), or download {id} into the Hugging Face cache (`huggingface-cli download {id}`)",
                self.config
                    .rerank_model_path
                    .as_deref()
                    .filter(|p| !p.trim().is_empty())
                    .map_or("no rerank_model_path is set and the Hugging Face cache has no snapshot of it".to_string(),
                        |p| format!("rerank_model_path {p} does not exist")),
            )),
            _ => err,
        })?;
        let handle = self.ranker_at(dir).await?;
        self.rankers
            .write()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .insert(model.provider_resource_id.clone(), handle);
        Ok(())
    }
}

/// The answer for scores in item order; the stack sorts it.
fn rerank_data(scores: Vec<f32>) -> RerankResponse {
    RerankResponse {
        data: scores
            .into_iter()
            .enumerate()
            .map(|(index, score)| RerankData {
                index: index as u32,
                relevance_score: f64::from(score),
            })
            .collect(),
    }
}

fn check_dimension(model: &Model, hidden_size: usize, dir: &std::path::Path) -> Result<()> {
    match embedding_dimension(model) {
        Some(d) if d as usize == hidden_size => Ok(()),
        Some(d) => Err(Error::invalid(format!(
            "model '{}' is registered with metadata.embedding_dimension {d}, but the model at {} produces {hidden_size}-dimensional embeddings; register it with embedding_dimension {hidden_size}",
            model.identifier,
            dir.display()
        ))),
        None => Err(Error::invalid(format!(
            "model '{}' needs metadata.embedding_dimension ({hidden_size} for the model at {})",
            model.identifier,
            dir.display()
        ))),
    }
}

#[async_trait]
impl InferenceProvider for SentenceTransformersProvider {
    async fn register_model(&self, model: &Model) -> Result<()> {
        match model.model_type {
            ModelType::Embedding => {}
            ModelType::Rerank => return self.register_ranker(model).await,
            ModelType::Llm => {
                return Err(Error::invalid(format!(
                    "inline::sentence-transformers serves embedding and rerank models only; register '{}' with model_type 'embedding' (or 'rerank' for a cross-encoder), or register it on a language-model provider",
                    model.identifier
                )));
            }
        }
        matryoshka_dimensions(model)?;
        let dir = model_files::locate(
            self.config.model_path.as_deref(),
            self.config.hf_cache_dir.as_deref(),
            &model.provider_resource_id,
        )?;
        let handle = self.engine_at(dir, model).await?;
        self.models
            .write()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .insert(model.provider_resource_id.clone(), handle);
        Ok(())
    }

    async fn unregister_model(&self, model: &Model) -> Result<()> {
        self.models
            .write()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .remove(&model.provider_resource_id);
        self.rankers
            .write()
            .map_err(|_| Error::internal("model table lock poisoned"))?
            .remove(&model.provider_resource_id);
        Ok(())
    }

    async fn chat_completion(
        &self,
        model: &Model,
        _request: ChatCompletionRequest,
    ) -> Result<ChatStream> {
        Err(Error::unsupported(format!(
            "'{}' is an embedding model on inline::sentence-transformers; it cannot chat",
            model.identifier
        )))
    }

    async fn completion(
        &self,
        model: &Model,
        _request: CompletionRequest,
    ) -> Result<CompletionStream> {
        Err(Error::unsupported(format!(
            "'{}' is an embedding model on inline::sentence-transformers; it cannot complete text",
            model.identifier
        )))
    }

    async fn embeddings(&self, model: &Model, request: EmbeddingsRequest) -> Result<Embeddings> {
        let engine = self.engine_for(model)?;
        let truncation = Truncation::parse(request.text_truncation.as_deref())?;
        let cut = cut_length(model, engine.dimension, request.output_dimension)?;
        let mut texts = embedding_texts(&request.contents)?;
        // Models trained with instructions (e.g. "query: ") define them per task; most,
        // all-MiniLM-L6-v2 included, define none and embed every task alike.
        if let Some(prompt) = request
            .task_type
            .as_deref()
            .and_then(|task| engine.prompts.get(task))
        {
            texts.iter_mut().for_each(|t| t.insert_str(0, prompt));
        }
        let encoded = engine.embed(texts, truncation).await?;
        let mut vectors = encoded.vectors;
        if let Some(length) = cut {
            for vector in &mut vectors {
                vector.truncate(length);
                normalize_in_place(vector);
            }
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens: u32::try_from(encoded.tokens).unwrap_or(u32::MAX),
        })
    }

    async fn rerank(&self, model: &Model, request: RerankRequest) -> Result<RerankResponse> {
        let ranker = self.ranker_for(model)?;
        let (query, items) = rerank_texts(&request)?;
        Ok(rerank_data(ranker.score(query, items).await?))
    }

    async fn health(&self) -> HealthInfo {
        let loaded = self.models.read().map(|m| m.len()).unwrap_or(0);
        let rankers = self.rankers.read().map(|m| m.len()).unwrap_or(0);
        let message = if rankers == 0 {
            format!("{loaded} embedding model(s) loaded")
        } else {
            format!("{loaded} embedding model(s) and {rankers} rerank model(s) loaded")
        };
        HealthInfo {
            status: HealthStatus::Ok,
            message: Some(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiny_cross_encoder::{self, Head};

    fn model(metadata: serde_json::Value) -> Model {
        Model {
            identifier: "st/m".into(),
            provider_resource_id: "m".into(),
            provider_id: "st".into(),
            resource_type: "model".into(),
            metadata: metadata.as_object().cloned().unwrap_or_default(),
            model_type: ModelType::Embedding,
            owner: None,
        }
    }

    #[test]
    fn output_dimension_rules() {
        let plain = model(serde_json::json!({"embedding_dimension": 384}));
        assert_eq!(cut_length(&plain, 384, None).unwrap(), None);
        assert_eq!(cut_length(&plain, 384, Some(384)).unwrap(), None);
        let err = cut_length(&plain, 384, Some(128)).unwrap_err();
        assert!(err.message().contains("not a Matryoshka model"), "{err}");

        let nested = model(serde_json::json!({
            "embedding_dimension": 768, "matryoshka_dimensions": [512, 256]
        }));
        assert_eq!(cut_length(&nested, 768, Some(256)).unwrap(), Some(256));
        let err = cut_length(&nested, 768, Some(100)).unwrap_err();
        assert!(err.message().contains("[512, 256]"), "{err}");

        let broken = model(serde_json::json!({"matryoshka_dimensions": "all"}));
        assert!(matryoshka_dimensions(&broken).is_err());
    }

    fn ranker_model(id: &str) -> Model {
        Model {
            model_type: ModelType::Rerank,
            provider_resource_id: id.into(),
            ..model(serde_json::json!({}))
        }
    }

    fn provider_at(dir: &std::path::Path) -> SentenceTransformersProvider {
        let config = SentenceTransformersConfig {
            rerank_model_path: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        };
        SentenceTransformersProvider::new(config, ProviderContext::default()).unwrap()
    }

    #[tokio::test]
    async fn a_cross_encoder_registers_as_a_rerank_model_and_scores_every_item() {
        let dir = tempfile::tempdir().unwrap();
        tiny_cross_encoder::write(dir.path(), Head::Random, serde_json::json!({}));
        let provider = provider_at(dir.path());
        let model = ranker_model("tiny-ranker");
        provider.register_model(&model).await.unwrap();
        let request: RerankRequest = serde_json::from_value(serde_json::json!({
            "model": "tiny-ranker", "query": "where is the cat",
            "items": ["the cat sat on the mat", {"type": "text", "text": "a red car"}, "dog"],
        }))
        .unwrap();
        let answer = provider.rerank(&model, request.clone()).await.unwrap();
        let indices: Vec<u32> = answer.data.iter().map(|d| d.index).collect();
        assert_eq!(indices, [0, 1, 2], "in item order; the stack sorts");
        assert!(
            answer
                .data
                .iter()
                .all(|d| d.relevance_score > 0.0 && d.relevance_score < 1.0)
        );
        let health = provider.health().await;
        assert!(health.message.unwrap().contains("1 rerank model(s)"));

        // An embedding model is not a reranker.
        let err = provider_at(dir.path())
            .rerank(&model, request)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), llama_stack_core::ErrorKind::Internal);
    }

    #[tokio::test]
    async fn a_missing_cross_encoder_says_where_it_was_looked_for() {
        let cache = tempfile::tempdir().unwrap();
        let config = SentenceTransformersConfig {
            hf_cache_dir: Some(cache.path().to_string_lossy().into_owned()),
            // Embedding models' folder: never used for rerank models.
            model_path: Some("/models/minilm".into()),
            ..Default::default()
        };
        let provider =
            SentenceTransformersProvider::new(config, ProviderContext::default()).unwrap();
        let err = provider
            .register_model(&ranker_model("org/ranker"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("rerank model 'org/ranker'"), "{err}");
        assert!(err.message().contains("rerank_model_path"), "{err}");
    }

    #[tokio::test]
    async fn folders_that_are_not_one_label_bert_classifiers_are_refused() {
        for (extra, expected) in [
            (
                serde_json::json!({"architectures": ["BertModel"]}),
                "architectures include BertForSequenceClassification; this one lists BertModel",
            ),
            (
                serde_json::json!({"id2label": {"0": "no", "1": "yes"}}),
                "the classifier has 2 labels",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            tiny_cross_encoder::write(dir.path(), Head::Random, extra);
            let err = provider_at(dir.path())
                .register_model(&ranker_model("m"))
                .await
                .unwrap_err();
            assert_eq!(err.kind(), llama_stack_core::ErrorKind::Unsupported);
            assert!(err.message().contains(expected), "{err}");
        }
    }

    #[test]
    fn dimension_must_match_the_hidden_size() {
        let dir = std::path::Path::new("/models/m");
        assert!(
            check_dimension(
                &model(serde_json::json!({"embedding_dimension": 384})),
                384,
                dir
            )
            .is_ok()
        );
        let err = check_dimension(
            &model(serde_json::json!({"embedding_dimension": 768})),
            384,
            dir,
        )
        .unwrap_err();
        assert!(err.message().contains("embedding_dimension 384"), "{err}");
    }
}
