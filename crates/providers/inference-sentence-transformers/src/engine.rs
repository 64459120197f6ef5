//! The engine: one encoder on its own OS thread, fed through a bounded queue.
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

use crate::encoder::{Encoded, Encoder, Truncation};
use crate::model_files::ModelFiles;

struct Job {
    texts: Vec<String>,
    truncation: Truncation,
    reply: oneshot::Sender<Result<Encoded>>,
}

/// A running engine: its queue and the facts requests are checked against.
#[derive(Clone)]
pub struct EngineHandle {
    queue: mpsc::Sender<Job>,
    pub dimension: usize,
    /// Text prepended per `task_type`, when the model defines prompts.
    pub prompts: Arc<HashMap<String, String>>,
}

impl EngineHandle {
    /// Queues the texts and waits for their vectors.
    pub async fn embed(&self, texts: Vec<String>, truncation: Truncation) -> Result<Encoded> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                texts,
                truncation,
                reply,
            })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => Error::overloaded(
                    "The local embedding engine is busy: too many requests are queued. Retry shortly.",
                    Duration::from_secs(1),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    Error::internal("the embedding engine thread has stopped")
                }
            })?;
        answer
            .await
            .map_err(|_| Error::internal("the embedding engine dropped a request"))?
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
    let (queue, mut jobs) = mpsc::channel::<Job>(max_queue.max(1));
    std::thread::Builder::new()
        .name("st-encoder".into())
        .spawn(move || {
            while let Some(job) = jobs.blocking_recv() {
                if job.reply.is_closed() {
                    continue;
                }
                // A panic inside candle must cost one request, not the engine.
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    encoder.embed(&job.texts, job.truncation)
                }))
                .unwrap_or_else(|_| Err(Error::internal("the embedding engine panicked")));
                if let Err(err) = &result
                    && err.kind() == llama_stack_core::ErrorKind::Internal
                {
                    tracing::error!(error = %err, "Embedding failed");
                }
                let _ = job.reply.send(result);
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the embedding thread: {e}")))?;
    Ok(EngineHandle {
        queue,
        dimension,
        prompts: Arc::new(files.prompts.clone()),
    })
}
