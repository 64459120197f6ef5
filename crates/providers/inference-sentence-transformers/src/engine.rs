//! The engines: one model (an encoder or a cross-encoder) on its own OS thread, fed through a
//! bounded queue.
//!
//! Each job carries its own reply sender; a job whose caller has gone (client disconnected) is
//! skipped, and a full queue refuses new jobs at once instead of growing.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use llama_stack_core::{Error, Result};
use tokio::sync::{mpsc, oneshot};

use crate::cross_encoder::CrossEncoder;
use crate::encoder::{Encoded, Encoder, Truncation};
use crate::model_files::{CrossEncoderFiles, ModelFiles};

struct Job<I, O> {
    input: I,
    reply: oneshot::Sender<Result<O>>,
}

/// A model on its own OS thread: inputs go in through a bounded queue, each with its own
/// reply sender.
pub struct Worker<I, O> {
    queue: mpsc::Sender<Job<I, O>>,
    /// What the thread computes ("embedding", "reranking"), for messages.
    what: &'static str,
}

impl<I, O> Clone for Worker<I, O> {
    fn clone(&self) -> Self {
        Worker {
            queue: self.queue.clone(),
            what: self.what,
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Worker<I, O> {
    /// Starts the thread `name`, which runs `run` on each input in turn.
    pub(crate) fn spawn<F>(
        name: &str,
        what: &'static str,
        max_queue: usize,
        run: F,
    ) -> Result<Worker<I, O>>
    where
        F: Fn(I) -> Result<O> + Send + 'static,
    {
        let (queue, mut jobs) = mpsc::channel::<Job<I, O>>(max_queue.max(1));
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while let Some(job) = jobs.blocking_recv() {
                    if job.reply.is_closed() {
                        continue;
                    }
                    // A panic inside candle must cost one request, not the engine.
                    let result = std::panic::catch_unwind(AssertUnwindSafe(|| run(job.input)))
                        .unwrap_or_else(|_| {
                            Err(Error::internal(format!("the {what} engine panicked")))
                        });
                    if let Err(err) = &result
                        && err.kind() == llama_stack_core::ErrorKind::Internal
                    {
                        tracing::error!(error = %err, engine = what, "Local model failed");
                    }
                    let _ = job.reply.send(result);
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the {what} thread: {e}")))?;
        Ok(Worker { queue, what })
    }

    /// Queues `input` and waits for its answer; a full queue is "overloaded" at once.
    pub async fn call(&self, input: I) -> Result<O> {
        let what = self.what;
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { input, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => Error::overloaded(
                    format!(
                        "The local {what} engine is busy: too many requests are queued. Retry shortly."
                    ),
                    Duration::from_secs(1),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    Error::internal(format!("the {what} engine thread has stopped"))
                }
            })?;
        answer
            .await
            .map_err(|_| Error::internal(format!("the {what} engine dropped a request")))?
    }
}

/// A running embedding engine: its queue and the facts requests are checked against.
#[derive(Clone)]
pub struct EngineHandle {
    worker: Worker<(Vec<String>, Truncation), Encoded>,
    pub dimension: usize,
    /// Text prepended per `task_type`, when the model defines prompts.
    pub prompts: Arc<HashMap<String, String>>,
}

impl EngineHandle {
    /// Queues the texts and waits for their vectors.
    pub async fn embed(&self, texts: Vec<String>, truncation: Truncation) -> Result<Encoded> {
        self.worker.call((texts, truncation)).await
    }
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

/// Loads the model and starts its thread. Blocking: call from `spawn_blocking`.
pub(crate) fn start(
    files: &ModelFiles,
    device: &Device,
    max_batch_size: usize,
    max_queue: usize,
) -> Result<EngineHandle> {
    let encoder = Encoder::load(files, device, max_batch_size)?;
    let dimension = encoder.dimension();
    let worker = Worker::spawn(
        "st-encoder",
        "embedding",
        max_queue,
        move |(texts, truncation): (Vec<String>, Truncation)| encoder.embed(&texts, truncation),
    )?;
    Ok(EngineHandle {
        worker,
        dimension,
        prompts: Arc::new(files.prompts.clone()),
    })
}

/// A running cross-encoder engine.
#[derive(Clone)]
pub struct RankerHandle {
    worker: Worker<(String, Vec<String>), Vec<f32>>,
}

impl RankerHandle {
    /// Queues the pairs and waits for one score per item, in item order.
    pub async fn score(&self, query: String, items: Vec<String>) -> Result<Vec<f32>> {
        self.worker.call((query, items)).await
    }
}

/// Loads a cross-encoder and starts its thread. Blocking: call from `spawn_blocking`.
pub(crate) fn start_ranker(
    files: &CrossEncoderFiles,
    device: &Device,
    max_batch_size: usize,
    max_queue: usize,
) -> Result<RankerHandle> {
    let ranker = CrossEncoder::load(files, device, max_batch_size)?;
    let worker = Worker::spawn(
        "st-cross-encoder",
        "reranking",
        max_queue,
        move |(query, items): (String, Vec<String>)| ranker.score(&query, &items),
    )?;
    Ok(RankerHandle { worker })
}
