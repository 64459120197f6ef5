//! Decode speed of `inline::candle` on random-weight Llama 3 models.
//!
//! `cargo bench -p llama-stack-provider-inference-candle --bench decode` writes the test models
//! it needs (the Llama 3 tokenizer must be fetched first: scripts/fetch-tokenizer.sh) and
//! prints a table. `BENCH_PRESETS=tiny,1b` and `BENCH_TOKENS=32` tune it.

use std::time::Instant;

use futures::StreamExt;
use llama_stack_inference::InferenceProvider;
use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};
use llama_stack_provider_inference_candle::{CandleConfig, CandleProvider};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{CompletionRequest, InterleavedContent, Model, ModelType, SamplingParams};

struct Row {
    preset: String,
    dtype: String,
    load_s: f64,
    prompt_tokens: u32,
    prefill_s: f64,
    decode_tokens: u32,
    decode_tps: f64,
}

async fn measure(dir: &std::path::Path, dtype: &str, tokens: u32) -> (f64, u32, f64, u32, f64) {
    let config: CandleConfig = serde_json::from_value(serde_json::json!({
        "model_path": dir.to_string_lossy(),
        "dtype": dtype,
    }))
    .unwrap();
    let provider = CandleProvider::new(config, ProviderContext::default()).unwrap();
    let model = Model {
        identifier: "bench".into(),
        provider_resource_id: "bench".into(),
        provider_id: "candle".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: ModelType::Llm,
        owner: None,
    };
    let t = Instant::now();
    provider.register_model(&model).await.unwrap();
    let load_s = t.elapsed().as_secs_f64();
    let request = CompletionRequest {
        model_id: "bench".into(),
        content: InterleavedContent::Text("The quick brown fox jumps over the lazy dog".into()),
        sampling_params: Some(SamplingParams {
            max_tokens: Some(tokens),
            ..Default::default()
        }),
        response_format: None,
        stream: Some(true),
        logprobs: None,
    };
    let start = Instant::now();
    let mut stream = provider.completion(&model, request).await.unwrap();
    let mut first = None;
    let mut last = start;
    let mut usage = (0, 0);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let now = Instant::now();
        if let Some(metrics) = &chunk.metrics {
            let u = llama_stack_types::Usage::from_metrics(metrics);
            usage = (u.prompt_tokens, u.completion_tokens);
        } else {
            first.get_or_insert(now);
            last = now;
        }
    }
    let first = first.unwrap_or(last);
    let prefill_s = (first - start).as_secs_f64();
    // Tokens after the first one, over the time after the first one.
    let decoded = usage.1.saturating_sub(1);
    let decode_tps = decoded as f64 / (last - first).as_secs_f64().max(1e-9);
    (load_s, usage.0, prefill_s, decoded, decode_tps)
}

fn main() {
    let presets = std::env::var("BENCH_PRESETS").unwrap_or_else(|_| "tiny,1b".into());
    let tokens: u32 = std::env::var("BENCH_TOKENS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(32);
    let work = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rows = Vec::new();
    for preset_name in presets.split(',').filter(|s| !s.is_empty()) {
        let preset: Preset = preset_name.parse().unwrap();
        for dtype in ["f32", "bf16"] {
            let dir = work.path().join(format!("{preset_name}-{dtype}"));
            let options = TestModelOptions {
                preset,
                dtype: if dtype == "f32" {
                    candle_core::DType::F32
                } else {
                    candle_core::DType::BF16
                },
                tiktoken_model: &test_model::default_tokenizer_path(),
                seed: 0,
            };
            test_model::create(&dir, &options).expect("writing the test model");
            let (load_s, prompt_tokens, prefill_s, decode_tokens, decode_tps) =
                runtime.block_on(measure(&dir, dtype, tokens));
            rows.push(Row {
                preset: preset_name.into(),
                dtype: dtype.into(),
                load_s,
                prompt_tokens,
                prefill_s,
                decode_tokens,
                decode_tps,
            });
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    println!("| preset | dtype | load s | prompt tok | prefill s | decoded tok | decode tok/s |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {} | {:.2} |",
            r.preset,
            r.dtype,
            r.load_s,
            r.prompt_tokens,
            r.prefill_s,
            r.decode_tokens,
            r.decode_tps
        );
    }
}
