//! `inline::candle` against llama.cpp on the same GGUF files (Llama-3.2-1B shape, random
//! weights): prefill and decode tokens/s, their ratio, and throughput with concurrent streams.
//!
//! ```sh
//! scripts/fetch-tokenizer.sh && scripts/build-llamacpp.sh
//! cargo bench -p llama-stack-provider-inference-candle --bench vs_llamacpp --profile dev
//! ```
//!
//! Knobs: `BENCH_QUANTS` (default `q8_0,q4_0,f16,f32`), `BENCH_PROMPT` (prompt tokens, 64),
//! `BENCH_TOKENS` (generated tokens, 32), `BENCH_THREADS` (2), `BENCH_STREAMS` (4),
//! `BENCH_MODEL_DIR` (where the GGUF files are written once, `target/bench-models`),
//! `LLAMA_BENCH` (the `llama-bench` binary; without it only our side is measured).
//! K-quant entries (`q4_k_m`, `q5_k_m`, `q6_k`, ...) and `bf16` are made from the F16 file by
//! the `llama-quantize` that sits beside `llama-bench`.
//! The last column is prefix reuse: time to first token of a turn that adds 64 tokens to a
//! 448-token conversation, with the conversation's KV cache kept and without.
//! candle's thread pool follows `RAYON_NUM_THREADS`, which is set to `BENCH_THREADS` here.

use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::StreamExt;
use llama_stack_inference::InferenceProvider;
use llama_stack_provider_inference_candle::test_model::{self, GgufType, Preset, TestModelOptions};
use llama_stack_provider_inference_candle::{CandleConfig, CandleProvider};
use llama_stack_stack::ProviderContext;
use llama_stack_types::{CompletionRequest, InterleavedContent, Model, ModelType, SamplingParams};

/// Repetitions of each measurement; the fastest counts, on both sides.
const RUNS: usize = 5;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn gguf_type(name: &str) -> GgufType {
    match name {
        "q8_0" => GgufType::Q8_0,
        "q4_0" => GgufType::Q4_0,
        "f16" => GgufType::F16,
        "f32" => GgufType::F32,
        other => panic!("unknown BENCH_QUANTS entry {other}"),
    }
}

fn model_file(dir: &Path, quant: &str) -> PathBuf {
    let target = dir.join(format!("1b-{quant}"));
    let path = target.join("model.gguf");
    if !path.is_file() && (quant.contains("_k") || quant == "bf16") {
        // candle's writer has no K-quants or BF16: llama.cpp's own tool makes them, as users
        // get them.
        let f16 = model_file(dir, "f16");
        let quantize = std::env::var("LLAMA_BENCH")
            .map(|b| PathBuf::from(b).with_file_name("llama-quantize"))
            .expect("K-quant files need LLAMA_BENCH, beside which llama-quantize lies");
        std::fs::create_dir_all(&target).unwrap();
        let status = std::process::Command::new(quantize)
            .arg(&f16)
            .arg(&path)
            .arg(quant.to_uppercase())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running llama-quantize");
        assert!(status.success(), "llama-quantize {quant} failed");
        return path;
    }
    if !path.is_file() {
        let tokenizer = test_model::default_tokenizer_path();
        let options = TestModelOptions {
            preset: Preset::OneB,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer,
            seed: 0,
        };
        test_model::create_gguf(&target, &options, gguf_type(quant))
            .expect("writing the GGUF model");
        // The bench measures the tokenizer embedded in the GGUF file, as llama.cpp uses it.
        std::fs::remove_file(target.join("tokenizer.json")).ok();
    }
    path
}

struct Ours {
    /// Time to first token of a turn that extends a 448-token conversation by 64 tokens:
    /// with the conversation's cache reused, and cold.
    next_turn_ttft: (f64, f64),
    load_s: f64,
    prompt_tokens: u32,
    prefill_tps: f64,
    decode_tps: f64,
    concurrent_tps: f64,
}

fn model() -> Model {
    Model {
        identifier: "bench".into(),
        provider_resource_id: "bench".into(),
        provider_id: "candle".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: ModelType::Llm,
        owner: None,
    }
}

fn request(prompt_tokens: usize, tokens: u32, variant: usize) -> CompletionRequest {
    // One token per word; `variant` keeps concurrent prompts from sharing a cached prefix.
    let words = ["apple", "river", "stone", "cloud"];
    let text: String = (0..prompt_tokens.saturating_sub(1))
        .map(|i| format!(" {}", words[(i + variant) % words.len()]))
        .collect();
    CompletionRequest {
        model_id: "bench".into(),
        content: InterleavedContent::Text(text),
        sampling_params: Some(SamplingParams {
            max_tokens: Some(tokens),
            ..Default::default()
        }),
        response_format: None,
        stream: Some(true),
        logprobs: None,
    }
}

/// (prompt tokens, seconds to the first token, generated tokens, seconds after the first).
async fn run_one(provider: &CandleProvider, request: CompletionRequest) -> (u32, f64, u32, f64) {
    let start = Instant::now();
    let mut stream = provider.completion(&model(), request).await.unwrap();
    let (mut first, mut last, mut usage) = (None, start, (0, 0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        let now = Instant::now();
        match &chunk.metrics {
            Some(metrics) => {
                let u = llama_stack_types::Usage::from_metrics(metrics);
                usage = (u.prompt_tokens, u.completion_tokens);
            }
            None => {
                first.get_or_insert(now);
                last = now;
            }
        }
    }
    let first = first.unwrap_or(last);
    (
        usage.0,
        (first - start).as_secs_f64(),
        usage.1,
        (last - first).as_secs_f64(),
    )
}

/// A conversation's next turn: the first `history` words of variant 0, then `more` words.
async fn next_turn_ttft(path: &Path, history: usize, more: usize) -> (f64, f64) {
    let mut times = Vec::new();
    for slots in [4, 0] {
        let config: CandleConfig = serde_json::from_value(serde_json::json!({
            "model_path": path.to_string_lossy(),
            "prefix_cache_slots": slots,
        }))
        .unwrap();
        let provider = CandleProvider::new(config, ProviderContext::default()).unwrap();
        provider.register_model(&model()).await.unwrap();
        run_one(&provider, request(history, 1, 0)).await;
        let (_, ttft, _, _) = run_one(&provider, request(history + more, 1, 0)).await;
        times.push(ttft);
    }
    (times[0], times[1])
}

async fn ours(path: &Path, prompt: usize, tokens: u32, streams: usize) -> Ours {
    let config: CandleConfig = serde_json::from_value(serde_json::json!({
        "model_path": path.to_string_lossy(),
        "max_batch_size": streams.max(1),
        "prefix_cache_slots": 0,
    }))
    .unwrap();
    let provider = CandleProvider::new(config, ProviderContext::default()).unwrap();
    let t = Instant::now();
    provider.register_model(&model()).await.unwrap();
    let load_s = t.elapsed().as_secs_f64();
    // Warm-up: first-touch page faults of the mapped weights.
    run_one(&provider, request(8, 2, 9)).await;
    // Best of five, as for llama.cpp below: the least disturbed run of each.
    let (mut prefill_tps, mut decode_tps, mut prompt_tokens) = (0f64, 0f64, 0);
    for _ in 0..RUNS {
        let (p, ttft, generated, decode_s) = run_one(&provider, request(prompt, tokens, 0)).await;
        prompt_tokens = p;
        prefill_tps = prefill_tps.max(p as f64 / ttft);
        decode_tps = decode_tps.max(generated.saturating_sub(1) as f64 / decode_s.max(1e-9));
    }
    let start = Instant::now();
    let all = futures::future::join_all(
        (0..streams).map(|i| run_one(&provider, request(prompt, tokens, i + 1))),
    )
    .await;
    let total: u32 = all.iter().map(|r| r.2).sum();
    let concurrent_tps = total as f64 / start.elapsed().as_secs_f64();
    drop(provider);
    Ours {
        next_turn_ttft: next_turn_ttft(path, 448, 64).await,
        load_s,
        prompt_tokens,
        prefill_tps,
        decode_tps,
        concurrent_tps,
    }
}

/// llama-bench's (prefill, decode) tokens/s for the same file and thread count.
fn llama_cpp(
    bench: &Path,
    path: &Path,
    prompt: usize,
    tokens: u32,
    threads: usize,
) -> Option<(f64, f64)> {
    let out = std::process::Command::new(bench)
        .args(["-m", &path.to_string_lossy()])
        .args(["-p", &prompt.to_string(), "-n", &tokens.to_string()])
        .args([
            "-t",
            &threads.to_string(),
            "-r",
            &RUNS.to_string(),
            "-o",
            "json",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let speed = |prefill: bool| {
        runs.as_array()?.iter().find_map(|r| {
            let is_prefill = r["n_prompt"].as_u64()? > 0 && r["n_gen"].as_u64()? == 0;
            let best = r["samples_ts"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_f64())
                .fold(0f64, f64::max);
            (is_prefill == prefill).then_some(best)
        })
    };
    Some((speed(true)?, speed(false)?))
}

fn main() {
    let quants: String = env("BENCH_QUANTS", "q8_0,q4_0,f16,f32".to_string());
    let prompt: usize = env("BENCH_PROMPT", 64);
    let tokens: u32 = env("BENCH_TOKENS", 32);
    let threads: usize = env("BENCH_THREADS", 2);
    let streams: usize = env("BENCH_STREAMS", 4);
    // SAFETY: set before any thread of this process starts.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let dir: PathBuf = env("BENCH_MODEL_DIR", PathBuf::from("target/bench-models"));
    let llama_bench = std::env::var("LLAMA_BENCH").ok().map(PathBuf::from);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "| GGUF | load s | prompt tok | prefill tok/s: candle | llama.cpp | ratio | decode tok/s: candle | llama.cpp | ratio | {streams} streams tok/s | next-turn TTFT s: reused / cold |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for quant in quants.split(',').filter(|q| !q.is_empty()) {
        let path = model_file(&dir, quant);
        let o = runtime.block_on(ours(&path, prompt, tokens, streams));
        let reference = llama_bench
            .as_deref()
            .and_then(|b| llama_cpp(b, &path, prompt, tokens, threads));
        let (rp, rd) = match reference {
            Some((p, d)) => (format!("{p:.1}"), format!("{d:.1}")),
            None => ("–".into(), "–".into()),
        };
        let ratio = |ours: f64, theirs: Option<f64>| {
            theirs.map_or("–".to_string(), |t| format!("{:.2}x", ours / t))
        };
        println!(
            "| 1b {quant} | {:.1} | {} | {:.1} | {rp} | {} | {:.1} | {rd} | {} | {:.1} | {:.2} / {:.2} |",
            o.load_s,
            o.prompt_tokens,
            o.prefill_tps,
            ratio(o.prefill_tps, reference.map(|r| r.0)),
            o.decode_tps,
            ratio(o.decode_tps, reference.map(|r| r.1)),
            o.concurrent_tps,
            o.next_turn_ttft.0,
            o.next_turn_ttft.1,
        );
    }
}
