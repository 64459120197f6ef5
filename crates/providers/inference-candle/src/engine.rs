//! The engine: one model on its own OS thread, fed through a bounded queue, decoding every
//! admitted sequence together.
//!
//! Each loop iteration is one forward pass holding one new token of every decoding sequence
//! plus, when a request is still reading its prompt, the next chunk of that prompt. Requests
//! are admitted in arrival order up to `max_batch`, so a long generation never holds the others
//! back and a long prompt delays running generations by one chunk at a time, not by the whole
//! prompt. A request whose receiver is gone (client disconnected, stop string hit) leaves the
//! batch at the next iteration.
//!
//! Finished sequences leave their KV cache in a small pool; a new prompt that starts with the
//! same tokens (the next turn of a conversation) reuses it and only reads the new tail.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use candle_core::{Device, Tensor};
use candle_transformers::generation::LogitsProcessor;
use llama_stack_core::{Error, Result};
use llama_stack_llama3::{EOT_ID, STOP_TOKENS};
use llama_stack_structured::{Constraint, ConstraintOptions, Format, Vocabulary};
use tokenizers::Tokenizer;
use tokio::sync::mpsc;

use crate::engine_load::{load_model, load_tokenizer};
use crate::engine_model::{EngineModel, SeqCache, Step};
use crate::llama::load::{self, DenseWeights};
use crate::llama::{KvDtype, log_softmax};
use crate::model_files::ModelFiles;
use crate::prompt_tokens::PromptTokenizer;
use crate::sampling::{SamplingKind, SamplingSettings};
use crate::speculative::{self, SpeculativeConfig};
use crate::vision::MllamaImageConfig;
use crate::vision::serve::{JobImages, VisionServing};

/// Prompt tokens read per iteration while other sequences are decoding.
const PREFILL_CHUNK: usize = 256;
/// Shortest shared prefix worth reusing a cached sequence for.
const MIN_REUSE: usize = 4;

/// Restricts which tokens may come next (structured output, forced tool calls).
pub(crate) trait TokenConstraint: Send {
    /// Sets the logits of every token that may not come next to `-inf`.
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), String>;
    /// Advances past the chosen token.
    fn accept(&mut self, token: u32) -> std::result::Result<(), String>;
}

/// `response_format` enforced token by token.
struct StructuredOutput(Constraint);

impl TokenConstraint for StructuredOutput {
    fn mask(&mut self, logits: &mut [f32]) -> std::result::Result<(), String> {
        self.0.apply_to_logits(logits).map_err(|e| e.to_string())
    }

    fn accept(&mut self, token: u32) -> std::result::Result<(), String> {
        self.0.accept(token).map_err(|e| e.to_string())
    }
}

/// One generation request.
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampling: SamplingSettings,
    /// Report log-probabilities: the chosen token's and this many alternatives.
    pub logprobs: Option<usize>,
    pub constraint: Option<Box<dyn TokenConstraint>>,
    /// The images of a vision model's prompt, one per image token in it.
    pub images: Option<Arc<JobImages>>,
    pub events: mpsc::UnboundedSender<EngineEvent>,
}

/// Log-probabilities at one position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenLogprobs {
    pub logprob: f32,
    /// The most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum EngineEvent {
    /// The prompt was read; `reused` of its tokens came from a cached conversation prefix.
    Prefilled {
        reused: usize,
    },
    Token {
        id: u32,
        logprobs: Option<TokenLogprobs>,
    },
    /// Generation stopped on this stop token.
    Stopped(u32),
    /// `max_tokens` was reached.
    Length,
    Failed(String),
}

/// Scheduling limits of an engine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineLimits {
    pub max_queue: usize,
    pub max_batch: usize,
    pub max_seq_len: Option<usize>,
    pub prefix_cache_slots: usize,
    /// How each sequence's KV cache stores keys and values.
    pub kv_cache_dtype: KvDtype,
    /// Prompt-lookup drafts for greedy sequences (see [`crate::speculative`]).
    pub speculative: Option<SpeculativeConfig>,
    /// Quantization of a vision checkpoint's decoder at load (`quantize:`).
    pub weight_quant: Option<candle_core::quantized::GgmlDType>,
}

/// A running engine: its queue and what callers need to prepare jobs.
#[derive(Clone)]
pub(crate) struct EngineHandle {
    queue: mpsc::Sender<Job>,
    pub tokenizer: Arc<Tokenizer>,
    /// The byte-level vocabulary for structured output, built on first need.
    vocabulary: Arc<std::sync::OnceLock<std::result::Result<Arc<Vocabulary>, String>>>,
    pub prompt: Arc<PromptTokenizer>,
    pub max_seq_len: usize,
    /// KV cache bytes one token of one sequence takes (keys and values of every layer).
    pub kv_bytes_per_token: usize,
    pub kv_cache_dtype: KvDtype,
    /// The longest text one token stands for, in bytes: a prompt longer than
    /// `max_seq_len` times this cannot fit, and is refused before it is tokenized.
    pub max_token_bytes: usize,
    /// How a vision model takes images; none for a text-only model.
    pub vision: Option<VisionInput>,
}

/// What the request side needs to prepare images for a vision model.
#[derive(Clone)]
pub(crate) struct VisionInput {
    /// The id that stands for an image in the model's prompts.
    pub image_token: u32,
    pub image_config: MllamaImageConfig,
    /// The model, shared with the engine thread, so that images are encoded on the request's
    /// own blocking task: encoding takes minutes on a CPU, and on the engine thread it would
    /// stall every running sequence for that long.
    pub serving: Arc<VisionServing>,
}

impl EngineHandle {
    /// The constraint that keeps the output in `response_format`, or none for free text.
    pub fn constraint(
        &self,
        response_format: Option<&serde_json::Value>,
        json_whitespace: usize,
    ) -> Result<Option<Box<dyn TokenConstraint>>> {
        let Some(value) = response_format else {
            return Ok(None);
        };
        let invalid = |e: llama_stack_structured::Error| {
            if e.is_invalid_request() {
                Error::invalid(format!("response_format: {e}"))
            } else {
                Error::internal(format!("response_format: {e}"))
            }
        };
        let Some(format) = Format::from_response_format(value).map_err(invalid)? else {
            return Ok(None);
        };
        let vocabulary = self
            .vocabulary
            .get_or_init(|| {
                // The end of a structured reply is the end of the turn.
                Vocabulary::from_tokenizer(&self.tokenizer, &[EOT_ID])
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| {
                Error::internal(format!(
                    "cannot index the vocabulary for structured output: {e}"
                ))
            })?;
        let options = ConstraintOptions { json_whitespace };
        let constraint =
            Constraint::with_options(vocabulary, &format, &options).map_err(invalid)?;
        Ok(Some(Box::new(StructuredOutput(constraint))))
    }

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

/// Loads the tokenizer and the model and starts the engine thread. Blocking: call from
/// `spawn_blocking`.
pub(crate) fn start(
    files: &ModelFiles,
    device: Device,
    precision: DenseWeights,
    limits: EngineLimits,
    progress: load::Progress<'_>,
) -> Result<EngineHandle> {
    // The tokenizer (a large JSON document, or built from a GGUF file's metadata) and the
    // weights load side by side: each takes a second or more for a 3B model.
    let (tokenizer, model) = std::thread::scope(|scope| {
        let tokenizer = scope.spawn(|| load_tokenizer(&files.tokenizer));
        let model = load_model(
            files,
            &device,
            precision,
            limits.max_seq_len,
            limits.weight_quant,
            progress,
        );
        let tokenizer = tokenizer
            .join()
            .unwrap_or_else(|_| Err(Error::internal("the tokenizer's loading thread panicked")));
        (tokenizer, model)
    });
    let (tokenizer, max_token_bytes) = tokenizer?;
    let mut model = model?;
    let (kv_bytes_per_token, vision) = match &mut model {
        EngineModel::Text(model) => {
            model.kv_dtype = limits.kv_cache_dtype;
            (model.kv_bytes_per_token(), None)
        }
        EngineModel::Vision(model) => (
            model.kv_bytes_per_token(),
            Some(VisionInput {
                image_token: model.image_token(),
                image_config: model.image_config.clone(),
                serving: model.clone(),
            }),
        ),
    };
    let max_seq_len = model.max_seq_len();
    let (queue, jobs) = mpsc::channel::<Job>(limits.max_queue);
    let name = format!("candle-{}", files.location.display());
    let scheduler = Scheduler::new(model, limits);
    let label = files.location.display().to_string();
    std::thread::Builder::new()
        .name(name.chars().take(15).collect())
        .spawn(move || scheduler.run(jobs, &label))
        .map_err(|e| Error::internal(format!("cannot start the engine thread: {e}")))?;
    Ok(EngineHandle {
        queue,
        prompt: Arc::new(PromptTokenizer::new(
            tokenizer.clone(),
            files.tokenizer.clone(),
        )),
        tokenizer,
        vocabulary: Arc::new(std::sync::OnceLock::new()),
        max_seq_len,
        kv_bytes_per_token,
        kv_cache_dtype: limits.kv_cache_dtype,
        max_token_bytes,
        vision,
    })
}

/// A sequence in the batch.
struct Sequence {
    job: Job,
    processor: LogitsProcessor,
    cache: SeqCache,
    /// Prompt and generated tokens.
    tokens: Vec<u32>,
    /// Tokens of `tokens` already in the cache.
    fed: usize,
    /// Prompt tokens found in a cached prefix.
    reused: usize,
    generated: usize,
    /// Drafted tokens at the end of `tokens`, read in this step and checked after it.
    drafted: usize,
}

impl Sequence {
    fn prefilling(&self) -> bool {
        self.generated == 0
    }
}

/// A finished sequence's cache, kept for a conversation's next turn.
struct CachedPrefix {
    tokens: Vec<u32>,
    cache: SeqCache,
}

pub(crate) struct Scheduler {
    model: EngineModel,
    limits: EngineLimits,
    batch: Vec<Sequence>,
    prefixes: VecDeque<CachedPrefix>,
    /// The engine's name in metrics.
    label: String,
}

impl Scheduler {
    pub(crate) fn new(model: EngineModel, limits: EngineLimits) -> Self {
        Scheduler {
            model,
            limits,
            batch: Vec::new(),
            prefixes: VecDeque::new(),
            label: String::new(),
        }
    }

    /// Serves `jobs` until every sender is gone; `label` names the engine in metrics.
    pub(crate) fn run(mut self, mut jobs: mpsc::Receiver<Job>, label: &str) {
        self.label = label.to_string();
        loop {
            if self.batch.is_empty() {
                match jobs.blocking_recv() {
                    Some(job) => self.admit(job),
                    None => return,
                }
            }
            while self.batch.len() < self.limits.max_batch.max(1) {
                match jobs.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => break,
                }
            }
            self.step();
            llama_stack_core::metrics::engine_state(label, jobs.len(), self.batch.len());
        }
    }

    /// Takes a job into the batch, reusing the cached prefix that shares most of its prompt.
    fn admit(&mut self, job: Job) {
        if job.events.is_closed() {
            return;
        }
        let prompt_len = job.prompt.len();
        let images = job.images.as_deref();
        let best = self
            .prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| p.cache.serves(images))
            .map(|(i, p)| (i, common_prefix(&p.tokens, &job.prompt)))
            .max_by_key(|(_, n)| *n);
        let (cache, fed) = match best {
            Some((i, shared)) if shared >= MIN_REUSE => {
                let mut entry = self.prefixes.remove(i).expect("index from the same deque");
                // At least the last prompt token is read again, for its logits.
                let keep = shared.min(prompt_len - 1);
                entry.cache.truncate(keep);
                self.model.reuse(&mut entry.cache, &job.prompt, images);
                (entry.cache, keep)
            }
            _ => match self.model.new_cache(&job.prompt, images) {
                Ok(cache) => (cache, 0),
                Err(err) => {
                    tracing::error!(error = %err, "Cannot start a sequence");
                    let _ = job.events.send(EngineEvent::Failed(err.to_string()));
                    return;
                }
            },
        };
        if fed > 0 {
            tracing::debug!(
                reused = fed,
                prompt = prompt_len,
                "Reusing a cached prompt prefix"
            );
        }
        self.batch.push(Sequence {
            processor: job.sampling.processor(),
            tokens: job.prompt.clone(),
            job,
            cache,
            fed,
            reused: fed,
            generated: 0,
            drafted: 0,
        });
    }

    /// One forward pass over the batch, then sampling for every sequence that needs a token.
    fn step(&mut self) {
        self.batch.retain(|s| !s.job.events.is_closed());
        if self.batch.is_empty() {
            return;
        }
        if let Some(speculative) = self.limits.speculative {
            let room = self.model.max_seq_len();
            for s in self.batch.iter_mut() {
                draft_into(s, speculative, room);
            }
        }
        // Every decoding sequence, plus the oldest one still reading its prompt.
        let mut chosen: Vec<(usize, usize)> = Vec::new();
        let mut prefill_taken = false;
        for (i, s) in self.batch.iter().enumerate() {
            let pending = s.tokens.len() - s.fed;
            if s.prefilling() {
                if !prefill_taken {
                    prefill_taken = true;
                    chosen.push((i, pending.min(PREFILL_CHUNK)));
                }
            } else {
                chosen.push((i, pending));
            }
        }
        // A drafting sequence wants the logits after its last token and after each draft.
        let rows: Vec<usize> = chosen
            .iter()
            .map(|&(i, _)| 1 + self.batch[i].drafted)
            .collect();
        let logits = {
            let mut steps: Vec<Step<'_>> = Vec::with_capacity(chosen.len());
            let mut by_index: Vec<Option<&mut Sequence>> =
                self.batch.iter_mut().map(Some).collect();
            for &(i, n) in &chosen {
                let s = by_index[i].take().expect("each sequence is chosen once");
                steps.push(Step {
                    tokens: &s.tokens[s.fed..s.fed + n],
                    cache: &mut s.cache,
                });
            }
            self.model.forward_rows(&mut steps, &rows)
        };
        let logits = match logits {
            Ok(l) => l,
            Err(err) => {
                tracing::error!(error = %err, "Forward pass failed");
                for &(i, _) in &chosen {
                    let _ = self.batch[i]
                        .job
                        .events
                        .send(EngineEvent::Failed(err.to_string()));
                }
                let failed: Vec<usize> = chosen.iter().map(|(i, _)| *i).collect();
                let mut index = 0;
                self.batch.retain(|_| {
                    index += 1;
                    !failed.contains(&(index - 1))
                });
                return;
            }
        };
        let mut finished = Vec::new();
        let mut row = 0;
        for (&(i, n), &wanted) in chosen.iter().zip(&rows) {
            let s = &mut self.batch[i];
            let first_row = row;
            row += wanted;
            if s.drafted > 0 {
                let drafted = s.drafted;
                let before = s.tokens.len() - drafted;
                let outcome = check_draft(s, &logits, first_row);
                // Every token past the first the step added is a draft the model kept.
                let accepted = s.tokens.len().saturating_sub(before + 1).min(drafted);
                llama_stack_core::metrics::speculative_tokens(&self.label, drafted, accepted);
                match outcome {
                    Ok(true) => {}
                    Ok(false) => finished.push(i),
                    Err(err) => {
                        let _ = s.job.events.send(EngineEvent::Failed(err));
                        finished.push(i);
                    }
                }
                continue;
            }
            s.fed += n;
            if s.fed < s.tokens.len() {
                continue;
            }
            if s.generated == 0 {
                let _ = s
                    .job
                    .events
                    .send(EngineEvent::Prefilled { reused: s.reused });
            }
            match sample(s, &logits, first_row) {
                Ok(true) => {}
                Ok(false) => finished.push(i),
                Err(err) => {
                    let _ = s.job.events.send(EngineEvent::Failed(err));
                    finished.push(i);
                }
            }
        }
        finished.sort_unstable();
        for i in finished.into_iter().rev() {
            let s = self.batch.swap_remove(i);
            self.keep_prefix(s);
        }
    }

    fn keep_prefix(&mut self, s: Sequence) {
        if self.limits.prefix_cache_slots == 0 || s.cache.len() < MIN_REUSE {
            return;
        }
        let mut tokens = s.tokens;
        tokens.truncate(s.cache.len());
        if self.prefixes.len() >= self.limits.prefix_cache_slots {
            self.prefixes.pop_front();
        }
        self.prefixes.push_back(CachedPrefix {
            tokens,
            cache: s.cache,
        });
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Picks the next token of `s` from row `row` of `logits`; false when the sequence is done.
fn sample(s: &mut Sequence, logits: &Tensor, row: usize) -> std::result::Result<bool, String> {
    let e = |err: candle_core::Error| err.to_string();
    let logits = logits.get(row).map_err(e)?;
    let logprobs = match s.job.logprobs {
        Some(top) => Some(
            log_softmax(&logits)
                .map_err(e)?
                .to_vec1::<f32>()
                .map_err(e)?,
        )
        .map(|l| (l, top)),
        None => None,
    };
    let mut logits = s.job.sampling.penalize(logits, &s.tokens).map_err(e)?;
    if let Some(constraint) = s.job.constraint.as_mut() {
        let mut values = logits.to_vec1::<f32>().map_err(e)?;
        constraint.mask(&mut values)?;
        if values.iter().all(|v| *v == f32::NEG_INFINITY) {
            return Err("the output constraint allows no token".into());
        }
        logits = Tensor::new(values, logits.device()).map_err(e)?;
    }
    let next = s.processor.sample(&logits).map_err(e)?;
    if STOP_TOKENS.contains(&next) {
        let _ = s.job.events.send(EngineEvent::Stopped(next));
        return Ok(false);
    }
    if let Some(constraint) = s.job.constraint.as_mut() {
        constraint.accept(next)?;
    }
    let logprobs = logprobs.map(|(all, top)| TokenLogprobs {
        logprob: all[next as usize],
        top: top_k(&all, top),
    });
    if s.job
        .events
        .send(EngineEvent::Token { id: next, logprobs })
        .is_err()
    {
        return Ok(false);
    }
    s.tokens.push(next);
    s.generated += 1;
    if s.generated >= s.job.max_tokens {
        let _ = s.job.events.send(EngineEvent::Length);
        return Ok(false);
    }
    Ok(true)
}

/// Appends a prompt-lookup draft to a greedy decoding sequence whose output nothing else
/// shapes (penalties, constraints and log-probabilities see one position at a time).
fn draft_into(s: &mut Sequence, config: SpeculativeConfig, max_seq_len: usize) {
    let SpeculativeConfig::Ngram {
        max_draft_tokens,
        ngram_size,
    } = config;
    let plain_greedy = s.job.sampling.sampling == SamplingKind::Greedy
        && s.job.sampling.repetition_penalty == 1.0
        && s.job.constraint.is_none()
        && s.job.logprobs.is_none();
    if s.prefilling() || !plain_greedy || s.fed + 1 != s.tokens.len() {
        return;
    }
    // Never past max_tokens (the last token is the model's own) nor the served context.
    let left = s.job.max_tokens.saturating_sub(s.generated + 1);
    let room = max_seq_len.saturating_sub(s.tokens.len());
    let draft = speculative::draft(&s.tokens, ngram_size, max_draft_tokens.min(left).min(room));
    s.drafted = draft.len();
    s.tokens.extend(draft);
}

/// Keeps the drafted tokens greedy decoding picks at each position read, then the model's own
/// token where they part; the cache keeps what was kept. False when the sequence is done.
fn check_draft(
    s: &mut Sequence,
    logits: &Tensor,
    first_row: usize,
) -> std::result::Result<bool, String> {
    let drafts = s.tokens.split_off(s.tokens.len() - s.drafted);
    s.drafted = 0;
    let mut going = true;
    for (j, row) in (first_row..=first_row + drafts.len()).enumerate() {
        going = sample(s, logits, row)?;
        let agreed = j < drafts.len() && s.tokens.last() == Some(&drafts[j]);
        if !going || !agreed {
            break;
        }
    }
    // The cache read the last token and every draft; it keeps what precedes the newest token.
    let kept = (s.tokens.len() - 1).min(s.cache.len());
    s.cache.truncate(kept);
    s.fed = kept;
    Ok(going)
}

/// The `k` largest values with their indices, largest first.
fn top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
    if k == 0 {
        return Vec::new();
    }
    let mut indexed: Vec<(u32, f32)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u32, *v))
        .collect();
    let k = k.min(indexed.len());
    indexed.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1));
    indexed.truncate(k);
    indexed.sort_by(|a, b| b.1.total_cmp(&a.1));
    indexed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_the_largest_first() {
        let top = top_k(&[0.1, 0.7, -1.0, 0.5, 0.9], 3);
        assert_eq!(top, vec![(4, 0.9), (1, 0.7), (3, 0.5)]);
        assert!(top_k(&[1.0], 0).is_empty());
        assert_eq!(top_k(&[1.0, 2.0], 5).len(), 2);
    }

    #[test]
    fn shared_prefix_length() {
        assert_eq!(common_prefix(&[1, 2, 3, 4], &[1, 2, 5]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
    }
}
