//! The two kinds of model the engine schedules: text-only Llama, whose batch steps read every
//! weight once for all sequences, and Llama 3.2 Vision, whose sequences carry their images.

use std::sync::Arc;

use candle_core::Tensor;

use crate::llama::{KvCache, LlamaModel, SeqStep};
use crate::vision::serve::{JobImages, VisionCache, VisionServing};

pub(crate) enum EngineModel {
    Text(LlamaModel),
    Vision(Arc<VisionServing>),
}

/// What one sequence keeps between steps.
pub(crate) enum SeqCache {
    Text(KvCache),
    Vision(Box<VisionCache>),
}

impl SeqCache {
    pub fn len(&self) -> usize {
        match self {
            SeqCache::Text(cache) => cache.len(),
            SeqCache::Vision(cache) => cache.len(),
        }
    }

    pub fn truncate(&mut self, len: usize) {
        match self {
            SeqCache::Text(cache) => cache.truncate(len),
            SeqCache::Vision(cache) => cache.truncate(len),
        }
    }

    /// Whether this cached prefix may be reused by a request showing `images`: a vision
    /// sequence's tokens depend on the images it saw.
    pub fn serves(&self, images: Option<&JobImages>) -> bool {
        match self {
            SeqCache::Text(_) => images.is_none(),
            SeqCache::Vision(cache) => cache.serves(images),
        }
    }
}

/// One sequence's share of a batch step: the tokens to read and its cache.
pub(crate) struct Step<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut SeqCache,
}

impl EngineModel {
    pub fn max_seq_len(&self) -> usize {
        match self {
            EngineModel::Text(model) => model.max_seq_len,
            EngineModel::Vision(model) => model.max_seq_len,
        }
    }

    /// A fresh sequence for `prompt`; a vision model encodes the images now.
    pub fn new_cache(
        &self,
        prompt: &[u32],
        images: Option<&JobImages>,
    ) -> candle_core::Result<SeqCache> {
        match self {
            EngineModel::Text(model) => Ok(SeqCache::Text(model.new_cache())),
            EngineModel::Vision(model) => {
                Ok(SeqCache::Vision(Box::new(model.new_cache(prompt, images)?)))
            }
        }
    }

    /// Readies a reused prefix's cache for the new prompt it serves.
    pub fn reuse(&self, cache: &mut SeqCache, prompt: &[u32], images: Option<&JobImages>) {
        if let (EngineModel::Vision(model), SeqCache::Vision(cache)) = (self, cache) {
            model.set_prompt(cache, prompt, images);
        }
    }

    /// Runs every step and returns the logits of the last `rows[i]` tokens of step `i`, stacked.
    pub fn forward_rows(
        &self,
        steps: &mut [Step<'_>],
        rows: &[usize],
    ) -> candle_core::Result<Tensor> {
        let mismatch = || candle_core::Error::Msg("a sequence's cache is of another model".into());
        match self {
            EngineModel::Text(model) => {
                let mut text: Vec<SeqStep<'_>> = Vec::with_capacity(steps.len());
                for step in steps.iter_mut() {
                    let SeqCache::Text(cache) = &mut *step.cache else {
                        return Err(mismatch());
                    };
                    text.push(SeqStep {
                        tokens: step.tokens,
                        cache,
                    });
                }
                model.forward_rows(&mut text, rows)
            }
            EngineModel::Vision(model) => {
                let mut vision: Vec<(&[u32], &mut VisionCache)> = Vec::with_capacity(steps.len());
                for step in steps.iter_mut() {
                    let SeqCache::Vision(cache) = &mut *step.cache else {
                        return Err(mismatch());
                    };
                    vision.push((step.tokens, cache));
                }
                model.forward_rows(&mut vision, rows)
            }
        }
    }
}
