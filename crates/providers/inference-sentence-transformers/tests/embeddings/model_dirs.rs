//! Registration: where models are found, and the clear errors for wrong registrations and bad
//! model folders (never a panic).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use llama_stack_core::ErrorKind;
use llama_stack_inference::InferenceProvider;
use llama_stack_provider_inference_sentence_transformers::SentenceTransformersConfig;
use llama_stack_types::ModelType;

use crate::support::{
    config_for, dot, embed, embedding_model, minilm, minilm_dir, provider, request,
};

/// A folder with the real model's small files and a link to (or a copy of) its weights.
fn copy_of(source: &Path, weights: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in ["config.json", "tokenizer.json", "modules.json"] {
        std::fs::copy(source.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        source.join("1_Pooling/config.json"),
        dir.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    if weights {
        std::os::unix::fs::symlink(
            source.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
    }
    dir
}

async fn register_error(dir: &Path) -> llama_stack_core::Error {
    provider(config_for(dir))
        .register_model(&embedding_model("m", 384))
        .await
        .expect_err("registration must fail")
}

#[tokio::test]
async fn a_language_model_registration_is_refused() {
    let Some(dir) = minilm_dir() else { return };
    let mut model = embedding_model("all-MiniLM-L6-v2", 384);
    model.model_type = ModelType::Llm;
    let err = provider(config_for(&dir))
        .register_model(&model)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("embedding and rerank models only"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_embedding_dimension_is_refused() {
    let Some(dir) = minilm_dir() else { return };
    let err = provider(config_for(&dir))
        .register_model(&embedding_model("all-MiniLM-L6-v2", 768))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("embedding_dimension 768"), "{err}");
    assert!(err.message().contains("384"), "{err}");
}

#[tokio::test]
async fn missing_model_files_are_not_found() {
    let err = register_error(Path::new("/nonexistent/all-MiniLM-L6-v2")).await;
    assert_eq!(err.kind(), ErrorKind::NotFound);

    let cache = tempfile::tempdir().unwrap();
    let config = SentenceTransformersConfig {
        hf_cache_dir: Some(cache.path().to_string_lossy().into_owned()),
        ..Default::default()
    };
    let err = provider(config)
        .register_model(&embedding_model("all-MiniLM-L6-v2", 384))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.message().contains("scripts/fetch-minilm.sh"), "{err}");
}

#[tokio::test]
async fn bad_model_folders_give_clear_errors() {
    let Some(source) = minilm_dir() else { return };

    let empty = tempfile::tempdir().unwrap();
    let err = register_error(empty.path()).await;
    assert!(err.message().contains("no config.json"), "{err}");

    let no_weights = copy_of(&source, false);
    let err = register_error(no_weights.path()).await;
    assert!(
        err.message().contains("model.safetensors is missing"),
        "{err}"
    );

    let garbage = copy_of(&source, false);
    std::fs::write(garbage.path().join("model.safetensors"), b"not safetensors").unwrap();
    let err = register_error(garbage.path()).await;
    assert!(
        err.message().contains("cannot read the safetensors"),
        "{err}"
    );

    let partial = copy_of(&source, false);
    let mut tensors = HashMap::new();
    tensors.insert(
        "embeddings.word_embeddings.weight".to_string(),
        Tensor::zeros((30522, 384), candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "embeddings.LayerNorm.weight".to_string(),
        Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, partial.path().join("model.safetensors")).unwrap();
    let err = register_error(partial.path()).await;
    assert!(err.message().contains("do not match config.json"), "{err}");
    assert!(
        err.message()
            .contains("embeddings.LayerNorm.weight has shape [7]"),
        "{err}"
    );
    assert!(err.message().contains("missing tensor"), "{err}");

    let broken_config = copy_of(&source, true);
    std::fs::write(
        broken_config.path().join("config.json"),
        "{\"hidden_size\": ",
    )
    .unwrap();
    let err = register_error(broken_config.path()).await;
    assert!(err.message().contains("not valid JSON"), "{err}");

    let broken_tokenizer = copy_of(&source, true);
    std::fs::write(broken_tokenizer.path().join("tokenizer.json"), "{}").unwrap();
    let err = register_error(broken_tokenizer.path()).await;
    assert!(err.message().contains("tokenizer.json"), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
}

#[tokio::test]
async fn found_in_the_hf_cache_under_the_sentence_transformers_name() {
    let Some(source) = minilm_dir() else { return };
    let cache = tempfile::tempdir().unwrap();
    let repo = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    std::fs::create_dir_all(snapshot.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&source, &snapshot).unwrap();
    let config = SentenceTransformersConfig {
        hf_cache_dir: Some(cache.path().to_string_lossy().into_owned()),
        ..Default::default()
    };
    let (provider, model) = minilm(config).await;
    let out = embed(&provider, &model, request(&["hello"])).await.unwrap();
    assert_eq!(out.vectors[0].len(), 384);
}

#[tokio::test]
async fn cls_pooling_is_read_from_the_pooling_config() {
    let Some(source) = minilm_dir() else { return };
    let (mean_provider, model) = minilm(config_for(&source)).await;
    let cls_dir = copy_of(&source, true);
    std::fs::write(
        cls_dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
    )
    .unwrap();
    let (cls_provider, _) = minilm(config_for(cls_dir.path())).await;
    let text = ["A man is eating food."];
    let mean = embed(&mean_provider, &model, request(&text)).await.unwrap();
    let cls = embed(&cls_provider, &model, request(&text)).await.unwrap();
    assert!((dot(&cls.vectors[0], &cls.vectors[0]) - 1.0).abs() < 1e-5);
    assert!(dot(&cls.vectors[0], &mean.vectors[0]) < 0.999);
}
