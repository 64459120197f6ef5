//! Weight matrices and their products with activations.
//!
//! Q8_0 and Q4_0 weights are repacked at load into planes of f32 block scales and packed
//! quants, and multiplied by our own kernels: AVX2 on x86-64 (picked at run time), portable
//! code elsewhere. Decode is bound by how fast the weights stream from memory, so the kernels
//! read each weight byte once per step, convert no half-precision scale in the inner loop, and
//! reuse every loaded weight block for all the activation rows of the step (prefill chunks and
//! batched sequences). Other formats go through candle's `QMatMul`.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

/// Elements per quantization block, for both Q8_0 and Q4_0.
const BLOCK: usize = 32;
/// Weight rows a work item covers: large enough to amortize scheduling, small enough to
/// spread a 512-row matrix over the threads.
const ROWS_PER_ITEM: usize = 16;

#[derive(Debug, Clone)]
pub(crate) enum Linear {
    Candle(QMatMul),
    Quant(std::sync::Arc<Packed>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackedKind {
    Q8_0,
    Q4_0,
}

/// A quantized matrix, `rows × cols`, with scales and quants in separate planes.
#[derive(Debug)]
pub(crate) struct Packed {
    kind: PackedKind,
    rows: usize,
    cols: usize,
    /// `rows × cols / 32` block scales.
    scales: Vec<f32>,
    /// Q8_0: one signed byte per weight. Q4_0: 16 bytes per block, weight `j` in the low
    /// nibble of byte `j` and weight `j + 16` in its high nibble, each offset by 8.
    quants: Vec<u8>,
}

impl Linear {
    /// Wraps a weight loaded from a file, repacking the formats our kernels serve.
    pub fn from_qtensor(t: QTensor) -> Result<Linear> {
        let kind = match t.dtype() {
            GgmlDType::Q8_0 => PackedKind::Q8_0,
            GgmlDType::Q4_0 => PackedKind::Q4_0,
            _ => return Ok(Linear::Candle(QMatMul::from_arc(std::sync::Arc::new(t))?)),
        };
        let (rows, cols) = t.shape().dims2()?;
        if !cols.is_multiple_of(BLOCK) || !t.device().is_cpu() {
            return Ok(Linear::Candle(QMatMul::from_arc(std::sync::Arc::new(t))?));
        }
        let data = t.data()?;
        Ok(Linear::Quant(std::sync::Arc::new(Packed::repack(
            kind, rows, cols, &data,
        ))))
    }

    /// `x` is `(m, cols)`; the result `(m, rows)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => m.forward(x),
            Linear::Quant(p) => p.forward(x),
        }
    }

    /// Rows `ids` of the matrix, as f32 `(ids, cols)`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => m.embedding(ids)?.to_dtype(DType::F32),
            Linear::Quant(p) => {
                let ids = ids.to_vec1::<u32>()?;
                let mut out = vec![0f32; ids.len() * p.cols];
                for (i, &id) in ids.iter().enumerate() {
                    if id as usize >= p.rows {
                        candle_core::bail!("token id {id} is outside the vocabulary of {}", p.rows)
                    }
                    p.dequantize_row(id as usize, &mut out[i * p.cols..(i + 1) * p.cols]);
                }
                Tensor::from_vec(out, (ids.len(), p.cols), &Device::Cpu)
            }
        }
    }
}

impl Packed {
    fn repack(kind: PackedKind, rows: usize, cols: usize, data: &[u8]) -> Packed {
        let blocks = rows * cols / BLOCK;
        let (block_bytes, quant_bytes) = match kind {
            PackedKind::Q8_0 => (2 + BLOCK, BLOCK),
            PackedKind::Q4_0 => (2 + BLOCK / 2, BLOCK / 2),
        };
        let mut scales = Vec::with_capacity(blocks);
        let mut quants = Vec::with_capacity(blocks * quant_bytes);
        for block in data.chunks_exact(block_bytes).take(blocks) {
            scales.push(half::f16::from_le_bytes([block[0], block[1]]).to_f32());
            quants.extend_from_slice(&block[2..]);
        }
        Packed {
            kind,
            rows,
            cols,
            scales,
            quants,
        }
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    fn row_bytes(&self) -> usize {
        match self.kind {
            PackedKind::Q8_0 => self.cols,
            PackedKind::Q4_0 => self.cols / 2,
        }
    }

    fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let nb = self.blocks_per_row();
        let quants = &self.quants[row * self.row_bytes()..(row + 1) * self.row_bytes()];
        for b in 0..nb {
            let d = self.scales[row * nb + b];
            let out = &mut out[b * BLOCK..(b + 1) * BLOCK];
            match self.kind {
                PackedKind::Q8_0 => {
                    for (o, &q) in out.iter_mut().zip(&quants[b * BLOCK..(b + 1) * BLOCK]) {
                        *o = q as i8 as f32 * d;
                    }
                }
                PackedKind::Q4_0 => {
                    let qs = &quants[b * 16..(b + 1) * 16];
                    for j in 0..16 {
                        out[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
                        out[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
                    }
                }
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!("matmul of ({m}, {k}) by a ({}, {}) weight", self.rows, self.cols)
        }
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let acts = Activations::quantize(&x.flatten_all()?.to_vec1::<f32>()?, m, k);
        let mut out = vec![0f32; m * self.rows];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let items = self.rows.div_ceil(ROWS_PER_ITEM);
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let out_ptr = &out_ptr;
            for item in range {
                let start = item * ROWS_PER_ITEM;
                let end = self.rows.min(start + ROWS_PER_ITEM);
                // SAFETY: each work item writes only the output columns of its own rows.
                unsafe { self.rows_times(start..end, &acts, out_ptr.0) };
            }
        });
        Tensor::from_vec(out, (m, self.rows), &Device::Cpu)
    }

    /// Output columns `rows` for every activation row, written into `out` (`m × self.rows`).
    ///
    /// # Safety
    /// `out` must hold `acts.m * self.rows` elements, and no one else may write these columns.
    unsafe fn rows_times(&self, rows: std::ops::Range<usize>, acts: &Activations, out: *mut f32) {
        let nb = self.blocks_per_row();
        let rb = self.row_bytes();
        let mut r = rows.start;
        while r < rows.end {
            let group = (rows.end - r).min(4);
            for i in 0..acts.m {
                let mut dots = [0f32; 4];
                for (g, dot) in dots.iter_mut().enumerate().take(group) {
                    let row = r + g;
                    *dot = dot_row(
                        self.kind,
                        &self.quants[row * rb..(row + 1) * rb],
                        &self.scales[row * nb..(row + 1) * nb],
                        acts.row_quants(i),
                        acts.row_scales(i),
                    );
                }
                for (g, dot) in dots.iter().enumerate().take(group) {
                    // SAFETY: in bounds per the contract; columns `rows` are ours alone.
                    unsafe { *out.add(i * self.rows + r + g) = *dot };
                }
            }
            r += group;
        }
    }
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only used for disjoint writes while the owning Vec outlives the pool
// call (execute_chunked returns after every worker finished).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Activations quantized to 8 bits per block of 32, as the weights' partner in dot products.
struct Activations {
    m: usize,
    k: usize,
    quants: Vec<i8>,
    scales: Vec<f32>,
}

impl Activations {
    fn quantize(x: &[f32], m: usize, k: usize) -> Activations {
        let mut quants = vec![0i8; m * k];
        let mut scales = vec![0f32; m * k / BLOCK];
        for ((block, q), d) in x
            .chunks_exact(BLOCK)
            .zip(quants.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in q.iter_mut().zip(block) {
                *q = (v * inv).round() as i8;
            }
            *d = scale;
        }
        Activations {
            m,
            k,
            quants,
            scales,
        }
    }

    fn row_quants(&self, i: usize) -> &[i8] {
        &self.quants[i * self.k..(i + 1) * self.k]
    }

    fn row_scales(&self, i: usize) -> &[f32] {
        &self.scales[i * self.k / BLOCK..(i + 1) * self.k / BLOCK]
    }
}

fn dot_row(kind: PackedKind, w: &[u8], ws: &[f32], a: &[i8], as_: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe {
            match kind {
                PackedKind::Q8_0 => x86::dot_q8(w, ws, a, as_),
                PackedKind::Q4_0 => x86::dot_q4(w, ws, a, as_),
            }
        };
    }
    match kind {
        PackedKind::Q8_0 => portable::dot_q8(w, ws, a, as_),
        PackedKind::Q4_0 => portable::dot_q4(w, ws, a, as_),
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

mod portable {
    use super::BLOCK;

    pub fn dot_q8(w: &[u8], ws: &[f32], a: &[i8], as_: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (b, (d, da)) in ws.iter().zip(as_).enumerate() {
            let w = &w[b * BLOCK..(b + 1) * BLOCK];
            let a = &a[b * BLOCK..(b + 1) * BLOCK];
            let dot: i32 = w.iter().zip(a).map(|(&w, &a)| w as i8 as i32 * a as i32).sum();
            sum += dot as f32 * d * da;
        }
        sum
    }

    pub fn dot_q4(w: &[u8], ws: &[f32], a: &[i8], as_: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (b, (d, da)) in ws.iter().zip(as_).enumerate() {
            let w = &w[b * 16..(b + 1) * 16];
            let a = &a[b * BLOCK..(b + 1) * BLOCK];
            let mut dot = 0i32;
            for j in 0..16 {
                dot += ((w[j] & 0x0F) as i32 - 8) * a[j] as i32;
                dot += ((w[j] >> 4) as i32 - 8) * a[j + 16] as i32;
            }
            sum += dot as f32 * d * da;
        }
        sum
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// Products of signed bytes summed in pairs, then in fours, as eight f32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul_sum_i8(x: __m256i, y: __m256i) -> __m256 {
        // maddubs wants unsigned × signed: move x's sign onto y.
        let ax = _mm256_sign_epi8(x, x);
        let sy = _mm256_sign_epi8(y, x);
        let pairs = _mm256_maddubs_epi16(ax, sy);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// AVX2 and FMA must be available; `w` holds `ws.len() * 32` bytes and `a` as many.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8(w: &[u8], ws: &[f32], a: &[i8], as_: &[f32]) -> f32 {
        let nb = ws.len();
        debug_assert!(w.len() >= nb * BLOCK && a.len() >= nb * BLOCK && as_.len() >= nb);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let mut b = 0;
        // Two independent accumulators keep the FMA latency off the critical path.
        while b + 1 < nb {
            unsafe {
                let x0 = _mm256_loadu_si256(wp.add(b * BLOCK) as *const __m256i);
                let y0 = _mm256_loadu_si256(ap.add(b * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(wp.add((b + 1) * BLOCK) as *const __m256i);
                let y1 = _mm256_loadu_si256(ap.add((b + 1) * BLOCK) as *const __m256i);
                let d0 = _mm256_set1_ps(*ws.get_unchecked(b) * *as_.get_unchecked(b));
                let d1 = _mm256_set1_ps(*ws.get_unchecked(b + 1) * *as_.get_unchecked(b + 1));
                acc0 = _mm256_fmadd_ps(d0, mul_sum_i8(x0, y0), acc0);
                acc1 = _mm256_fmadd_ps(d1, mul_sum_i8(x1, y1), acc1);
            }
            b += 2;
        }
        if b < nb {
            unsafe {
                let x = _mm256_loadu_si256(wp.add(b * BLOCK) as *const __m256i);
                let y = _mm256_loadu_si256(ap.add(b * BLOCK) as *const __m256i);
                let d = _mm256_set1_ps(ws[b] * as_[b]);
                acc0 = _mm256_fmadd_ps(d, mul_sum_i8(x, y), acc0);
            }
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }

    /// # Safety
    /// AVX2 and FMA must be available; `w` holds `ws.len() * 16` bytes, `a` `ws.len() * 32`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4(w: &[u8], ws: &[f32], a: &[i8], as_: &[f32]) -> f32 {
        let nb = ws.len();
        debug_assert!(w.len() >= nb * 16 && a.len() >= nb * BLOCK && as_.len() >= nb);
        let low = _mm256_set1_epi8(0x0F);
        let eight = _mm256_set1_epi8(8);
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let unpack = |p: *const u8| -> __m256i {
            // SAFETY: 16 readable bytes at `p`, per the caller's contract.
            let raw = unsafe { _mm_loadu_si128(p as *const __m128i) };
            let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
            _mm256_sub_epi8(_mm256_and_si256(both, low), eight)
        };
        let mut b = 0;
        while b + 1 < nb {
            unsafe {
                let x0 = unpack(wp.add(b * 16));
                let x1 = unpack(wp.add((b + 1) * 16));
                let y0 = _mm256_loadu_si256(ap.add(b * BLOCK) as *const __m256i);
                let y1 = _mm256_loadu_si256(ap.add((b + 1) * BLOCK) as *const __m256i);
                let d0 = _mm256_set1_ps(*ws.get_unchecked(b) * *as_.get_unchecked(b));
                let d1 = _mm256_set1_ps(*ws.get_unchecked(b + 1) * *as_.get_unchecked(b + 1));
                acc0 = _mm256_fmadd_ps(d0, mul_sum_i8(x0, y0), acc0);
                acc1 = _mm256_fmadd_ps(d1, mul_sum_i8(x1, y1), acc1);
            }
            b += 2;
        }
        if b < nb {
            unsafe {
                let x = unpack(wp.add(b * 16));
                let y = _mm256_loadu_si256(ap.add(b * BLOCK) as *const __m256i);
                let d = _mm256_set1_ps(ws[b] * as_[b]);
                acc0 = _mm256_fmadd_ps(d, mul_sum_i8(x, y), acc0);
            }
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Our kernels against candle's quantized matmul on the same quantized weights.
    fn agrees_with_candle(dtype: GgmlDType, m: usize) {
        let (rows, cols) = (70, 256);
        let w = Tensor::from_vec(random(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(random(m * cols, 2), (m, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, dtype).unwrap();
        let expected = QMatMul::from_qtensor(QTensor::quantize(&w, dtype).unwrap())
            .unwrap()
            .forward(&x)
            .unwrap();
        let ours = Linear::from_qtensor(q).unwrap();
        assert!(matches!(ours, Linear::Quant(_)));
        let got = ours.forward(&x).unwrap();
        let diff = (got - &expected)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // candle keeps activation scales in f16, we keep them in f32: a few 1e-3 apart on
        // outputs of magnitude ~5.
        assert!(diff < 5e-3, "{dtype:?} m={m}: max abs difference {diff}");
        // The portable kernels give the same numbers.
        let Linear::Quant(p) = &ours else { unreachable!() };
        let acts = Activations::quantize(&x.flatten_all().unwrap().to_vec1().unwrap(), m, cols);
        let nb = cols / BLOCK;
        let rb = p.row_bytes();
        for row in [0, 33, 69] {
            let portable = match p.kind {
                PackedKind::Q8_0 => portable::dot_q8(&p.quants[row * rb..(row + 1) * rb], &p.scales[row * nb..(row + 1) * nb], acts.row_quants(0), acts.row_scales(0)),
                PackedKind::Q4_0 => portable::dot_q4(&p.quants[row * rb..(row + 1) * rb], &p.scales[row * nb..(row + 1) * nb], acts.row_quants(0), acts.row_scales(0)),
            };
            let fast = got_at(&expected, 0, row);
            assert!((portable - fast).abs() < 5e-3, "row {row}: {portable} vs {fast}");
        }
    }

    fn got_at(t: &Tensor, i: usize, j: usize) -> f32 {
        t.get(i).unwrap().get(j).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn q8_0_matches_candle() {
        agrees_with_candle(GgmlDType::Q8_0, 1);
        agrees_with_candle(GgmlDType::Q8_0, 5);
    }

    #[test]
    fn q4_0_matches_candle() {
        agrees_with_candle(GgmlDType::Q4_0, 1);
        agrees_with_candle(GgmlDType::Q4_0, 7);
    }

    #[test]
    fn embedding_rows_are_the_dequantized_weights() {
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let w = Tensor::from_vec(random(8 * 64, 3), (8, 64), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let expected = q.dequantize(&Device::Cpu).unwrap().get(5).unwrap();
            let ours = Linear::from_qtensor(q).unwrap();
            let got = ours
                .embedding(&Tensor::new(&[5u32], &Device::Cpu).unwrap())
                .unwrap()
                .get(0)
                .unwrap();
            let diff = (got - expected).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6);
        }
    }
}
