//! The key/value cache of one sequence.
//!
//! Storage grows with the tokens held and is written in place, so appending a token does not
//! copy the cache; truncating it (to reuse a shared prompt prefix) only moves the length back.
//! Keys and values are kept in f32, f16, or q8_0 (8-bit values with an f16 scale per block,
//! llama.cpp's `q8_0` layout). Steps of a few rows read them where they are stored
//! ([`History`], for [`super::attend`]); prompt chunks get the history as f32 tensors.

use candle_core::{D, DType, Device, Result, Tensor};

/// Fewest tokens added to the capacity when the cache grows.
const GROW_BY: usize = 256;
/// Values sharing one q8_0 scale, as in llama.cpp; a head size that is not a multiple of it
/// gets one scale per head and token.
const Q8_BLOCK: usize = 32;
/// q8_0 stores `q + 128` in a `u8`, candle having no signed 8-bit type.
const Q8_OFFSET: f64 = 128.0;

/// How keys and values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum KvDtype {
    #[default]
    F32,
    F16,
    Q8_0,
}

impl KvDtype {
    /// The names `kv_cache_dtype` takes.
    pub const NAMES: [&'static str; 3] = ["f32", "f16", "q8_0"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" => Some(KvDtype::F32),
            "f16" => Some(KvDtype::F16),
            "q8_0" => Some(KvDtype::Q8_0),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
            KvDtype::Q8_0 => "q8_0",
        }
    }

    /// Bytes one key (or value) vector of one head takes, scales included.
    pub fn bytes_per_vector(self, head_dim: usize) -> usize {
        match self {
            KvDtype::F32 => 4 * head_dim,
            KvDtype::F16 => 2 * head_dim,
            KvDtype::Q8_0 => head_dim + 2 * head_dim / q8_block(head_dim),
        }
    }
}

fn q8_block(head_dim: usize) -> usize {
    if head_dim.is_multiple_of(Q8_BLOCK) {
        Q8_BLOCK
    } else {
        head_dim
    }
}

/// Keys or values of one layer: `(kv_heads, capacity, head_dim)`, plus for q8_0 the scales,
/// `(kv_heads, capacity, head_dim / block)`.
struct Part {
    data: Tensor,
    scale: Option<Tensor>,
}

pub(crate) struct KvCache {
    /// Per layer: keys and values.
    layers: Vec<[Part; 2]>,
    len: usize,
    capacity: usize,
    /// The capacity never grows past this (the served context), however it rounds.
    max_len: usize,
    kv_heads: usize,
    head_dim: usize,
    dtype: KvDtype,
    device: Device,
}

impl KvCache {
    pub fn new(
        n_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype: KvDtype,
        max_len: usize,
        device: &Device,
    ) -> Self {
        let mut cache = KvCache {
            layers: Vec::with_capacity(n_layers),
            len: 0,
            capacity: 0,
            max_len,
            kv_heads,
            head_dim,
            dtype,
            device: device.clone(),
        };
        for _ in 0..n_layers {
            let empty = || cache.part(0).expect("an empty tensor allocates nothing");
            cache.layers.push([empty(), empty()]);
        }
        cache
    }

    fn part(&self, capacity: usize) -> Result<Part> {
        let shape = (self.kv_heads, capacity, self.head_dim);
        let zeros = |shape: (usize, usize, usize), dtype| Tensor::zeros(shape, dtype, &self.device);
        Ok(match self.dtype {
            KvDtype::F32 => Part {
                data: zeros(shape, DType::F32)?,
                scale: None,
            },
            KvDtype::F16 => Part {
                data: zeros(shape, DType::F16)?,
                scale: None,
            },
            KvDtype::Q8_0 => {
                let blocks = self.head_dim / q8_block(self.head_dim);
                Part {
                    data: zeros(shape, DType::U8)?,
                    scale: Some(zeros((self.kv_heads, capacity, blocks), DType::F16)?),
                }
            }
        })
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Tokens the storage has room for.
    #[cfg(test)]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes of storage allocated, on every layer together.
    #[cfg(test)]
    pub fn allocated_bytes(&self) -> usize {
        let bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        self.layers
            .iter()
            .flatten()
            .map(|p| bytes(&p.data) + p.scale.as_ref().map_or(0, bytes))
            .sum()
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
        // Growing by half the capacity keeps the copying linear in the length reached, which
        // matters at long context: fixed steps would copy a 100k-token cache hundreds of times.
        let capacity = needed
            .max(self.capacity + self.capacity / 2)
            .div_ceil(GROW_BY)
            * GROW_BY;
        let capacity = capacity.min(self.max_len.max(needed));
        let len = self.len;
        let mut layers = Vec::with_capacity(self.layers.len());
        for old in &self.layers {
            let mut grown = [self.part(capacity)?, self.part(capacity)?];
            if len > 0 {
                for (new, old) in grown.iter_mut().zip(old) {
                    let keep = |t: &Tensor| t.narrow(1, 0, len)?.contiguous();
                    new.data.slice_set(&keep(&old.data)?, 1, 0)?;
                    if let (Some(new), Some(old)) = (&new.scale, &old.scale) {
                        new.slice_set(&keep(old)?, 1, 0)?;
                    }
                }
            }
            layers.push(grown);
        }
        self.layers = layers;
        self.capacity = capacity;
        Ok(())
    }

    /// Writes `k`/`v` (`(kv_heads, n, head_dim)`, f32) of `layer` after the tokens held and
    /// returns the whole history of that layer including them, in f32. The length advances
    /// with [`advance`].
    pub fn append(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        self.store(layer, k, v)?;
        let total = self.len + k.dim(1)?;
        let [kp, vp] = &self.layers[layer];
        Ok((self.read(kp, total)?, self.read(vp, total)?))
    }

    /// Writes `k`/`v` (`(kv_heads, n, head_dim)`, f32) of `layer` after the tokens held, for
    /// [`Self::with_history`] to read in place.
    pub fn store(&self, layer: usize, k: &Tensor, v: &Tensor) -> Result<()> {
        let [kp, vp] = &self.layers[layer];
        self.write(kp, k)?;
        self.write(vp, v)
    }

    /// Calls `f` with `layer`'s keys and values as stored (tokens written by
    /// [`Self::store`] included), without converting them. None off the CPU.
    pub fn with_history<R>(
        &self,
        layer: usize,
        f: impl FnOnce(&History<'_>, &History<'_>) -> R,
    ) -> Option<R> {
        use candle_core::{CpuStorage, Storage};
        let [kp, vp] = &self.layers[layer];
        let data = [kp.data.storage_and_layout(), vp.data.storage_and_layout()];
        let scales = [&kp.scale, &vp.scale].map(|s| s.as_ref().map(|s| s.storage_and_layout()));
        let mut views = Vec::with_capacity(2);
        for ((storage, layout), scale) in data.iter().zip(&scales) {
            let start = layout.start_offset();
            let stored = match (&**storage, scale) {
                (Storage::Cpu(CpuStorage::F32(v)), None) => Stored::F32(&v[start..]),
                (Storage::Cpu(CpuStorage::F16(v)), None) => Stored::F16(&v[start..]),
                (Storage::Cpu(CpuStorage::U8(q)), Some((scales, scale_layout))) => {
                    let Storage::Cpu(CpuStorage::F16(scales)) = &**scales else {
                        return None;
                    };
                    Stored::Q8 {
                        q: &q[start..],
                        scales: &scales[scale_layout.start_offset()..],
                        block: q8_block(self.head_dim),
                    }
                }
                _ => return None,
            };
            views.push(History {
                stored,
                heads: self.kv_heads,
                capacity: self.capacity,
                head_dim: self.head_dim,
            });
        }
        Some(f(&views[0], &views[1]))
    }

    fn write(&self, part: &Part, x: &Tensor) -> Result<()> {
        match (self.dtype, &part.scale) {
            (KvDtype::Q8_0, Some(scale)) => {
                let (q, s) = quantize_q8(x, q8_block(self.head_dim))?;
                part.data.slice_set(&q, 1, self.len)?;
                scale.slice_set(&s, 1, self.len)
            }
            (KvDtype::F16, _) => part.data.slice_set(&x.to_dtype(DType::F16)?, 1, self.len),
            _ => part.data.slice_set(x, 1, self.len),
        }
    }

    fn read(&self, part: &Part, total: usize) -> Result<Tensor> {
        if self.dtype != KvDtype::F32
            && let Some(values) = self.read_cpu(part, total)
        {
            return Tensor::from_vec(values, (self.kv_heads, total, self.head_dim), &self.device);
        }
        let data = part.data.narrow(1, 0, total)?;
        match (self.dtype, &part.scale) {
            (KvDtype::Q8_0, Some(scale)) => dequantize_q8(&data, &scale.narrow(1, 0, total)?),
            (KvDtype::F16, _) => data.to_dtype(DType::F32),
            _ => Ok(data),
        }
    }

    /// [`Self::read`] of an f16 or q8_0 part in one pass over the host storage; the tensor
    /// ops take three passes and an allocation each, which a decode step pays on every layer
    /// for the whole history. None off the CPU.
    fn read_cpu(&self, part: &Part, total: usize) -> Option<Vec<f32>> {
        use candle_core::{CpuStorage, Storage};
        let (dim, capacity) = (self.head_dim, self.capacity);
        let (storage, layout) = part.data.storage_and_layout();
        let Storage::Cpu(storage) = &*storage else {
            return None;
        };
        let start = layout.start_offset();
        let mut out = vec![0f32; self.kv_heads * total * dim];
        let heads = out.chunks_exact_mut(total * dim).enumerate();
        match (storage, &part.scale) {
            (CpuStorage::F16(src), None) => {
                use half::slice::HalfFloatSliceExt;
                for (h, out) in heads {
                    let from = start + h * capacity * dim;
                    src[from..from + total * dim].convert_to_f32_slice(out);
                }
            }
            (CpuStorage::U8(src), Some(scale)) => {
                let (scales, scale_layout) = scale.storage_and_layout();
                let Storage::Cpu(CpuStorage::F16(scales)) = &*scales else {
                    return None;
                };
                let block = q8_block(dim);
                let blocks = dim / block;
                let scale_start = scale_layout.start_offset();
                for (h, out) in heads {
                    let from = start + h * capacity * dim;
                    let q = &src[from..from + total * dim];
                    let from = scale_start + h * capacity * blocks;
                    let s = &scales[from..from + total * blocks];
                    for ((out, q), s) in out
                        .chunks_exact_mut(block)
                        .zip(q.chunks_exact(block))
                        .zip(s)
                    {
                        let s = s.to_f32();
                        for (o, &q) in out.iter_mut().zip(q) {
                            *o = (q as i32 - Q8_OFFSET as i32) as f32 * s;
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(out)
    }

    /// Commits `n` tokens written by [`append`] on every layer.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// One layer's keys or values as the cache stores them: `(heads, capacity, head_dim)`.
pub(crate) struct History<'a> {
    stored: Stored<'a>,
    pub heads: usize,
    capacity: usize,
    head_dim: usize,
}

enum Stored<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    /// `q + 128`, and one scale per `block` values.
    Q8 {
        q: &'a [u8],
        scales: &'a [half::f16],
        block: usize,
    },
}

impl History<'_> {
    /// Vector `pos` of `head` as f32: the stored slice itself for f32, else converted into
    /// `buf` (`head_dim` long).
    #[inline]
    pub fn vector<'b>(&'b self, head: usize, pos: usize, buf: &'b mut [f32]) -> &'b [f32] {
        let dim = self.head_dim;
        let at = (head * self.capacity + pos) * dim;
        match &self.stored {
            Stored::F32(v) => &v[at..at + dim],
            Stored::F16(v) => {
                use half::slice::HalfFloatSliceExt;
                v[at..at + dim].convert_to_f32_slice(buf);
                buf
            }
            Stored::Q8 { q, scales, block } => {
                let blocks = dim / block;
                let s = &scales[(head * self.capacity + pos) * blocks..][..blocks];
                for ((out, q), s) in buf
                    .chunks_exact_mut(*block)
                    .zip(q[at..at + dim].chunks_exact(*block))
                    .zip(s)
                {
                    let s = s.to_f32();
                    for (o, &q) in out.iter_mut().zip(q) {
                        *o = (q as i32 - Q8_OFFSET as i32) as f32 * s;
                    }
                }
                buf
            }
        }
    }
}

/// `x` (`(heads, n, dim)`, f32) as `q + 128` (u8) and one f16 scale per `block` values.
///
/// The scale is rounded to f16 before dividing by it, so every `|x / scale|` stays within
/// 127.06 and rounds into range, and dequantizing is off by at most half a scale step.
fn quantize_q8(x: &Tensor, block: usize) -> Result<(Tensor, Tensor)> {
    let (heads, n, dim) = x.dims3()?;
    let blocks = x.reshape((heads, n, dim / block, block))?;
    let scale = (blocks.abs()?.max_keepdim(D::Minus1)? / 127.0)?.to_dtype(DType::F16)?;
    // An all-zero block has scale 0; any positive divisor quantizes it to zeros.
    let divisor = scale.to_dtype(DType::F32)?.maximum(f32::MIN_POSITIVE)?;
    let q = blocks
        .broadcast_div(&divisor)?
        .round()?
        .clamp(-127f32, 127f32)?
        .affine(1.0, Q8_OFFSET)?
        .to_dtype(DType::U8)?
        .reshape((heads, n, dim))?;
    Ok((q, scale.squeeze(D::Minus1)?))
}

/// The inverse of [`quantize_q8`]: `(heads, n, dim)` f32.
fn dequantize_q8(q: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let (heads, n, dim) = q.dims3()?;
    let blocks = scale.dim(2)?;
    q.to_dtype(DType::F32)?
        .affine(1.0, -Q8_OFFSET)?
        .reshape((heads, n, blocks, dim / blocks))?
        .broadcast_mul(&scale.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?)?
        .reshape((heads, n, dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: (usize, usize, usize), seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
        let n = shape.0 * shape.1 * shape.2;
        // Magnitudes spread over four decades, as keys after rope are.
        let values: Vec<f32> = (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0) * 10f32.powf(rng.random_range(-2.0f32..2.0)))
            .collect();
        Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// Fills a cache in uneven chunks (through several growths and one truncation) and
    /// returns what it hands back, with what was written.
    fn round_trip(dtype: KvDtype, head_dim: usize) -> (Tensor, Tensor) {
        let heads = 2;
        let mut cache = KvCache::new(1, heads, head_dim, dtype, 4096, &Device::Cpu);
        let mut written: Vec<Tensor> = Vec::new();
        let mut last = None;
        for (i, n) in [1usize, 300, 7, 250, 1].into_iter().enumerate() {
            if i == 3 {
                // Reuse of a shared prefix: what follows is overwritten.
                cache.truncate(100);
                let head = Tensor::cat(&written, 1).unwrap().narrow(1, 0, 100).unwrap();
                written = vec![head];
            }
            let k = random((heads, n, head_dim), i as u64);
            cache.reserve(n).unwrap();
            let (keys, values) = cache.append(0, &k, &(&k * 2.0).unwrap()).unwrap();
            assert_eq!(keys.dims(), values.dims());
            cache.advance(n);
            written.push(k);
            last = Some(keys);
        }
        (Tensor::cat(&written, 1).unwrap(), last.unwrap())
    }

    #[test]
    fn f32_is_exact() {
        let (written, read) = round_trip(KvDtype::F32, 64);
        assert_eq!(written.dims(), &[2, 351, 64]);
        assert_eq!(
            crate::test_model::max_abs_diff(&written, &read).unwrap(),
            0.0
        );
    }

    #[test]
    fn f16_is_within_half_precision_rounding() {
        let (written, read) = round_trip(KvDtype::F16, 64);
        let (w, r) = (flat(&written), flat(&read));
        for (w, r) in w.iter().zip(&r) {
            // Half an ulp of an 11-bit significand, relative, or of f16's subnormal spacing.
            let bound = (w.abs() * 2f32.powi(-11)).max(2f32.powi(-25));
            assert!((w - r).abs() <= bound, "{w} vs {r}");
        }
    }

    #[test]
    fn q8_0_is_within_half_a_scale_step() {
        for head_dim in [64, 16] {
            let (written, read) = round_trip(KvDtype::Q8_0, head_dim);
            let block = q8_block(head_dim);
            let (w, r) = (flat(&written), flat(&read));
            for (wb, rb) in w.chunks(block).zip(r.chunks(block)) {
                let amax = wb.iter().fold(0f32, |m, x| m.max(x.abs()));
                // The f16 scale is amax / 127 within 2^-11; the error is half of it.
                let bound = amax / 127.0 * (1.0 + 2f32.powi(-10)) / 2.0;
                for (w, r) in wb.iter().zip(rb) {
                    assert!((w - r).abs() <= bound, "{w} vs {r}, bound {bound}");
                }
            }
        }
    }

    #[test]
    fn q8_0_keeps_zeros_and_extremes() {
        let x = Tensor::from_vec(
            [vec![0f32; 32], (0..32).map(|i| i as f32 - 16.0).collect()].concat(),
            (1, 2, 32),
            &Device::Cpu,
        )
        .unwrap();
        let (q, s) = quantize_q8(&x, 32).unwrap();
        let back = flat(&dequantize_q8(&q, &s).unwrap());
        assert!(back[..32].iter().all(|v| *v == 0.0));
        // The largest value maps to -127 exactly; only the f16 scale's rounding remains.
        assert!(
            (back[32] + 16.0).abs() <= 16.0 * 2f32.powi(-11),
            "{}",
            back[32]
        );
    }

    #[test]
    fn the_host_read_equals_the_tensor_ops() {
        for (dtype, head_dim) in [(KvDtype::F16, 64), (KvDtype::Q8_0, 64), (KvDtype::Q8_0, 16)] {
            let mut cache = KvCache::new(2, 2, head_dim, dtype, 4096, &Device::Cpu);
            for (i, n) in [5usize, 300].into_iter().enumerate() {
                cache.reserve(n).unwrap();
                for layer in 0..2 {
                    let k = random((2, n, head_dim), (10 * i + layer) as u64);
                    cache.append(layer, &k, &k).unwrap();
                }
                cache.advance(n);
            }
            let part = &cache.layers[1][0];
            let host = cache.read_cpu(part, 305).unwrap();
            let data = part.data.narrow(1, 0, 305).unwrap();
            let ops = match dtype {
                KvDtype::F16 => data.to_dtype(DType::F32).unwrap(),
                _ => dequantize_q8(
                    &data,
                    &part.scale.as_ref().unwrap().narrow(1, 0, 305).unwrap(),
                )
                .unwrap(),
            };
            assert_eq!(host, flat(&ops), "{dtype:?}, {head_dim}");
        }
    }

    #[test]
    fn sizes_follow_the_dtype() {
        assert_eq!(KvDtype::F32.bytes_per_vector(64), 256);
        assert_eq!(KvDtype::F16.bytes_per_vector(64), 128);
        // llama.cpp's q8_0: 34 bytes per 32 values.
        assert_eq!(KvDtype::Q8_0.bytes_per_vector(64), 68);
        for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Q8_0] {
            assert_eq!(KvDtype::parse(dtype.name()), Some(dtype));
            let mut cache = KvCache::new(3, 2, 64, dtype, 1000, &Device::Cpu);
            assert_eq!(cache.allocated_bytes(), 0);
            cache.reserve(10).unwrap();
            assert_eq!(cache.capacity(), GROW_BY);
            assert_eq!(
                cache.allocated_bytes(),
                GROW_BY * 3 * 2 * 2 * dtype.bytes_per_vector(64)
            );
        }
    }

    #[test]
    fn growth_is_geometric_and_stops_at_the_served_context() {
        let mut cache = KvCache::new(1, 1, 32, KvDtype::Q8_0, 1000, &Device::Cpu);
        let mut seen = Vec::new();
        for _ in 0..1000 {
            cache.reserve(1).unwrap();
            cache.advance(1);
            if seen.last() != Some(&cache.capacity()) {
                seen.push(cache.capacity());
            }
        }
        assert_eq!(seen, vec![256, 512, 768, 1000]);
    }

    /// What one decode step pays per layer to write its token and read the history back, on
    /// the 1B shape's layer (8 KV heads of 64) after 2048 tokens.
    #[test]
    #[ignore]
    fn append_and_read_speed_per_layer() {
        for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Q8_0] {
            let mut cache = KvCache::new(1, 8, 64, dtype, 4096, &Device::Cpu);
            let history = random((8, 2048, 64), 1);
            cache.reserve(2049).unwrap();
            cache.append(0, &history, &history).unwrap();
            cache.advance(2048);
            let token = random((8, 1, 64), 2);
            let rounds = 200;
            let start = std::time::Instant::now();
            for _ in 0..rounds {
                let (k, v) = cache.append(0, &token, &token).unwrap();
                // As attention does: values contiguous for the second matmul.
                std::hint::black_box((k, v.contiguous().unwrap()));
            }
            eprintln!(
                "kv {}: {:.0} us per layer",
                dtype.name(),
                start.elapsed().as_secs_f64() * 1e6 / rounds as f64
            );
        }
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }
}
