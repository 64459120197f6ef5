//! The engine: one model on its own OS thread, fed through a bounded queue.
//!
//! Each job carries its own event sender; a dropped receiver (client gone, stop string hit)
//! ends that job at the next token, which frees the engine for the next one.

use std::sync::Arc;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Config, Llama};
use llama_stack_core::{Error, Result};
use llama_stack_llama3::STOP_TOKENS;
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::model_files::ModelFiles;
use crate::prompt_tokens::PromptTokenizer;
use crate::sampling::SamplingSettings;

/// One generation request.
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingSettings,
    pub events: mpsc::Sender<EngineEvent>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EngineEvent {
    Token(u32),
    /// Generation stopped on this stop token.
    Stopped(u32),
    /// `max_tokens` was reached.
    Length,
    Failed(String),
}

/// A running engine: its queue and what callers need to prepare jobs.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    queue: mpsc::Sender<Job>,
    pub tokenizer: Arc<Tokenizer>,
    pub prompt: Arc<PromptTokenizer>,
    pub max_seq_len: usize,
}

impl EngineHandle {
    /// Queues a job, or refuses it at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<()> {
        self.queue.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Error::overloaded(
                "The local inference engine is busy: too many requests are queued. Retry shortly.",
                Duration::from_secs(1),
            ),
            mpsc::error::TrySendError::Closed(_) => {
                Error::internal("the inference engine thread has stopped")
            }
        })
    }
}

struct Engine {
    model: Llama,
    base_cache: Cache,
    device: Device,
}

pub(crate) fn parse_device(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = name
        .strip_prefix("cuda:")
        .map(|n| n.parse::<usize>().unwrap_or(0))
        .unwrap_or(0);
    Device::new_cuda(ordinal).map_err(|e| {
        Error::invalid(format!(
            "device `{name}` is not available: {e}. Build with `--features cuda` on a machine with CUDA, or use `cpu`"
        ))
    })
}

pub(crate) fn parse_dtype(name: &str, device: &Device) -> DType {
    match name {
        "f32" => DType::F32,
        "bf16" => DType::BF16,
        "f16" => DType::F16,
        // bf16 is several times slower than f32 on CPU in candle.
        _ if device.is_cpu() => DType::F32,
        _ => DType::BF16,
    }
}

/// Loads the model and starts its thread. Blocking: call from `spawn_blocking`.
pub(crate) fn start(
    files: &ModelFiles,
    device: Device,
    dtype: DType,
    max_queue: usize,
    max_seq_len: Option<usize>,
) -> Result<EngineHandle> {
    let tokenizer = Tokenizer::from_file(&files.tokenizer)
        .map(Arc::new)
        .map_err(|e| Error::invalid(format!("cannot load {}: {e}", files.tokenizer.display())))?;
    let mut llama_config = files.config.clone();
    let max_seq_len = max_seq_len
        .unwrap_or(llama_config.max_position_embeddings.min(8192))
        .min(llama_config.max_position_embeddings);
    // The rotary tables are sized by max_position_embeddings; sizing them to what we serve
    // keeps each KV cache small. Llama 3 rope scaling reads its own original length.
    llama_config.max_position_embeddings = max_seq_len;
    let config: Config = llama_config.into_config(false);
    // SAFETY: see model_files::check_tensors; the files were checked just before.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, &device) }
        .map_err(|e| Error::invalid(format!("cannot map the weights: {e}")))?;
    let model = Llama::load(vb, &config)
        .map_err(|e| Error::invalid(format!("cannot load the model: {e}")))?;
    let base_cache = Cache::new(true, dtype, &config, &device)
        .map_err(|e| Error::internal(format!("cannot allocate the KV cache: {e}")))?;
    let (queue, mut jobs) = mpsc::channel::<Job>(max_queue);
    let engine = Engine {
        model,
        base_cache,
        device,
    };
    let name = format!("candle-{}", files.dir.display());
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || {
            while let Some(job) = jobs.blocking_recv() {
                let events = job.events.clone();
                if let Err(err) = engine.run(job) {
                    tracing::error!(error = %err, "Generation failed");
                    let _ = events.blocking_send(EngineEvent::Failed(err.to_string()));
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the engine thread: {e}")))?;
    Ok(EngineHandle {
        queue,
        prompt: Arc::new(PromptTokenizer::new(
            tokenizer.clone(),
            files.tokenizer.clone(),
        )),
        tokenizer,
        max_seq_len,
    })
}

impl Engine {
    fn run(&self, job: Job) -> candle_core::Result<()> {
        if job.events.is_closed() {
            return Ok(());
        }
        let mut cache = self.base_cache.clone();
        let mut processor = job.sampling.processor();
        let mut context = job.prompt.clone();
        let input = Tensor::new(job.prompt.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut logits = self.model.forward(&input, 0, &mut cache)?.squeeze(0)?;
        for step in 0..job.max_tokens {
            let penalized = job.sampling.penalize(logits, &context)?;
            let next = processor.sample(&penalized)?;
            if STOP_TOKENS.contains(&next) {
                let _ = job.events.blocking_send(EngineEvent::Stopped(next));
                return Ok(());
            }
            if job.events.blocking_send(EngineEvent::Token(next)).is_err() {
                // The receiver is gone: the client disconnected or a stop string matched.
                return Ok(());
            }
            context.push(next);
            if step + 1 == job.max_tokens {
                break;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = self
                .model
                .forward(&input, context.len() - 1, &mut cache)?
                .squeeze(0)?;
        }
        let _ = job.events.blocking_send(EngineEvent::Length);
        Ok(())
    }
}
