//! The encoder: tokenization, batched BERT forward passes, pooling and normalization.
//!
//! Everything here blocks; it runs on the engine thread, never on the async runtime.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use llama_stack_core::{Error, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::model_files::ModelFiles;
use crate::pooling::{Pooling, l2_normalize};

/// What to do with an input longer than the model reads (`text_truncation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Refuse the request.
    None,
    /// Drop tokens from the start, keeping the end.
    Start,
    /// Drop tokens from the end, keeping the start.
    End,
}

impl Truncation {
    /// Reads a `text_truncation` value; absent means `none`, as upstream defaults.
    pub fn parse(value: Option<&str>) -> Result<Truncation> {
        match value {
            None | Some("none") => Ok(Truncation::None),
            Some("start") => Ok(Truncation::Start),
            Some("end") => Ok(Truncation::End),
            Some(other) => Err(Error::invalid(format!(
                "text_truncation must be none, start or end, got '{other}'"
            ))),
        }
    }
}

/// Unit-length vectors in input order, and the tokens read to make them.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
}

pub struct Encoder {
    model: BertModel,
    /// Tokenizes without truncation or padding: the model files' tokenizer.json usually sets
    /// both (to 128 tokens for all-MiniLM-L6-v2), which would silently cut inputs.
    whole: Tokenizer,
    keep_start: Tokenizer,
    keep_end: Tokenizer,
    pooling: Pooling,
    device: Device,
    pad_id: u32,
    max_tokens: usize,
    max_batch_size: usize,
    dimension: usize,
}

fn truncating(
    base: &Tokenizer,
    direction: TruncationDirection,
    max_tokens: usize,
) -> Result<Tokenizer> {
    let mut tokenizer = base.clone();
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction,
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| Error::invalid(format!("cannot set up truncation for the tokenizer: {e}")))?;
    Ok(tokenizer)
}

impl Encoder {
    /// Loads the tokenizer and the weights. Blocking.
    pub fn load(files: &ModelFiles, device: &Device, max_batch_size: usize) -> Result<Encoder> {
        let mut whole = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            Error::invalid(format!("cannot load {}: {e}", files.tokenizer.display()))
        })?;
        whole
            .with_truncation(None)
            .map_err(|e| Error::invalid(format!("cannot configure the tokenizer: {e}")))?;
        whole.with_padding(None);
        let max_tokens = files.config.max_position_embeddings;
        let keep_start = truncating(&whole, TruncationDirection::Right, max_tokens)?;
        let keep_end = truncating(&whole, TruncationDirection::Left, max_tokens)?;
        // SAFETY: see model_files::check_tensors; the file was checked just before.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&files.weights),
                DType::F32,
                device,
            )
        }
        .map_err(|e| Error::invalid(format!("cannot map {}: {e}", files.weights.display())))?;
        let model = BertModel::load(vb, &files.config).map_err(|e| {
            Error::invalid(format!(
                "cannot load the encoder from {}: {e}",
                files.dir.display()
            ))
        })?;
        Ok(Encoder {
            model,
            whole,
            keep_start,
            keep_end,
            pooling: files.pooling,
            device: device.clone(),
            pad_id: files.config.pad_token_id as u32,
            max_tokens,
            max_batch_size: max_batch_size.max(1),
            dimension: files.config.hidden_size,
        })
    }

    /// The length of every vector.
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Token ids per input, special tokens included, truncated as asked.
    pub fn tokenize(&self, texts: &[String], truncation: Truncation) -> Result<Vec<Vec<u32>>> {
        let tokenizer = match truncation {
            Truncation::None => &self.whole,
            Truncation::Start => &self.keep_end,
            Truncation::End => &self.keep_start,
        };
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let encoding = tokenizer
                    .encode(text.as_str(), true)
                    .map_err(|e| Error::invalid(format!("input {i} cannot be tokenized: {e}")))?;
                let ids = encoding.get_ids().to_vec();
                if ids.len() > self.max_tokens {
                    return Err(Error::invalid(format!(
                        "input {i} is {} tokens long; this model reads at most {} tokens. Shorten it, or set text_truncation to 'end' (keep the start) or 'start' (keep the end)",
                        ids.len(),
                        self.max_tokens
                    )));
                }
                if ids.is_empty() {
                    return Err(Error::invalid(format!("input {i} has no tokens to embed")));
                }
                Ok(ids)
            })
            .collect()
    }

    /// Embeds every text: batches of up to `max_batch_size` inputs of similar length, each
    /// padded to its longest, masked, pooled and L2-normalized.
    pub fn embed(&self, texts: &[String], truncation: Truncation) -> Result<Encoded> {
        let ids = self.tokenize(texts, truncation)?;
        let tokens = ids.iter().map(Vec::len).sum();
        // Sorting by length before batching keeps padding (wasted compute) small.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(self.max_batch_size) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let rows = self
                .forward(&batch)
                .map_err(|e| Error::internal(format!("the embedding forward pass failed: {e}")))?;
            for (&i, row) in chunk.iter().zip(rows) {
                vectors[i] = row;
            }
        }
        Ok(Encoded { vectors, tokens })
    }

    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let longest = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut input = Vec::with_capacity(batch.len() * longest);
        let mut mask = Vec::with_capacity(batch.len() * longest);
        for ids in batch {
            let pad = longest - ids.len();
            input.extend_from_slice(ids);
            input.extend(std::iter::repeat_n(self.pad_id, pad));
            mask.extend(std::iter::repeat_n(1u32, ids.len()));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let shape = (batch.len(), longest);
        let input = Tensor::from_vec(input, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = input.zeros_like()?;
        let states = self.model.forward(&input, &token_types, Some(&mask))?;
        let pooled = self.pooling.pool(&states, &mask)?;
        l2_normalize(&pooled)?.to_vec2::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_values() {
        assert_eq!(Truncation::parse(None).unwrap(), Truncation::None);
        assert_eq!(Truncation::parse(Some("start")).unwrap(), Truncation::Start);
        assert_eq!(Truncation::parse(Some("end")).unwrap(), Truncation::End);
        assert!(Truncation::parse(Some("middle")).is_err());
    }
}
