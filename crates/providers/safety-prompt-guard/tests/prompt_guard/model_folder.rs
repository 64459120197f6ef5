//! Building the provider: from the registry, and the clear errors for missing or unusable model
//! folders (never a panic, never a made-up score).

use llama_stack_core::{Api, ErrorKind, Result};
use llama_stack_provider_safety_prompt_guard::{
    GuardType, PROVIDER_TYPE, PromptGuardSafety, register,
};
use llama_stack_stack::{ProviderContext, ProviderInstance, ProviderRegistry};
use llama_stack_types::Message;

use crate::support::{INJECTION, NoInference, TinyModel, config, shield};

async fn build(config: serde_json::Value) -> Result<ProviderInstance> {
    let mut registry = ProviderRegistry::new();
    register(&mut registry);
    let spec = registry.get_for(Api::Safety, PROVIDER_TYPE).unwrap();
    assert!((spec.validate)(&config).is_empty());
    (spec.build)(config, ProviderContext::default()).await
}

fn error_of(result: Result<ProviderInstance>) -> llama_stack_core::Error {
    match result {
        Ok(_) => panic!("the provider was built"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn the_registry_builds_a_working_shield() {
    let dir = TinyModel::forcing(INJECTION).write();
    let instance = build(serde_json::json!({
        "guard_type": "injection",
        "model_local_dir": dir.path(),
    }))
    .await
    .unwrap();
    let ProviderInstance::Safety(provider) = instance else {
        panic!("not a safety provider");
    };
    let shield = shield("Prompt-Guard-86M");
    provider
        .register_shield(&shield, &NoInference)
        .await
        .unwrap();
    let violation = provider
        .run_shield(
            &shield,
            &[Message::user("hello")],
            &serde_json::json!({}),
            &NoInference,
        )
        .await
        .unwrap();
    assert!(violation.is_some());
}

#[tokio::test]
async fn a_missing_folder_names_it_and_how_to_download_the_weights() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("Prompt-Guard-86M");
    let err = error_of(build(serde_json::json!({"model_local_dir": dir})).await);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let message = err.message();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains("does not exist"), "{message}");
    assert!(
        message.contains(&format!(
            "huggingface-cli download meta-llama/Prompt-Guard-86M --local-dir {}",
            dir.display()
        )),
        "{message}"
    );
}

#[tokio::test]
async fn each_missing_file_is_named() {
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let dir = TinyModel::forcing(INJECTION).write();
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let err = PromptGuardSafety::open(config(dir.path(), GuardType::Injection))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message()
                .contains(&format!("{} is missing", dir.path().join(file).display())),
            "{err}"
        );
        assert!(err.message().contains("huggingface-cli download"), "{err}");
    }
}

#[tokio::test]
async fn a_classifier_without_three_labels_is_refused() {
    let model = TinyModel {
        labels: 2,
        ..TinyModel::forcing(INJECTION)
    };
    let dir = model.write();
    let err = PromptGuardSafety::open(config(dir.path(), GuardType::Injection))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("id2label has 2 labels"), "{err}");
}

#[tokio::test]
async fn weights_that_do_not_match_the_config_are_refused() {
    let dir = TinyModel::forcing(INJECTION).write();
    let config_path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    json["hidden_size"] = 64.into();
    json["pooler_hidden_size"] = 64.into();
    std::fs::write(&config_path, json.to_string()).unwrap();
    let err = PromptGuardSafety::open(config(dir.path(), GuardType::Injection))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("model.safetensors"), "{err}");
}

#[tokio::test]
async fn a_tokenizer_from_another_model_is_caught_before_the_forward_pass() {
    let dir = TinyModel::forcing(INJECTION).write();
    let config_path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    // The tokenizer's letters now fall outside the embedding table.
    json["vocab_size"] = 10.into();
    std::fs::write(&config_path, json.to_string()).unwrap();
    // The weights no longer match either; rewrite them for the smaller table.
    let weights = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let table = &tensors["deberta.embeddings.word_embeddings.weight"];
    let cut = table.narrow(0, 0, 10).unwrap();
    tensors.insert("deberta.embeddings.word_embeddings.weight".into(), cut);
    candle_core::safetensors::save(&tensors, &weights).unwrap();

    let provider = PromptGuardSafety::open(config(dir.path(), GuardType::Injection))
        .await
        .unwrap();
    let err = provider.scores(vec!["xyz".into()]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.message().contains("beyond the model's vocabulary"),
        "{err}"
    );
}
