//! Weight matrices and their products with activations.
//!
//! Q8_0 and Q4_0 weights are repacked at load and multiplied by our own kernels: AVX2 on
//! x86-64 (picked at run time), portable code elsewhere; so are Q4_K, Q5_K and Q6_K, in
//! [`super::kquants`]; F16 and BF16 stay in 16 bits for [`linear_half`]'s kernels. Other
//! formats go through candle's `QMatMul`.
//!
//! The repacked layout interleaves eight rows: for each block of 32 columns, four columns of
//! each of the eight rows share one 32-byte vector, so one vector instruction advances eight
//! dot products, the eight results come out in the lanes of one register (no horizontal sums),
//! and the eight f32 block scales load as one vector. Each loaded group of rows is reused for
//! every activation row of the step (prefill chunks, batched sequences) while it is in cache.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};

use super::{kquants, repack};

/// Elements per quantization block, for both Q8_0 and Q4_0.
const BLOCK: usize = 32;
/// Rows interleaved in one group.
const GROUP: usize = 8;
/// Row groups a work item covers: large enough to amortize scheduling, small enough to
/// spread a 512-row matrix over the threads.
const GROUPS_PER_ITEM: usize = 2;

#[derive(Debug, Clone)]
pub(crate) enum Linear {
    Candle(QMatMul),
    Quant(std::sync::Arc<Packed>),
    /// F16 or BF16, kept in 16 bits: [`linear_half`].
    Half(std::sync::Arc<linear_half::Half>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackedKind {
    Q8_0,
    Q4_0,
    Q4K,
    Q5K,
    Q6K,
}

/// A quantized matrix, `rows × cols`, in groups of eight interleaved rows.
#[derive(Debug)]
pub(crate) struct Packed {
    kind: PackedKind,
    rows: usize,
    cols: usize,
    /// Per group and block: the eight rows' f32 scales (zero for padding rows). Empty for
    /// K-quants, whose scales live in `quants`.
    scales: Vec<f32>,
    /// Per group and block: Q8_0, 8 vectors of 32 bytes, vector `c` holding columns
    /// `4c..4c+4` of rows 0..8 in turn; Q4_0, 4 vectors of 32 bytes, vector `p` holding
    /// columns `8p..8p+4` in its low nibbles and `8p+4..8p+8` in its high nibbles, in the
    /// same row order, as unsigned nibbles (the weight is the nibble minus 8). K-quants: the
    /// groups in the layout of [`super::kquants`].
    quants: Vec<u8>,
}

impl Linear {
    /// Wraps a weight loaded from a file, repacking the formats our kernels serve.
    pub fn from_qtensor(t: QTensor) -> Result<Linear> {
        if t.device().is_cpu() {
            let (rows, cols) = t.shape().dims2()?;
            if let Some(ours) = Linear::from_ggml(t.dtype(), rows, cols, &t.data()?)? {
                return Ok(ours);
            }
        }
        Ok(Linear::Candle(QMatMul::from_arc(std::sync::Arc::new(t))?))
    }

    /// A `rows × cols` weight of `dtype` from its bytes in a file, in the layout our kernels
    /// read, or `None` where they do not serve it (other types, rows of a length the blocks do
    /// not divide).
    pub fn from_ggml(
        dtype: GgmlDType,
        rows: usize,
        cols: usize,
        data: &[u8],
    ) -> Result<Option<Linear>> {
        Linear::from_ggml_parts(dtype, cols, &[(rows, data)])
    }

    /// Matrices of one `dtype` and width stacked into one, from their bytes in a file.
    pub fn from_ggml_parts(
        dtype: GgmlDType,
        cols: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Option<Linear>> {
        let kind = match dtype {
            GgmlDType::F16 | GgmlDType::BF16 => None,
            GgmlDType::Q8_0 => Some(PackedKind::Q8_0),
            GgmlDType::Q4_0 => Some(PackedKind::Q4_0),
            GgmlDType::Q4K => Some(PackedKind::Q4K),
            GgmlDType::Q5K => Some(PackedKind::Q5K),
            GgmlDType::Q6K => Some(PackedKind::Q6K),
            _ => return Ok(None),
        };
        let (block_columns, block_bytes) = match kind {
            Some(kind) => (BLOCK * kind.block_columns(), repack::file_block_bytes(kind)),
            None => (1, 2),
        };
        if !cols.is_multiple_of(block_columns) {
            return Ok(None);
        }
        let row_bytes = cols / block_columns * block_bytes;
        for &(rows, data) in parts {
            if data.len() != rows * row_bytes {
                candle_core::bail!(
                    "a {rows}x{cols} {dtype:?} tensor of {} bytes, not {}",
                    data.len(),
                    rows * row_bytes
                )
            }
        }
        let bytes: Vec<&[u8]> = parts.iter().map(|&(_, data)| data).collect();
        let rows = repack::FileRows::new(&bytes, row_bytes);
        Ok(Some(match kind {
            Some(kind) => Linear::Quant(std::sync::Arc::new(Packed::repack(kind, cols, &rows))),
            None => Linear::half_from_ggml(dtype == GgmlDType::BF16, cols, &rows),
        }))
    }

    /// `x` is `(m, cols)`; the result `(m, rows)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => m.forward(x),
            Linear::Quant(p) => p.forward(x),
            Linear::Half(h) => h.forward(x),
        }
    }

    /// Rows `ids` of the matrix, as f32 `(ids, cols)`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Linear::Candle(m) => m.embedding(ids)?.to_dtype(DType::F32),
            Linear::Quant(p) => rows_of(ids, p.rows, p.cols, |r, out| p.dequantize_row(r, out)),
            Linear::Half(h) => rows_of(ids, h.rows(), h.cols(), |r, out| h.row(r, out)),
        }
    }
}

/// Rows `ids` of a `rows × cols` matrix whose row `r` `row(r, out)` writes, as f32.
fn rows_of(
    ids: &Tensor,
    rows: usize,
    cols: usize,
    row: impl Fn(usize, &mut [f32]),
) -> Result<Tensor> {
    let ids = ids.to_vec1::<u32>()?;
    let mut out = vec![0f32; ids.len() * cols];
    for (i, &id) in ids.iter().enumerate() {
        if id as usize >= rows {
            candle_core::bail!("token id {id} is outside the vocabulary of {rows}")
        }
        row(id as usize, &mut out[i * cols..(i + 1) * cols]);
    }
    Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)
}

impl PackedKind {
    /// Blocks of 32 columns in one of the format's blocks.
    fn block_columns(self) -> usize {
        match self {
            PackedKind::Q8_0 | PackedKind::Q4_0 => 1,
            PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => kquants::SUPER / BLOCK,
        }
    }

    fn is_kquant(self) -> bool {
        self.block_columns() > 1
    }
}

impl Packed {
    fn block_bytes(kind: PackedKind) -> usize {
        match kind {
            PackedKind::Q8_0 => GROUP * BLOCK,
            PackedKind::Q4_0 => GROUP * BLOCK / 2,
            PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => {
                unreachable!("K-quants have no 32-column block")
            }
        }
    }

    /// Bytes of one group of eight rows in `quants`.
    fn group_bytes(&self) -> usize {
        if self.kind.is_kquant() {
            return kquants::group_bytes(self.kind, self.cols);
        }
        self.blocks_per_row() * Self::block_bytes(self.kind)
    }

    fn repack(kind: PackedKind, cols: usize, data: &repack::FileRows) -> Packed {
        let (scales, quants) = if kind.is_kquant() {
            (Vec::new(), repack::kquant(kind, cols, data))
        } else {
            repack::q8_0_q4_0(kind, cols, data)
        };
        Packed {
            kind,
            rows: data.rows(),
            cols,
            scales,
            quants,
        }
    }

    /// One matrix repacked from its file bytes.
    #[cfg(all(test, target_arch = "aarch64"))]
    pub(super) fn repack_one(kind: PackedKind, cols: usize, data: &[u8]) -> Packed {
        let row_bytes = cols / (BLOCK * kind.block_columns()) * repack::file_block_bytes(kind);
        Packed::repack(kind, cols, &repack::FileRows::new(&[data], row_bytes))
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    /// The integer weight at (`r`, `j`) and its block scale.
    fn weight(&self, r: usize, j: usize) -> (i32, f32) {
        let nb = self.blocks_per_row();
        let (g, lane, b, col) = (r / GROUP, r % GROUP, j / BLOCK, j % BLOCK);
        let block = &self.quants[(g * nb + b) * Self::block_bytes(self.kind)..];
        let q = match self.kind {
            PackedKind::Q8_0 => block[(col / 4) * 32 + lane * 4 + col % 4] as i8 as i32,
            PackedKind::Q4_0 => {
                let (p, half, e) = (col / 8, (col % 8) / 4, col % 4);
                let byte = block[p * 32 + lane * 4 + e];
                (if half == 0 { byte & 0x0F } else { byte >> 4 }) as i32 - 8
            }
            PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => {
                unreachable!("K-quants decode in kquants")
            }
        };
        (q, self.scales[(g * nb + b) * GROUP + lane])
    }

    fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        if self.kind.is_kquant() {
            let (g, gb) = (row / GROUP, self.group_bytes());
            let group = &self.quants[g * gb..(g + 1) * gb];
            return kquants::dequantize_row(self.kind, group, row % GROUP, &mut out[..self.cols]);
        }
        for (j, o) in out.iter_mut().enumerate().take(self.cols) {
            let (q, d) = self.weight(row, j);
            *o = q as f32 * d;
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.dim(0)?;
        Tensor::from_vec(self.products(x)?, (m, self.rows), &Device::Cpu)
    }

    /// `x · selfᵀ` as a row-major `(m, rows)` buffer.
    fn products(&self, x: &Tensor) -> Result<Vec<f32>> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!(
                "matmul of ({m}, {k}) by a ({}, {}) weight",
                self.rows,
                self.cols
            )
        }
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let acts = Activations::quantize(&x.flatten_all()?.to_vec1::<f32>()?, m, k);
        let mut out = vec![0f32; m * self.rows];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let groups = self.rows.div_ceil(GROUP);
        let items = groups.div_ceil(GROUPS_PER_ITEM);
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let out_ptr = &out_ptr;
            for item in range {
                let start = item * GROUPS_PER_ITEM;
                for g in start..groups.min(start + GROUPS_PER_ITEM) {
                    let rows = (self.rows - g * GROUP).min(GROUP);
                    let mut i = 0;
                    while i < m {
                        let (dots, taken) = self.group_dots(g, &acts, i, m);
                        for (d, dots) in dots.iter().enumerate().take(taken) {
                            for (lane, dot) in dots.iter().enumerate().take(rows) {
                                // SAFETY: each (i, row) is written by the one item owning the
                                // row's group, and lies inside the m × rows output.
                                unsafe {
                                    *out_ptr.0.add((i + d) * self.rows + g * GROUP + lane) = *dot
                                };
                            }
                        }
                        i += taken;
                    }
                }
            }
        });
        Ok(out)
    }

    /// Dot products of group `g` with activation row `i`, and with rows `i + 1..` too
    /// (answering how many) where a kernel takes several rows at once.
    fn group_dots(
        &self,
        g: usize,
        acts: &Activations,
        i: usize,
        m: usize,
    ) -> ([[f32; GROUP]; 4], usize) {
        if self.kind.is_kquant() {
            let gb = self.group_bytes();
            let quants = &self.quants[g * gb..(g + 1) * gb];
            return kquants::group_dots(self.kind, quants, acts, i, m);
        }
        let mut dots = [[0.0; GROUP]; 4];
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            let nb = self.blocks_per_row();
            let gb = self.group_bytes();
            let quants = &self.quants[g * gb..(g + 1) * gb];
            let scales = &self.scales[g * nb * GROUP..(g + 1) * nb * GROUP];
            // SAFETY: AVX2/FMA detected; the slices hold nb blocks of the group and of each
            // row taken, and rows i..i + taken exist.
            unsafe {
                return if i + 4 <= m {
                    (self.rows_avx2::<4>(quants, scales, acts, i), 4)
                } else if i + 2 <= m {
                    let [d0, d1] = self.rows_avx2::<2>(quants, scales, acts, i);
                    ([d0, d1, dots[2], dots[3]], 2)
                } else {
                    let [d0] = self.rows_avx2::<1>(quants, scales, acts, i);
                    ([d0, dots[1], dots[2], dots[3]], 1)
                };
            }
        }
        dots[0] = self.group_dot(g, acts, i);
        (dots, 1)
    }

    /// Q8_0 or Q4_0 dot products of one group (`quants`, `scales`) with activation rows
    /// `i..i + R`, each weight vector unpacked once for all of them.
    ///
    /// # Safety
    /// AVX2 and FMA must be available, and rows `i..i + R` exist.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    unsafe fn rows_avx2<const R: usize>(
        &self,
        quants: &[u8],
        scales: &[f32],
        acts: &Activations,
        i: usize,
    ) -> [[f32; GROUP]; R] {
        let a = std::array::from_fn(|r| acts.row_quants(i + r));
        let s = std::array::from_fn(|r| acts.row_scales(i + r));
        // SAFETY: per the contract; the slices hold the group's and the rows' nb blocks.
        unsafe {
            match self.kind {
                PackedKind::Q8_0 => x86::rows_q8::<R>(quants, scales, a, s),
                PackedKind::Q4_0 => {
                    let sums = std::array::from_fn(|r| acts.row_sums(i + r));
                    x86::rows_q4::<R>(quants, scales, a, s, sums)
                }
                PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => unreachable!(),
            }
        }
    }

    /// Dot products of the eight rows of group `g` with activation row `i`.
    fn group_dot(&self, g: usize, acts: &Activations, i: usize) -> [f32; GROUP] {
        let gb = self.group_bytes();
        let quants = &self.quants[g * gb..(g + 1) * gb];
        if self.kind.is_kquant() {
            let (a, s, sums) = (acts.row_quants(i), acts.row_scales(i), acts.row_sums(i));
            return kquants::group_dot(self.kind, quants, a, s, sums);
        }
        let nb = self.blocks_per_row();
        let scales = &self.scales[g * nb * GROUP..(g + 1) * nb * GROUP];
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2/FMA detected; the slices hold nb blocks of the group and the row.
            return unsafe { self.rows_avx2::<1>(quants, scales, acts, i)[0] };
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(dots) = neon::group_dot(self.kind, quants, scales, acts, i) {
            return dots;
        }
        self.group_dot_portable(g, acts, i)
    }

    /// [`Packed::group_dot`] for Q8_0 and Q4_0, one weight at a time.
    fn group_dot_portable(&self, g: usize, acts: &Activations, i: usize) -> [f32; GROUP] {
        let nb = self.blocks_per_row();
        let mut dots = [0f32; GROUP];
        let (a, a_scales) = (acts.row_quants(i), acts.row_scales(i));
        for (lane, dot) in dots.iter_mut().enumerate() {
            let r = g * GROUP + lane;
            if r >= self.rows {
                break;
            }
            for b in 0..nb {
                let mut sum = 0i32;
                let mut d = 0f32;
                for col in 0..BLOCK {
                    let (q, scale) = self.weight(r, b * BLOCK + col);
                    sum += q * a[b * BLOCK + col] as i32;
                    d = scale;
                }
                *dot += sum as f32 * d * a_scales[b];
            }
        }
        dots
    }
}

pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: the pointer is only used for disjoint writes while the owning Vec outlives the pool
// call (execute_chunked returns after every worker finished).
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// Activations quantized to 8 bits per block of 32, as the weights' partner in dot products.
pub(super) struct Activations {
    k: usize,
    quants: Vec<i8>,
    scales: Vec<f32>,
    /// Per block: the sum of its quants, for Q4_0's offset of 8 and Q4_K's mins.
    sums: Vec<i32>,
    /// Per half block of 16: the sum of its quants, for the AVX2 Q6_K kernel's offset of 32
    /// (other kernels take the offset out otherwise, so other targets skip computing it).
    #[cfg(target_arch = "x86_64")]
    halves: Vec<i16>,
}

impl Activations {
    pub(super) fn quantize(x: &[f32], m: usize, k: usize) -> Activations {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: AVX2/FMA detected.
            return unsafe { Self::quantize_avx2(x, m, k) };
        }
        Self::quantize_portable(x, m, k)
    }

    /// The same code compiled for AVX2, where rounding is one vector instruction rather than
    /// a libm call per element.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn quantize_avx2(x: &[f32], m: usize, k: usize) -> Activations {
        Self::quantize_portable(x, m, k)
    }

    #[inline(always)]
    fn quantize_portable(x: &[f32], m: usize, k: usize) -> Activations {
        let mut quants = vec![0i8; m * k];
        let mut scales = vec![0f32; m * k / BLOCK];
        let mut sums = vec![0i32; m * k / BLOCK];
        for (((block, q), d), sum) in x
            .chunks_exact(BLOCK)
            .zip(quants.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
            .zip(sums.iter_mut())
        {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            for (q, v) in q.iter_mut().zip(block) {
                *q = (v * inv).round() as i8;
            }
            *sum = q.iter().map(|&v| v as i32).sum();
            *d = scale;
        }
        #[cfg(target_arch = "x86_64")]
        let halves = quants
            .chunks_exact(BLOCK / 2)
            .map(|q| q.iter().map(|&v| v as i16).sum())
            .collect();
        Activations {
            k,
            quants,
            scales,
            sums,
            #[cfg(target_arch = "x86_64")]
            halves,
        }
    }

    pub(super) fn row_quants(&self, i: usize) -> &[i8] {
        &self.quants[i * self.k..(i + 1) * self.k]
    }

    pub(super) fn row_scales(&self, i: usize) -> &[f32] {
        &self.scales[i * self.k / BLOCK..(i + 1) * self.k / BLOCK]
    }

    pub(super) fn row_sums(&self, i: usize) -> &[i32] {
        &self.sums[i * self.k / BLOCK..(i + 1) * self.k / BLOCK]
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) fn row_halves(&self, i: usize) -> &[i16] {
        let per_row = 2 * self.k / BLOCK;
        &self.halves[i * per_row..(i + 1) * per_row]
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[path = "linear_x86.rs"]
pub(super) mod x86;

#[cfg(target_arch = "aarch64")]
#[path = "linear_neon.rs"]
pub(super) mod neon;

#[path = "linear_half.rs"]
mod linear_half;

#[path = "linear_fused.rs"]
mod fused;
pub(crate) use fused::Fused;
use fused::FusedKind;

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Values in [-1, 1) from a fixed generator: the same matrices on every run and machine,
    /// shared by the kernel tests of every format.
    pub(in crate::llama) fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
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
        let diff = crate::test_model::max_abs_diff(&got, &expected).unwrap();
        // candle keeps activation scales in f16, we keep them in f32: a few 1e-3 apart on
        // outputs of magnitude ~5.
        assert!(diff < 5e-3, "{dtype:?} m={m}: max abs difference {diff}");
        // The repacked weights are the file's weights, and the vector kernels agree with a
        // plain loop over them.
        let Linear::Quant(p) = &ours else {
            unreachable!()
        };
        let dense = QTensor::quantize(&w, dtype)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let mut row = vec![0f32; cols];
        p.dequantize_row(69, &mut row);
        assert_eq!(row, dense.get(69).unwrap().to_vec1::<f32>().unwrap());
        let acts = Activations::quantize(&x.flatten_all().unwrap().to_vec1().unwrap(), m, cols);
        for g in 0..rows.div_ceil(GROUP) {
            let fast = p.group_dot(g, &acts, m - 1);
            for (lane, &v) in fast.iter().enumerate() {
                let r = g * GROUP + lane;
                if r >= rows {
                    continue;
                }
                let (a, s) = (acts.row_quants(m - 1), acts.row_scales(m - 1));
                let plain: f32 = (0..cols / BLOCK)
                    .map(|b| {
                        let dot: i32 = (0..BLOCK)
                            .map(|c| p.weight(r, b * BLOCK + c).0 * a[b * BLOCK + c] as i32)
                            .sum();
                        dot as f32 * p.weight(r, b * BLOCK).1 * s[b]
                    })
                    .sum();
                assert!((plain - v).abs() < 1e-3, "row {r}: {plain} vs {v}");
                assert!((got_at(&got, m - 1, r) - v).abs() < 1e-6);
            }
        }
    }

    fn got_at(t: &Tensor, i: usize, j: usize) -> f32 {
        t.get(i)
            .unwrap()
            .get(j)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
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
            let diff = crate::test_model::max_abs_diff(&got, &expected).unwrap();
            assert!(diff < 1e-6);
        }
    }

    #[test]
    fn fused_parts_equal_separate_products() {
        let x = Tensor::from_vec(random(3 * 128, 9), (3, 128), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let parts: Vec<Linear> = [(16, 4), (8, 5), (24, 6)]
                .iter()
                .map(|&(rows, seed)| {
                    let w = Tensor::from_vec(random(rows * 128, seed), (rows, 128), &Device::Cpu)
                        .unwrap();
                    Linear::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap()
                })
                .collect();
            let separate: Vec<Tensor> = parts.iter().map(|p| p.forward(&x).unwrap()).collect();
            let fused = Fused::new(parts);
            assert!(fused.is_joined());
            for (got, want) in fused.forward(&x).unwrap().iter().zip(&separate) {
                assert_eq!(got.dims(), want.dims());
                let same = got.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                    == want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(same, "{dtype:?}: a fused part differs from its own product");
            }
        }
        // Rows that do not fill whole groups of eight stay separate products.
        let w = Tensor::from_vec(random(12 * 128, 7), (12, 128), &Device::Cpu).unwrap();
        let odd = || Linear::from_qtensor(QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()).unwrap();
        assert!(!Fused::new(vec![odd(), odd()]).is_joined());
    }

    #[test]
    fn swiglu_epilogue_matches_tensor_ops() {
        let x = Tensor::from_vec(random(2 * 64, 11), (2, 64), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0] {
            let part = |seed| {
                let w = Tensor::from_vec(random(16 * 64, seed), (16, 64), &Device::Cpu).unwrap();
                Linear::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap()
            };
            let (gate, up) = (part(12), part(13));
            let want = (candle_nn::ops::silu(&gate.forward(&x).unwrap()).unwrap()
                * up.forward(&x).unwrap())
            .unwrap();
            let got = Fused::new(vec![gate, up]).forward_swiglu(&x).unwrap();
            let diff = crate::test_model::max_abs_diff(&got, &want).unwrap();
            assert!(diff < 1e-5, "{dtype:?}: {diff}");
        }
    }
}
