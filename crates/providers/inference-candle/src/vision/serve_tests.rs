//! The engine serving the committed tiny Mllama fixture: the scheduler's chunked prefill,
//! prefix reuse and speculative drafts must give the reference's greedy tokens.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use llama_stack_types::SamplingStrategy;
use tokio::sync::mpsc;

use super::*;
use crate::engine::{EngineEvent, EngineLimits, Job, Scheduler};
use crate::engine_model::EngineModel;
use crate::llama::KvDtype;
use crate::sampling::SamplingSettings;
use crate::speculative::SpeculativeConfig;
use crate::vision::{ImageLimits, decode_image, preprocess_image};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mllama")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("tiny-model.reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn ints(t: &Tensor) -> Vec<u32> {
    let values = t.flatten_all().unwrap().to_vec1::<i64>().unwrap();
    values.into_iter().map(|v| v as u32).collect()
}

fn images(serving: &VisionServing, file: &str) -> Arc<JobImages> {
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let rgb = decode_image(&bytes, &ImageLimits::default()).unwrap();
    Arc::new(JobImages::new(vec![preprocess_image(
        &rgb,
        &serving.image_config,
    )]))
}

struct Served {
    tokens: Vec<u32>,
    reused: usize,
}

fn start(
    speculative: Option<SpeculativeConfig>,
) -> (mpsc::Sender<Job>, Arc<JobImages>, Arc<JobImages>) {
    let serving =
        VisionServing::load(&fixtures().join("tiny-model"), 4096, &Device::Cpu, None).unwrap();
    let (alpha, wide) = (images(&serving, "alpha.png"), images(&serving, "wide.gif"));
    let limits = EngineLimits {
        max_queue: 8,
        max_batch: 4,
        max_seq_len: None,
        prefix_cache_slots: 4,
        kv_cache_dtype: KvDtype::F32,
        speculative,
        weight_quant: None,
    };
    let scheduler = Scheduler::new(EngineModel::Vision(Arc::new(serving)), limits);
    let (queue, jobs) = mpsc::channel(8);
    std::thread::spawn(move || scheduler.run(jobs, "vision-test"));
    (queue, alpha, wide)
}

fn submit(
    queue: &mpsc::Sender<Job>,
    prompt: &[u32],
    images: Option<Arc<JobImages>>,
    max_tokens: usize,
) -> mpsc::UnboundedReceiver<EngineEvent> {
    let (events, receiver) = mpsc::unbounded_channel();
    let sampling =
        SamplingSettings::from_strategy(&SamplingStrategy::Greedy, None, Some(1)).unwrap();
    queue
        .blocking_send(Job {
            prompt: prompt.to_vec(),
            max_tokens,
            sampling,
            logprobs: None,
            constraint: None,
            images,
            events,
        })
        .unwrap();
    receiver
}

fn collect(mut receiver: mpsc::UnboundedReceiver<EngineEvent>) -> Served {
    let mut served = Served {
        tokens: Vec::new(),
        reused: 0,
    };
    while let Some(event) = receiver.blocking_recv() {
        match event {
            EngineEvent::Prefilled { reused } => served.reused = reused,
            EngineEvent::Token { id, .. } => served.tokens.push(id),
            EngineEvent::Failed(err) => panic!("{err}"),
            EngineEvent::Stopped(_) | EngineEvent::Length => break,
        }
    }
    served
}

#[test]
fn served_greedy_tokens_match_the_reference_and_a_repeat_reuses_the_prefix() {
    let reference = reference();
    let prompt = ints(&reference["input_ids"]);
    let expected = ints(&reference["greedy_tokens"]);
    let (queue, alpha, wide) = start(None);

    let first = collect(submit(&queue, &prompt, Some(alpha.clone()), expected.len()));
    assert_eq!(first.tokens, expected);
    assert_eq!(first.reused, 0);

    // The same image and prompt: the cached sequence, image encoding included, serves it.
    let again = collect(submit(&queue, &prompt, Some(alpha), expected.len()));
    assert_eq!(again.tokens, expected);
    assert_eq!(again.reused, prompt.len() - 1);

    // Another image never reuses a sequence that saw the first one.
    let other = collect(submit(&queue, &prompt, Some(wide), expected.len()));
    assert_eq!(other.reused, 0);
}

#[test]
fn sequences_with_different_images_batched_together_match_each_alone() {
    let reference = reference();
    let prompt = ints(&reference["input_ids"]);
    let (queue, alpha, wide) = start(None);
    let alone_alpha = collect(submit(&queue, &prompt, Some(alpha.clone()), 12)).tokens;
    let alone_wide = collect(submit(&queue, &prompt, Some(wide.clone()), 12)).tokens;
    let (queue, _, _) = start(None);
    let a = submit(&queue, &prompt, Some(alpha), 12);
    let b = submit(&queue, &prompt, Some(wide), 12);
    let text_only: Vec<u32> = prompt.iter().copied().filter(|&t| t != 512).collect();
    let c = submit(&queue, &text_only, None, 12);
    assert_eq!(collect(a).tokens, alone_alpha);
    assert_eq!(collect(b).tokens, alone_wide);
    assert_eq!(collect(c).tokens.len(), 12);
}

#[test]
fn speculative_drafts_keep_the_greedy_tokens() {
    let reference = reference();
    let prompt = ints(&reference["input_ids"]);
    let expected = ints(&reference["greedy_tokens"]);
    let (queue, alpha, _) = start(Some(SpeculativeConfig::Ngram {
        max_draft_tokens: 4,
        ngram_size: 2,
    }));
    let served = collect(submit(&queue, &prompt, Some(alpha), expected.len()));
    assert_eq!(served.tokens, expected);
}

#[test]
fn prompt_mask_rows_follow_the_chunk_and_stop_after_the_prompt() {
    let serving =
        VisionServing::load(&fixtures().join("tiny-model"), 4096, &Device::Cpu, None).unwrap();
    let alpha = images(&serving, "alpha.png");
    let prompt = [1, 2, serving.image_token(), 3, 4];
    let cache = serving.new_cache(&prompt, Some(&alpha)).unwrap();
    let slots = cache.sequence.tile_slots();
    let rows = chunk_mask(&cache, 7).unwrap();
    assert_eq!(rows.len(), 7 * slots);
    // Tokens before the image see nothing; from the image on they see its tiles, and a token
    // past the prompt sees what the prompt's last one saw.
    assert!(rows[..2 * slots].iter().all(|&m| m == 0));
    assert!(rows[2 * slots..3 * slots].contains(&1));
    assert_eq!(rows[6 * slots..], rows[4 * slots..5 * slots]);
    let text_only = serving.new_cache(&[1, 2, 3], None).unwrap();
    assert!(chunk_mask(&text_only, 3).is_none());
}

#[test]
fn images_encoded_on_the_request_side_give_the_reference_tokens() {
    let reference = reference();
    let prompt = ints(&reference["input_ids"]);
    let expected = ints(&reference["greedy_tokens"]);
    let serving =
        VisionServing::load(&fixtures().join("tiny-model"), 4096, &Device::Cpu, None).unwrap();
    let mut encoded = JobImages::new(images(&serving, "alpha.png").inputs.clone());
    serving.encode(&mut encoded).unwrap();
    assert!(encoded.encoded.is_some());
    let (queue, _, _) = start(None);
    let served = collect(submit(
        &queue,
        &prompt,
        Some(Arc::new(encoded)),
        expected.len(),
    ));
    assert_eq!(served.tokens, expected);
}
