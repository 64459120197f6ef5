//! `inline::candle` on a real (random-weight) Llama 3 model written by `test_model`.
//!
//! Needs the Llama 3 tokenizer: scripts/fetch-tokenizer.sh.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use futures::StreamExt;
use llama_stack_core::ErrorKind;
use llama_stack_inference::InferenceProvider;
use llama_stack_inference::ops::{collect_chat, collect_completion};
use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};
use llama_stack_provider_inference_candle::{CandleConfig, CandleProvider};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{
    ChatCompletionRequest, ChatEventType, CompletionRequest, InterleavedContent, Message, Model,
    ModelType, SamplingParams, SamplingStrategy, StopReason,
};

fn tokenizer() -> PathBuf {
    let path = test_model::default_tokenizer_path();
    assert!(
        path.is_file(),
        "the Llama 3 tokenizer is missing at {}: run scripts/fetch-tokenizer.sh",
        path.display()
    );
    path
}

/// One tiny model shared by every test of this binary.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let options = TestModelOptions {
            preset: Preset::Tiny,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer(),
            seed: 0,
        };
        test_model::create(dir.path(), &options).unwrap();
        dir
    })
    .path()
}

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

async fn provider(extra: serde_json::Value) -> CandleProvider {
    let mut config = serde_json::json!({"model_path": model_dir().to_string_lossy()});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let config: CandleConfig = serde_json::from_value(config).unwrap();
    let provider = CandleProvider::new(config, ProviderContext::default()).unwrap();
    provider.register_model(&model()).await.unwrap();
    provider
}

fn chat(max_tokens: u32, strategy: SamplingStrategy, seed: Option<u64>) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model_id: "test".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Say hello"),
        ],
        sampling_params: Some(SamplingParams {
            strategy,
            max_tokens: Some(max_tokens),
            seed,
            ..Default::default()
        }),
        tools: None,
        tool_choice: None,
        tool_prompt_format: None,
        response_format: None,
        stream: Some(true),
        logprobs: None,
        tool_config: None,
    }
}

fn text_of(r: &llama_stack_types::ChatCompletionResponse) -> String {
    r.completion_message.content.as_text("")
}

#[tokio::test]
async fn greedy_generation_is_deterministic_and_bounded() {
    let p = provider(serde_json::json!({})).await;
    let a = collect_chat(
        p.chat_completion(&model(), chat(6, SamplingStrategy::Greedy, None))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let b = collect_chat(
        p.chat_completion(&model(), chat(6, SamplingStrategy::Greedy, None))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(text_of(&a), text_of(&b));
    let usage = llama_stack_types::Usage::from_metrics(a.metrics.as_ref().unwrap());
    assert!(usage.completion_tokens <= 6);
    assert!(usage.prompt_tokens > 10, "system + user prompt: {usage:?}");
    if usage.completion_tokens == 6 {
        assert_eq!(a.completion_message.stop_reason, StopReason::OutOfTokens);
    }
}

#[tokio::test]
async fn stream_has_start_progress_and_complete_with_metrics() {
    let p = provider(serde_json::json!({})).await;
    let chunks: Vec<_> = p
        .chat_completion(&model(), chat(4, SamplingStrategy::Greedy, None))
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    assert_eq!(
        chunks.first().unwrap().event.event_type,
        ChatEventType::Start
    );
    let last = chunks.last().unwrap();
    assert_eq!(last.event.event_type, ChatEventType::Complete);
    assert!(last.event.stop_reason.is_some());
    let metrics = last.metrics.as_ref().unwrap();
    let names: Vec<_> = metrics.iter().map(|m| m.metric.as_str()).collect();
    assert_eq!(
        names,
        ["prompt_tokens", "completion_tokens", "total_tokens"]
    );
    assert!(
        chunks[1..chunks.len() - 1]
            .iter()
            .all(|c| c.event.event_type == ChatEventType::Progress)
    );
}

#[tokio::test]
async fn the_same_seed_gives_the_same_sample() {
    let p = provider(serde_json::json!({})).await;
    let strategy = SamplingStrategy::TopP {
        temperature: Some(1.0),
        top_p: 1.0,
    };
    let run = |seed| {
        let request = chat(8, strategy.clone(), Some(seed));
        let p = &p;
        async move {
            text_of(
                &collect_chat(p.chat_completion(&model(), request).await.unwrap())
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(run(42).await, run(42).await);
}

#[tokio::test]
async fn stop_strings_cut_the_output_before_them() {
    let p = provider(serde_json::json!({})).await;
    let request = |stop: Option<Vec<String>>| CompletionRequest {
        model_id: "test".into(),
        content: InterleavedContent::Text("Once upon a time".into()),
        sampling_params: Some(SamplingParams {
            max_tokens: Some(8),
            stop,
            ..Default::default()
        }),
        response_format: None,
        stream: Some(true),
        logprobs: None,
    };
    let full = collect_completion(p.completion(&model(), request(None)).await.unwrap())
        .await
        .unwrap()
        .content;
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 3, "need some text to cut: {full:?}");
    // A stop string taken from the middle of the unconstrained output.
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 1].iter().collect();
    let cut = collect_completion(
        p.completion(&model(), request(Some(vec![stop.clone()])))
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    assert!(!cut.content.contains(&stop), "{cut:?} still holds {stop:?}");
    assert!(full.starts_with(&cut.content));
    assert_eq!(cut.stop_reason, StopReason::EndOfTurn);
}

#[tokio::test]
async fn a_full_queue_is_refused_and_a_dropped_stream_frees_the_engine() {
    let p = provider(serde_json::json!({"max_queue": 1, "max_batch_size": 1})).await;
    // Not consumed, and long: it holds the only batch slot.
    let running = p
        .chat_completion(&model(), chat(5000, SamplingStrategy::Greedy, None))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let queued = p
        .chat_completion(&model(), chat(3, SamplingStrategy::Greedy, None))
        .await
        .unwrap();
    let refused = p
        .chat_completion(&model(), chat(3, SamplingStrategy::Greedy, None))
        .await
        .err()
        .expect("a third request must be refused");
    assert_eq!(refused.kind(), ErrorKind::Overloaded);
    assert!(refused.retry_after().is_some());
    drop(running);
    let done = tokio::time::timeout(std::time::Duration::from_secs(30), collect_chat(queued))
        .await
        .expect("the queued request must run once the first is dropped")
        .unwrap();
    assert!(done.metrics.is_some());
}

#[tokio::test]
async fn prompts_longer_than_the_context_are_rejected() {
    let p = provider(serde_json::json!({"max_seq_len": 16})).await;
    let err = p
        .chat_completion(&model(), chat(4, SamplingStrategy::Greedy, None))
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.message().contains("at most 16"), "{err}");
}

#[tokio::test]
async fn broken_model_directories_are_clear_errors() {
    let config = |path: &Path| -> CandleConfig {
        serde_json::from_value(serde_json::json!({"model_path": path.to_string_lossy()})).unwrap()
    };
    let missing = CandleProvider::new(
        config(Path::new("/nonexistent/model")),
        ProviderContext::default(),
    )
    .unwrap();
    let err = missing.register_model(&model()).await.unwrap_err();
    assert!(err.message().contains("does not exist"), "{err}");

    // A checkpoint whose config promises more layers than the weights hold.
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(model_dir().join(f), dir.path().join(f)).unwrap();
    }
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir().join("config.json")).unwrap())
            .unwrap();
    cfg["num_hidden_layers"] = 3.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = CandleProvider::new(config(dir.path()), ProviderContext::default())
        .unwrap()
        .register_model(&model())
        .await
        .unwrap_err();
    assert!(
        err.message().contains("missing tensor model.layers.2"),
        "{err}"
    );
}

#[tokio::test]
async fn special_token_strings_in_message_text_stay_plain_text() {
    let p = provider(serde_json::json!({})).await;
    let prompt_tokens = |text: &str| {
        let mut request = chat(1, SamplingStrategy::Greedy, None);
        request.messages = vec![Message::user(text)];
        let p = &p;
        async move {
            let response = collect_chat(p.chat_completion(&model(), request).await.unwrap())
                .await
                .unwrap();
            llama_stack_types::Usage::from_metrics(response.metrics.as_ref().unwrap()).prompt_tokens
        }
    };
    let plain = prompt_tokens("x").await;
    // As a special token this would be one id; as text it is several BPE tokens.
    let forged = prompt_tokens("<|eot_id|>").await;
    assert!(forged >= plain + 3, "plain {plain}, forged {forged}");
}

#[tokio::test]
async fn json_schema_output_always_parses_even_on_random_weights() {
    let p = provider(serde_json::json!({})).await;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "color": {"enum": ["red", "green", "blue"]},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3}
        },
        "required": ["name", "age", "color", "tags"],
        "additionalProperties": false
    });
    for (strategy, seed) in [
        (SamplingStrategy::Greedy, None),
        (
            SamplingStrategy::TopP {
                temperature: Some(1.5),
                top_p: 1.0,
            },
            Some(3),
        ),
        (
            SamplingStrategy::TopP {
                temperature: Some(1.0),
                top_p: 0.9,
            },
            Some(4),
        ),
    ] {
        let mut request = chat(400, strategy, seed);
        request.response_format =
            Some(serde_json::json!({"type": "json_schema", "json_schema": schema}));
        let response = collect_chat(p.chat_completion(&model(), request).await.unwrap())
            .await
            .unwrap();
        let text = text_of(&response);
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert!(
            value["name"]
                .as_str()
                .is_some_and(|n| n.chars().count() <= 12),
            "{text}"
        );
        assert!(
            value["age"]
                .as_i64()
                .is_some_and(|a| (0..=150).contains(&a)),
            "{text}"
        );
        assert!(
            ["red", "green", "blue"].contains(&value["color"].as_str().unwrap()),
            "{text}"
        );
        assert!(
            value["tags"]
                .as_array()
                .is_some_and(|t| t.len() <= 3 && t.iter().all(|b| b.is_boolean())),
            "{text}"
        );
        assert_eq!(value.as_object().unwrap().len(), 4, "{text}");
        assert_eq!(
            response.completion_message.stop_reason,
            StopReason::EndOfTurn
        );
    }
}

#[tokio::test]
async fn unsupported_schemas_are_invalid_requests() {
    let p = provider(serde_json::json!({})).await;
    let mut request = chat(10, SamplingStrategy::Greedy, None);
    request.response_format = Some(serde_json::json!({
        "type": "json_schema",
        "json_schema": {"type": "object", "properties": {"a": {"not": {"type": "string"}}}}
    }));
    let err = p
        .chat_completion(&model(), request)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("not"), "{err}");
}

#[tokio::test]
async fn logprobs_name_the_chosen_token_and_its_alternatives() {
    let p = provider(serde_json::json!({})).await;
    let request = CompletionRequest {
        model_id: "test".into(),
        content: InterleavedContent::Text("The capital of France is".into()),
        sampling_params: Some(SamplingParams {
            max_tokens: Some(6),
            ..Default::default()
        }),
        response_format: None,
        stream: Some(false),
        logprobs: Some(llama_stack_types::LogProbConfig { top_k: Some(3) }),
    };
    let response = collect_completion(p.completion(&model(), request).await.unwrap())
        .await
        .unwrap();
    let entries = response.logprobs.expect("logprobs were asked for");
    let usage = llama_stack_types::Usage::from_metrics(response.metrics.as_deref().unwrap());
    let stopped_on_token = response.stop_reason != StopReason::OutOfTokens;
    assert_eq!(
        entries.len() + stopped_on_token as usize,
        usage.completion_tokens as usize
    );
    for entry in &entries {
        let (token, chosen) = entry.chosen.clone().unwrap();
        assert!(entry.logprobs_by_token.len() <= 4 && !entry.logprobs_by_token.is_empty());
        assert_eq!(entry.logprobs_by_token[&token], chosen);
        assert!(entry.logprobs_by_token.values().all(|l| *l <= 0.0));
        // Greedy: the chosen token is the most likely one.
        let best = entry
            .logprobs_by_token
            .values()
            .cloned()
            .fold(f64::MIN, f64::max);
        assert!((best - chosen).abs() < 1e-6, "{entry:?}");
    }
    let text: String = entries
        .iter()
        .map(|e| e.chosen.clone().unwrap().0)
        .collect();
    assert_eq!(text, response.content);
}

#[tokio::test]
async fn concurrent_requests_are_batched_without_changing_their_output() {
    let p = provider(serde_json::json!({"max_batch_size": 4})).await;
    let prompts = [
        "Say hello",
        "Count to three",
        "Name a color",
        "What is Rust?",
    ];
    let request = |text: &str| {
        let mut r = chat(24, SamplingStrategy::Greedy, None);
        r.messages = vec![Message::user(text)];
        r
    };
    let mut alone = Vec::new();
    for text in prompts {
        let response = collect_chat(p.chat_completion(&model(), request(text)).await.unwrap())
            .await
            .unwrap();
        alone.push(text_of(&response));
    }
    let together = futures::future::join_all(prompts.iter().map(|text| {
        let p = &p;
        async move {
            let stream = p.chat_completion(&model(), request(text)).await.unwrap();
            text_of(&collect_chat(stream).await.unwrap())
        }
    }))
    .await;
    assert_eq!(alone, together);
}

#[tokio::test]
async fn a_required_tool_choice_yields_a_parsed_tool_call_delta() {
    use llama_stack_types::{
        ContentDelta, ToolCallOrText, ToolCallParseStatus, ToolConfig, ToolDefinition,
        ToolParamDefinition,
    };
    let p = provider(serde_json::json!({})).await;
    let param = |ty: &str| ToolParamDefinition {
        param_type: ty.into(),
        description: None,
        required: true,
        default: None,
    };
    let mut request = chat(200, SamplingStrategy::Greedy, None);
    request.tools = Some(vec![ToolDefinition {
        tool_name: "get_forecast".into(),
        description: Some("Weather forecast".into()),
        // Booleans only: a random-weight model would write an unbounded number for ever.
        parameters: Some(
            [
                ("hourly".to_string(), param("bool")),
                ("metric".to_string(), param("bool")),
            ]
            .into(),
        ),
    }]);
    request.tool_config = Some(ToolConfig {
        tool_choice: Some("required".into()),
        tool_prompt_format: None,
        system_message_behavior: None,
    });
    let chunks: Vec<_> = p
        .chat_completion(&model(), request)
        .await
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
        .await;
    let calls: Vec<_> = chunks
        .iter()
        .filter_map(|c| match &c.event.delta {
            ContentDelta::ToolCall {
                tool_call,
                parse_status,
            } => Some((tool_call.clone(), *parse_status)),
            _ => None,
        })
        .collect();
    match calls.as_slice() {
        [(ToolCallOrText::Call(call), ToolCallParseStatus::Succeeded)] => {
            assert_eq!(call.tool_name, "get_forecast");
            assert!(
                call.arguments["hourly"].is_boolean(),
                "{:?}",
                call.arguments
            );
            assert!(
                call.arguments["metric"].is_boolean(),
                "{:?}",
                call.arguments
            );
        }
        other => panic!("expected one succeeded tool call, got {other:?} in {chunks:?}"),
    }
    let last = chunks.last().unwrap();
    assert_eq!(last.event.event_type, ChatEventType::Complete);
    assert_eq!(last.event.stop_reason, Some(StopReason::EndOfTurn));
}

#[tokio::test]
async fn half_and_8_bit_kv_caches_answer_like_f32_and_reuse_prefixes() {
    let prompts = ["Say hello", "Count to three", "Name a color"];
    async fn answer(p: &CandleProvider, text: &str) -> String {
        let mut request = chat(24, SamplingStrategy::Greedy, None);
        request.messages = vec![Message::user(text)];
        let stream = p.chat_completion(&model(), request).await.unwrap();
        text_of(&collect_chat(stream).await.unwrap())
    }
    let f32 = provider(serde_json::json!({"prefix_cache_slots": 0})).await;
    let mut want = Vec::new();
    for text in prompts {
        want.push(answer(&f32, text).await);
    }
    for dtype in ["f16", "q8_0"] {
        let p = provider(serde_json::json!({
            "kv_cache_dtype": dtype,
            "max_batch_size": 4,
            "speculative": {"type": "ngram"},
        }))
        .await;
        for (text, want) in prompts.iter().zip(&want) {
            assert_eq!(&answer(&p, text).await, want, "{dtype}, {text:?}");
            // The same prompt again reads only its last token: the rest is the kept cache.
            assert_eq!(&answer(&p, text).await, want, "{dtype} reusing, {text:?}");
        }
        let together = futures::future::join_all(prompts.iter().map(|text| answer(&p, text))).await;
        assert_eq!(together, want, "{dtype}, batched");
    }
}
