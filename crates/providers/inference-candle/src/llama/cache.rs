//! The key/value cache of one sequence.
//!
//! Storage grows in blocks and is written in place, so appending a token does not copy the
//! cache; truncating it (to reuse a shared prompt prefix) only moves the length back.

use candle_core::{DType, Device, Result, Tensor};

/// Tokens added to the capacity each time the cache grows.
const GROW_BY: usize = 256;

pub(crate) struct KvCache {
    /// Per layer: keys and values, `(kv_heads, capacity, head_dim)`.
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

impl KvCache {
    pub fn new(
        n_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Self {
        KvCache {
            layers: Vec::with_capacity(n_layers),
            len: 0,
            capacity: 0,
            kv_heads,
            head_dim,
            dtype,
            device: device.clone(),
        }
        .with_layers(n_layers)
    }

    fn with_layers(mut self, n_layers: usize) -> Self {
        self.layers = (0..n_layers)
            .map(|_| {
                let empty =
                    Tensor::zeros((self.kv_heads, 0, self.head_dim), self.dtype, &self.device)
                        .expect("an empty tensor allocates nothing");
                (empty.clone(), empty)
            })
            .collect();
        self
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets everything after the first `len` tokens.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `extra` more tokens; call once per forward pass, before the layers.
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed <= self.capacity {
            return Ok(());
        }
        let capacity = needed.div_ceil(GROW_BY) * GROW_BY;
        for (k, v) in &mut self.layers {
            for t in [k, v] {
                let grown = Tensor::zeros(
                    (self.kv_heads, capacity, self.head_dim),
                    self.dtype,
                    &self.device,
                )?;
                if self.len > 0 {
                    grown.slice_set(&t.narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                }
                *t = grown;
            }
        }
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`/`v` (`(kv_heads, n, head_dim)`) of `layer` after the tokens held and returns
    /// the whole history of that layer including them. The length advances with [`advance`].
    pub fn append(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = k.dim(1)?;
        let (kc, vc) = &self.layers[layer];
        kc.slice_set(k, 1, self.len)?;
        vc.slice_set(v, 1, self.len)?;
        Ok((
            kc.narrow(1, 0, self.len + n)?,
            vc.narrow(1, 0, self.len + n)?,
        ))
    }

    /// Commits `n` tokens written by [`append`] on every layer.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
