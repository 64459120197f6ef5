//! The Llama 3.x decoder on candle, written for serving: quantized (GGUF) or dense weights
//! behind the same matmul, Llama 3 rope scaling, per-sequence KV caches, and one forward pass
//! over several sequences at once.
//!
//! A step takes any mix of sequences, each with the tokens it adds (a whole prompt chunk for
//! prefill, one token for decode). The weight matmuls run once over all their rows, which is
//! where batching pays on CPU: the weights stream through the cache once per step instead of
//! once per sequence. Attention runs per sequence against its own cache.

mod attend;
pub(crate) mod cache;
mod gguf_types;
mod kquants;
pub(crate) mod linear;
pub(crate) mod load;
mod repack;
pub(crate) mod rope;
#[cfg(test)]
mod tests;

use candle_core::{D, DType, Device, Result, Tensor};

pub(crate) use linear::{Fused, Linear};

pub(crate) use cache::{KvCache, KvDtype};
pub(crate) use rope::{Llama3Scaling, RopeFrequencies};

/// The shape of a Llama model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hyper {
    pub vocab_size: usize,
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub ffn_dim: usize,
    pub norm_eps: f64,
    pub rope_theta: f32,
    pub rope: RopeFrequencies,
    /// Pairs rotated are adjacent (GGUF, Meta checkpoints) rather than half a head apart
    /// (Hugging Face checkpoints, whose q/k rows are permuted for that).
    pub rope_interleaved: bool,
    /// The context length the model was trained for.
    pub context_length: usize,
}

impl Hyper {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

pub(crate) struct Layer {
    pub attn_norm: Tensor,
    /// q, k and v.
    pub qkv: Fused,
    pub wo: Linear,
    pub ffn_norm: Tensor,
    /// gate and up.
    pub gate_up: Fused,
    pub w_down: Linear,
}

pub(crate) struct LlamaModel {
    pub hyper: Hyper,
    pub embed: Linear,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    pub output: Linear,
    /// Rope's inverse frequencies, scaled.
    inv_freq: Vec<f64>,
    /// Longest sequence served.
    pub max_seq_len: usize,
    /// How new caches store keys and values.
    pub kv_dtype: KvDtype,
    /// Steps of a few rows attend through [`attend`], reading the cache in place; off, they
    /// take the tensor path prompt chunks take (tests compare the two).
    pub small_step_kernel: bool,
    pub device: Device,
}

/// One sequence's part of a forward step.
pub(crate) struct SeqStep<'a> {
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
}

impl LlamaModel {
    pub fn new(
        hyper: Hyper,
        embed: Linear,
        layers: Vec<Layer>,
        norm: Tensor,
        output: Linear,
        max_seq_len: usize,
        device: &Device,
    ) -> Result<Self> {
        let inv_freq = rope::inverse_frequencies(hyper.head_dim(), hyper.rope_theta, &hyper.rope);
        Ok(LlamaModel {
            hyper,
            embed,
            layers,
            norm,
            output,
            inv_freq,
            max_seq_len,
            kv_dtype: KvDtype::default(),
            small_step_kernel: true,
            device: device.clone(),
        })
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.hyper.n_layers,
            self.hyper.n_kv_heads,
            self.hyper.head_dim(),
            self.kv_dtype,
            self.max_seq_len,
            &self.device,
        )
    }

    /// KV cache bytes one token of one sequence takes (keys and values of every layer).
    pub fn kv_bytes_per_token(&self) -> usize {
        2 * self.hyper.n_layers
            * self.hyper.n_kv_heads
            * self.kv_dtype.bytes_per_vector(self.hyper.head_dim())
    }

    /// Runs one step over `seqs` and returns the logits after each sequence's last token,
    /// `(seqs.len(), vocab)`. Every cache advances by the tokens given.
    #[cfg(test)]
    pub fn forward(&self, seqs: &mut [SeqStep<'_>]) -> Result<Tensor> {
        let last = vec![1; seqs.len()];
        self.forward_rows(seqs, &last)
    }

    /// [`Self::forward`], with the logits after each of the last `rows[i]` tokens of sequence
    /// `i` (a speculative step checks every drafted position), in sequence order.
    pub fn forward_rows(&self, seqs: &mut [SeqStep<'_>], rows: &[usize]) -> Result<Tensor> {
        let h = &self.hyper;
        let mut ids = Vec::new();
        let mut rotations = Vec::with_capacity(seqs.len());
        for s in seqs.iter_mut() {
            if s.tokens.is_empty() {
                candle_core::bail!("a sequence step needs at least one token");
            }
            if s.cache.len() + s.tokens.len() > self.max_seq_len {
                candle_core::bail!(
                    "sequence of {} tokens exceeds the served context of {}",
                    s.cache.len() + s.tokens.len(),
                    self.max_seq_len
                );
            }
            s.cache.reserve(s.tokens.len())?;
            ids.extend_from_slice(s.tokens);
            rotations.push(rope::rotation(
                &self.inv_freq,
                s.cache.len(),
                s.tokens.len(),
                &self.device,
            )?);
        }
        let ids = Tensor::new(ids.as_slice(), &self.device)?;
        let mut x = self.embed.embedding(&ids)?.to_dtype(DType::F32)?;
        for (index, layer) in self.layers.iter().enumerate() {
            let normed = candle_nn::ops::rms_norm(&x, &layer.attn_norm, h.norm_eps as f32)?;
            let [q, k, v]: [Tensor; 3] = layer
                .qkv
                .forward(&normed)?
                .try_into()
                .map_err(|_| candle_core::Error::Msg("q/k/v projection has 3 parts".into()))?;
            let mut outputs = Vec::with_capacity(seqs.len());
            let mut start = 0;
            for (s, rotation) in seqs.iter().zip(&rotations) {
                let n = s.tokens.len();
                outputs.push(self.attention(
                    index,
                    s.cache,
                    rotation,
                    &q.narrow(0, start, n)?,
                    &k.narrow(0, start, n)?,
                    &v.narrow(0, start, n)?,
                )?);
                start += n;
            }
            let attended = Tensor::cat(&outputs, 0)?;
            x = (x + layer.wo.forward(&attended)?)?;
            let normed = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, h.norm_eps as f32)?;
            let gated = layer.gate_up.forward_swiglu(&normed)?;
            x = (x + layer.w_down.forward(&gated)?)?;
        }
        let mut last = Vec::with_capacity(seqs.len());
        let mut end = 0;
        for (s, &wanted) in seqs.iter_mut().zip(rows) {
            end += s.tokens.len();
            let wanted = wanted.clamp(1, s.tokens.len());
            last.extend((end - wanted..end).map(|i| i as u32));
            s.cache.advance(s.tokens.len());
        }
        let last = x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 0)?;
        let normed = candle_nn::ops::rms_norm(&last, &self.norm, h.norm_eps as f32)?;
        self.output.forward(&normed)?.to_dtype(DType::F32)
    }

    /// Attention of one sequence's new rows (`(n, heads * head_dim)` for q) over its cache.
    fn attention(
        &self,
        layer: usize,
        cache: &KvCache,
        (cos, sin): &(Tensor, Tensor),
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<Tensor> {
        let h = &self.hyper;
        let (n, hd) = (q.dim(0)?, h.head_dim());
        let pos = cache.len();
        let heads = |t: &Tensor, count: usize| -> Result<Tensor> {
            t.reshape((n, count, hd))?.transpose(0, 1)?.contiguous()
        };
        let rotate = |t: Tensor| -> Result<Tensor> {
            let t = t.unsqueeze(0)?;
            let t = if h.rope_interleaved {
                candle_nn::rotary_emb::rope_i(&t, cos, sin)?
            } else {
                candle_nn::rotary_emb::rope(&t, cos, sin)?
            };
            t.squeeze(0)
        };
        let q = rotate(heads(q, h.n_heads)?)?;
        let k = rotate(heads(k, h.n_kv_heads)?)?;
        let v = heads(v, h.n_kv_heads)?;
        if n <= attend::MAX_ROWS && self.small_step_kernel {
            cache.store(layer, &k, &v)?;
            let rows = q.flatten_all()?.to_vec1::<f32>()?;
            let attended = cache.with_history(layer, |keys, values| {
                attend::attend(&rows, n, h.n_heads, pos, keys, values)
            });
            if let Some(out) = attended {
                return Tensor::from_vec(out, (n, h.n_heads * hd), &self.device);
            }
        }
        let (keys, values) = cache.append(layer, &k, &v)?;
        let total = pos + n;
        // Grouped-query attention without copying the keys: the query heads that share a
        // key/value head are stacked as extra rows of that head's query matrix.
        let rep = h.n_heads / h.n_kv_heads;
        let q = q.reshape((h.n_kv_heads, rep * n, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = (q.matmul(&keys.t()?)? * scale)?;
        let scores = if n > 1 {
            let mask = causal_mask(n, pos, &self.device)?;
            scores
                .reshape((h.n_kv_heads, rep, n, total))?
                .broadcast_add(&mask)?
                .reshape((h.n_kv_heads, rep * n, total))?
        } else {
            scores
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = probs.matmul(&values.contiguous()?)?;
        out.reshape((h.n_heads, n, hd))?
            .transpose(0, 1)?
            .reshape((n, h.n_heads * hd))
    }
}

/// `(n, pos + n)`: row `i` (absolute position `pos + i`) sees keys `0..=pos + i`.
fn causal_mask(n: usize, pos: usize, device: &Device) -> Result<Tensor> {
    let total = pos + n;
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..total).map(move |j| if j <= pos + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (n, total), device)
}

/// Log-softmax over the last dimension.
pub(crate) fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?;
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}
