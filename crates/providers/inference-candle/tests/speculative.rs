//! Prompt-lookup speculative decoding changes nothing in greedy output: the same texts with
//! it on and off, one request at a time and several decoded together.
//!
//! Needs the Llama 3 tokenizer: scripts/fetch-tokenizer.sh.

use llama_stack_inference::InferenceProvider;
use llama_stack_inference::ops::collect_completion;
use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};
use llama_stack_provider_inference_candle::{CandleConfig, CandleProvider};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{CompletionRequest, InterleavedContent, Model, ModelType, SamplingParams};

const PROMPTS: &[&str] = &[
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the",
    "Quote the line: 'All happy families are alike; each unhappy family is unhappy in its own way.' The line reads: 'All happy",
    "1, 2, 3, 1, 2, 3, 1, 2,",
    "Once upon a time",
];

fn model() -> Model {
    Model {
        identifier: "candle/test".into(),
        provider_resource_id: "test".into(),
        provider_id: "candle".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: ModelType::Llm,
        owner: None,
    }
}

async fn provider(dir: &std::path::Path, speculative: serde_json::Value) -> CandleProvider {
    let config: CandleConfig = serde_json::from_value(serde_json::json!({
        "model_path": dir.to_string_lossy(),
        "speculative": speculative,
    }))
    .unwrap();
    let provider = CandleProvider::new(config, ProviderContext::default()).unwrap();
    provider.register_model(&model()).await.unwrap();
    provider
}

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest {
        model_id: "test".into(),
        content: InterleavedContent::Text(prompt.into()),
        sampling_params: Some(SamplingParams {
            max_tokens: Some(40),
            ..Default::default()
        }),
        response_format: None,
        stream: Some(true),
        logprobs: None,
    }
}

async fn complete(p: &CandleProvider, prompt: &str) -> String {
    collect_completion(p.completion(&model(), request(prompt)).await.unwrap())
        .await
        .unwrap()
        .content
}

#[tokio::test]
async fn greedy_output_is_the_same_with_prompt_lookup_on_and_off() {
    let tokenizer = test_model::default_tokenizer_path();
    assert!(tokenizer.is_file(), "run scripts/fetch-tokenizer.sh first");
    let dir = tempfile::tempdir().unwrap();
    test_model::create(
        dir.path(),
        &TestModelOptions {
            preset: Preset::Tiny,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer,
            seed: 0,
        },
    )
    .unwrap();
    let plain = provider(dir.path(), serde_json::Value::Null).await;
    let drafting = provider(
        dir.path(),
        serde_json::json!({"type": "ngram", "max_draft_tokens": 6, "ngram_size": 2}),
    )
    .await;
    let mut expected = Vec::new();
    for prompt in PROMPTS {
        let want = complete(&plain, prompt).await;
        assert_eq!(complete(&drafting, prompt).await, want, "prompt {prompt:?}");
        expected.push(want);
    }
    // Decoded together, each sequence drafting on its own.
    let together = futures::future::join_all(PROMPTS.iter().map(|p| complete(&drafting, p))).await;
    assert_eq!(together, expected);
}
