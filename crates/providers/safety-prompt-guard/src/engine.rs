//! The engine: one classifier on its own OS thread, fed through a bounded queue.
//!
//! Each job carries its own reply sender; a job whose caller has gone is skipped, and a full
//! queue refuses new jobs at once instead of growing.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use candle_core::Device;
use llama_stack_core::{Error, ErrorKind, Result};
use tokio::sync::{mpsc, oneshot};

use crate::classifier::Classifier;
use crate::verdict::Scores;

struct Job {
    texts: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Scores>>>,
}

/// The queue of a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    queue: mpsc::Sender<Job>,
}

impl EngineHandle {
    /// Queues the texts and waits for their scores, in order.
    pub async fn scores(&self, texts: Vec<String>) -> Result<Vec<Scores>> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job { texts, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => Error::overloaded(
                    "The Prompt Guard classifier is busy: too many requests are queued. Retry shortly.",
                    Duration::from_secs(1),
                ),
                mpsc::error::TrySendError::Closed(_) => {
                    Error::internal("the Prompt Guard engine thread has stopped")
                }
            })?;
        answer
            .await
            .map_err(|_| Error::internal("the Prompt Guard engine dropped a request"))?
    }
}

pub(crate) fn parse_device(name: &str) -> Result<Device> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = name
        .strip_prefix("cuda:")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    Device::new_cuda(ordinal).map_err(|e| {
        Error::invalid(format!(
            "device `{name}` is not available: {e}. Build with `--features cuda` on a machine \
             with CUDA, or use `cpu`"
        ))
    })
}

/// Starts the thread that owns `classifier`.
pub(crate) fn start(classifier: Classifier, max_queue: usize) -> Result<EngineHandle> {
    let (queue, mut jobs) = mpsc::channel::<Job>(max_queue.max(1));
    std::thread::Builder::new()
        .name("prompt-guard".into())
        .spawn(move || {
            while let Some(job) = jobs.blocking_recv() {
                if job.reply.is_closed() {
                    continue;
                }
                // A panic inside candle must cost one request, not the engine.
                let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    job.texts
                        .iter()
                        .map(|text| classifier.scores(text))
                        .collect::<Result<Vec<_>>>()
                }))
                .unwrap_or_else(|_| Err(Error::internal("the Prompt Guard classifier panicked")));
                if let Err(err) = &result
                    && err.kind() == ErrorKind::Internal
                {
                    tracing::error!(error = %err, "Prompt Guard classification failed");
                }
                let _ = job.reply.send(result);
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the Prompt Guard thread: {e}")))?;
    Ok(EngineHandle { queue })
}
