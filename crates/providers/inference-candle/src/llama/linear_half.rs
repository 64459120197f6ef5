//! F16 and BF16 weights, kept in 16 bits and multiplied by our own kernels.
//!
//! candle widens half-precision GGUF weights to f32 at load, doubling their memory and the
//! bytes every decode step streams. Here they stay in 16 bits and widen in registers: F16
//! through F16C's `vcvtph2ps`, BF16 by a 16-bit shift (it is the top half of an f32).
//!
//! The layout interleaves eight rows: per group of eight rows, column `j` is eight
//! consecutive halves, one per row, so one 16-byte load widens to a vector whose lanes advance
//! eight dot products against one broadcast activation, and the eight results come out in
//! the lanes of one register. Rows past the end pad the last group with zeros. Two adjacent
//! groups are multiplied with up to six activation rows at a time, so each widened weight
//! vector feeds six FMAs when a step has several rows (prefill chunks, batched decode).
//!
//! GGUF files are not interleaved at all: their matrices are served in place from the mapped
//! file, in its own row-major order, by [`mapped`]'s kernels.

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Result, Tensor};
use memmap2::Mmap;

use super::{Fused, FusedKind, GROUP, Linear, SendPtr};

/// Groups of eight rows a work item covers, and the kernels' group tile.
const GROUPS_PER_ITEM: usize = 2;
/// Activation rows one kernel call multiplies with the item's weights.
const ROWS_PER_TILE: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HalfKind {
    F16,
    Bf16,
}

/// A `rows × cols` matrix of F16 or BF16 weights.
#[derive(Debug)]
pub(crate) struct Half {
    kind: HalfKind,
    rows: usize,
    cols: usize,
    data: Storage,
}

#[derive(Debug)]
enum Storage {
    /// Groups of eight interleaved rows: group `g`, column `j`, lane `l` (row `8g + l`) at
    /// `(g * cols + j) * 8 + l`, as bits.
    Interleaved(Vec<u16>),
    /// The rows of a mapped GGUF file as it holds them.
    Mapped(mapped::Mapped),
}

impl HalfKind {
    fn widen(self, bits: u16) -> f32 {
        match self {
            HalfKind::F16 => half::f16::from_bits(bits).to_f32(),
            HalfKind::Bf16 => f32::from_bits((bits as u32) << 16),
        }
    }
}

impl Linear {
    /// An F16 (or BF16, `bf16`) weight kept in 16 bits, from its rows in a file.
    pub(super) fn half_from_ggml(
        bf16: bool,
        cols: usize,
        data: &super::repack::FileRows,
    ) -> Linear {
        let kind = if bf16 { HalfKind::Bf16 } else { HalfKind::F16 };
        let data = Half::interleave(kind, data.rows(), cols, |r, out| {
            for (o, b) in out.iter_mut().zip(data.row(r).chunks_exact(2)) {
                *o = u16::from_le_bytes([b[0], b[1]]);
            }
        });
        Linear::Half(Arc::new(data))
    }

    /// Matrices of one `dtype` and width stacked into one, from their bytes in `map`: F16 and
    /// BF16 are served from the map itself, other types as [`Linear::from_ggml_parts`] makes
    /// them.
    pub(crate) fn from_ggml_mapped(
        map: &Arc<Mmap>,
        dtype: GgmlDType,
        cols: usize,
        parts: &[(usize, &[u8])],
    ) -> Result<Option<Linear>> {
        let kind = match dtype {
            GgmlDType::F16 => HalfKind::F16,
            GgmlDType::BF16 => HalfKind::Bf16,
            _ => return Linear::from_ggml_parts(dtype, cols, parts),
        };
        // Bytes of the wrong length (reported there) or from elsewhere than the map.
        let Some(data) = mapped::Mapped::new(map.clone(), cols, parts) else {
            return Linear::from_ggml_parts(dtype, cols, parts);
        };
        Ok(Some(Linear::Half(Arc::new(Half {
            kind,
            rows: parts.iter().map(|&(rows, _)| rows).sum(),
            cols,
            data: Storage::Mapped(data),
        }))))
    }

    /// A dense `(rows, cols)` weight rounded to F16 or BF16 (`dtype`) and kept in 16 bits.
    pub(crate) fn half_from_tensor(t: &Tensor, dtype: DType) -> Result<Linear> {
        let (rows, cols) = t.dims2()?;
        let flat = t.to_dtype(dtype)?.flatten_all()?;
        let (kind, bits): (HalfKind, Vec<u16>) = match dtype {
            DType::F16 => (
                HalfKind::F16,
                flat.to_vec1::<half::f16>()?
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            ),
            DType::BF16 => (
                HalfKind::Bf16,
                flat.to_vec1::<half::bf16>()?
                    .iter()
                    .map(|v| v.to_bits())
                    .collect(),
            ),
            other => candle_core::bail!("{other:?} is not a half-precision type"),
        };
        Ok(Linear::Half(Arc::new(Half::interleave(
            kind,
            rows,
            cols,
            |r, out| out.copy_from_slice(&bits[r * cols..(r + 1) * cols]),
        ))))
    }
}

/// Joins half matrices of one kind and width: interleaved ones whose rows fill whole groups
/// (groups are stored one after another, so stacking the matrices is concatenating their
/// buffers), and mapped ones of one file (whose rows are listed in turn).
pub(super) fn join(parts: &[Linear]) -> Option<Fused> {
    let halves: Vec<&Half> = parts
        .iter()
        .filter_map(|p| match p {
            Linear::Half(h) => Some(h.as_ref()),
            _ => None,
        })
        .collect();
    let first = halves.first()?;
    let fusable = halves.len() == parts.len()
        && halves.len() > 1
        && halves
            .iter()
            .all(|h| h.kind == first.kind && h.cols == first.cols);
    if !fusable {
        return None;
    }
    let data = match &first.data {
        Storage::Interleaved(_) => {
            let mut buffers = Vec::with_capacity(halves.len());
            for h in &halves {
                match &h.data {
                    Storage::Interleaved(data) if h.rows % GROUP == 0 => buffers.push(&data[..]),
                    _ => return None,
                }
            }
            Storage::Interleaved(buffers.concat())
        }
        Storage::Mapped(_) => {
            let mut maps = Vec::with_capacity(halves.len());
            for h in &halves {
                match &h.data {
                    Storage::Mapped(m) => maps.push(m),
                    Storage::Interleaved(_) => return None,
                }
            }
            Storage::Mapped(mapped::Mapped::join(&maps)?)
        }
    };
    let rows: Vec<usize> = halves.iter().map(|h| h.rows).collect();
    let joined = Half {
        kind: first.kind,
        rows: rows.iter().sum(),
        cols: first.cols,
        data,
    };
    Some(Fused {
        rows,
        kind: FusedKind::One(Linear::Half(Arc::new(joined))),
    })
}

impl Half {
    /// Lays out a matrix whose row `r` `row(r, out)` writes, as bits.
    fn interleave(
        kind: HalfKind,
        rows: usize,
        cols: usize,
        row: impl Fn(usize, &mut [u16]) + Sync,
    ) -> Half {
        let mut data = vec![0u16; rows.div_ceil(GROUP) * cols * GROUP];
        super::repack::par_groups(&mut data, cols * GROUP, |g, group| {
            let mut bits = vec![0u16; cols];
            for lane in 0..GROUP.min(rows - g * GROUP) {
                row(g * GROUP + lane, &mut bits);
                for (out, &b) in group.iter_mut().skip(lane).step_by(GROUP).zip(&bits) {
                    *out = b;
                }
            }
        });
        Half {
            kind,
            rows,
            cols,
            data: Storage::Interleaved(data),
        }
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    pub(super) fn cols(&self) -> usize {
        self.cols
    }

    /// Whether the weights are served from a mapped file.
    #[cfg(test)]
    pub(super) fn is_mapped(&self) -> bool {
        matches!(self.data, Storage::Mapped(_))
    }

    /// Row `r`, widened to f32.
    pub(super) fn row(&self, r: usize, out: &mut [f32]) {
        let data = match &self.data {
            Storage::Interleaved(data) => data,
            Storage::Mapped(m) => return m.widen_row(self.kind, r, out),
        };
        let (g, lane) = (r / GROUP, r % GROUP);
        let group = &data[g * self.cols * GROUP..(g + 1) * self.cols * GROUP];
        for (o, bits) in out.iter_mut().zip(group[lane..].iter().step_by(GROUP)) {
            *o = self.kind.widen(*bits);
        }
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let m = x.dim(0)?;
        Tensor::from_vec(self.products(x)?, (m, self.rows), &Device::Cpu)
    }

    /// `x · selfᵀ` as a row-major `(m, rows)` buffer.
    pub(super) fn products(&self, x: &Tensor) -> Result<Vec<f32>> {
        let (m, k) = x.dims2()?;
        if k != self.cols {
            candle_core::bail!(
                "matmul of ({m}, {k}) by a ({}, {}) weight",
                self.rows,
                self.cols
            )
        }
        let x = x
            .to_dtype(DType::F32)?
            .contiguous()?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let data = match &self.data {
            Storage::Interleaved(data) => data,
            Storage::Mapped(mapped) => return Ok(mapped.products(self.kind, &x, m, use_simd())),
        };
        let mut out = vec![0f32; m * self.rows];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let groups = self.rows.div_ceil(GROUP);
        let items = groups.div_ceil(GROUPS_PER_ITEM);
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let out_ptr = &out_ptr;
            for item in range {
                let g0 = item * GROUPS_PER_ITEM;
                let n_groups = (groups - g0).min(GROUPS_PER_ITEM);
                let mut i = 0;
                while i < m {
                    let n_rows = (m - i).min(ROWS_PER_TILE);
                    let tile = self.tile(data, g0, n_groups, &x[i * k..(i + n_rows) * k]);
                    for (d, dots) in tile.iter().enumerate().take(n_rows) {
                        for (gi, lanes) in dots.iter().enumerate().take(n_groups) {
                            let first = (g0 + gi) * GROUP;
                            let live = (self.rows - first).min(GROUP);
                            for (lane, &dot) in lanes.iter().enumerate().take(live) {
                                // SAFETY: each (i, row) is written by the one item owning the
                                // row's group, and lies inside the m × rows output.
                                unsafe { *out_ptr.0.add((i + d) * self.rows + first + lane) = dot };
                            }
                        }
                    }
                    i += n_rows;
                }
            }
        });
        Ok(out)
    }

    /// Dot products of groups `g0..g0 + n_groups` with the rows of `x` (at most six).
    fn tile(&self, data: &[u16], g0: usize, n_groups: usize, x: &[f32]) -> Tile {
        let k = self.cols;
        let w = &data[g0 * k * GROUP..(g0 + n_groups) * k * GROUP];
        #[cfg(target_arch = "x86_64")]
        if use_simd() {
            let n_rows = x.len() / k;
            // SAFETY: AVX2/FMA/F16C detected; `w` holds `n_groups` groups of `k` columns and
            // `x` `n_rows` rows of `k`, as each kernel reads.
            return unsafe {
                match self.kind {
                    HalfKind::F16 => x86::tile::<false>(w, x, k, n_groups, n_rows),
                    HalfKind::Bf16 => x86::tile::<true>(w, x, k, n_groups, n_rows),
                }
            };
        }
        self.tile_portable(w, x, n_groups)
    }

    fn tile_portable(&self, w: &[u16], x: &[f32], n_groups: usize) -> Tile {
        let k = self.cols;
        let mut out = Tile::default();
        for (xr, dots) in x.chunks_exact(k).zip(out.iter_mut()) {
            for (group, lanes) in w
                .chunks_exact(k * GROUP)
                .zip(dots.iter_mut())
                .take(n_groups)
            {
                for (col, &a) in group.chunks_exact(GROUP).zip(xr) {
                    for (acc, &bits) in lanes.iter_mut().zip(col) {
                        *acc += self.kind.widen(bits) * a;
                    }
                }
            }
        }
        out
    }
}

/// Per activation row of a tile and group: the eight rows' dot products.
type Tile = [[[f32; GROUP]; GROUPS_PER_ITEM]; ROWS_PER_TILE];

/// Whether the AVX2/FMA/F16C kernels can run here.
fn use_simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static SIMD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *SIMD.get_or_init(|| {
            is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
#[path = "linear_half_x86.rs"]
mod x86;

#[path = "linear_half_mapped.rs"]
mod mapped;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llama::linear::tests::random;
    use candle_core::Module;
    use candle_core::quantized::{GgmlDType, QTensor};

    fn qtensor(rows: usize, cols: usize, dtype: GgmlDType, seed: u64) -> QTensor {
        let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&w, dtype).unwrap()
    }

    fn half_of(linear: &Linear) -> &Half {
        match linear {
            Linear::Half(h) => h,
            _ => panic!("not kept in half precision"),
        }
    }

    /// The product against f32 arithmetic on the widened weights, on both kernels.
    fn matches_widened(dtype: GgmlDType, rows: usize, cols: usize, m: usize) {
        let q = qtensor(rows, cols, dtype, 1);
        let widened = q.dequantize(&Device::Cpu).unwrap();
        let ours = Linear::from_qtensor(q).unwrap();
        let x = Tensor::from_vec(random(m * cols, 2), (m, cols), &Device::Cpu).unwrap();
        let want = x.matmul(&widened.t().unwrap()).unwrap();
        let got = ours.forward(&x).unwrap();
        assert_eq!(got.dims(), &[m, rows]);
        // Sums of `cols` products of magnitude < 1 in a different order: a few ulps of ~10.
        let diff = crate::test_model::max_abs_diff(&got, &want).unwrap();
        assert!(diff < 1e-4, "{dtype:?} {rows}x{cols} m={m}: {diff}");
        let h = half_of(&ours);
        let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want = want.to_vec2::<f32>().unwrap();
        for g0 in (0..rows.div_ceil(GROUP)).step_by(GROUPS_PER_ITEM) {
            let n_groups = (rows.div_ceil(GROUP) - g0).min(GROUPS_PER_ITEM);
            let n_rows = m.min(ROWS_PER_TILE);
            let Storage::Interleaved(data) = &h.data else {
                panic!("not interleaved")
            };
            let w = &data[g0 * cols * GROUP..(g0 + n_groups) * cols * GROUP];
            let plain = h.tile_portable(w, &xs[..n_rows * cols], n_groups);
            for (i, dots) in plain.iter().enumerate().take(n_rows) {
                for (gi, lanes) in dots.iter().enumerate().take(n_groups) {
                    for (lane, &v) in lanes.iter().enumerate() {
                        let r = (g0 + gi) * GROUP + lane;
                        let expected = if r < rows { want[i][r] } else { 0.0 };
                        assert!((v - expected).abs() < 1e-4, "portable ({i}, {r})");
                    }
                }
            }
        }
    }

    #[test]
    fn f16_products_match_widened_weights() {
        for (rows, cols, m) in [
            (70, 256, 1),
            (70, 256, 7),
            (8, 64, 4),
            (33, 100, 3),
            (1, 9, 2),
        ] {
            matches_widened(GgmlDType::F16, rows, cols, m);
        }
    }

    #[test]
    fn bf16_products_match_widened_weights() {
        for (rows, cols, m) in [(70, 256, 1), (70, 256, 6), (16, 64, 5), (33, 100, 1)] {
            matches_widened(GgmlDType::BF16, rows, cols, m);
        }
    }

    #[test]
    fn rows_of_a_tile_match_one_row_products() {
        let ours = Linear::from_qtensor(qtensor(24, 128, GgmlDType::F16, 3)).unwrap();
        let x = Tensor::from_vec(random(9 * 128, 4), (9, 128), &Device::Cpu).unwrap();
        let together = ours.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in together.iter().enumerate() {
            let one = ours.forward(&x.narrow(0, i, 1).unwrap()).unwrap();
            let one = one.to_vec2::<f32>().unwrap();
            let diff = row.iter().zip(&one[0]).map(|(a, b)| (a - b).abs());
            assert!(diff.fold(0f32, f32::max) < 1e-5, "row {i}");
        }
    }

    #[test]
    fn embedding_rows_are_the_widened_weights() {
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            let q = qtensor(13, 40, dtype, 5);
            let widened = q.dequantize(&Device::Cpu).unwrap();
            let ours = Linear::from_qtensor(q).unwrap();
            half_of(&ours);
            let ids = Tensor::new(&[12u32, 0, 5, 5], &Device::Cpu).unwrap();
            let got = ours.embedding(&ids).unwrap();
            let want = widened.index_select(&ids, 0).unwrap();
            assert_eq!(
                got.to_vec2::<f32>().unwrap(),
                want.to_vec2::<f32>().unwrap(),
                "{dtype:?}"
            );
            let outside = Tensor::new(&[13u32], &Device::Cpu).unwrap();
            assert!(ours.embedding(&outside).is_err());
        }
    }

    #[test]
    fn dense_weights_round_like_ggml() {
        let w = Tensor::from_vec(random(24 * 48, 6), (24, 48), &Device::Cpu).unwrap();
        for (dtype, ggml) in [(DType::F16, GgmlDType::F16), (DType::BF16, GgmlDType::BF16)] {
            let ours = Linear::half_from_tensor(&w, dtype).unwrap();
            let q = QTensor::quantize(&w, ggml).unwrap();
            let reference = Linear::from_qtensor(q).unwrap();
            let x = Tensor::from_vec(random(2 * 48, 7), (2, 48), &Device::Cpu).unwrap();
            assert_eq!(
                ours.forward(&x).unwrap().to_vec2::<f32>().unwrap(),
                reference.forward(&x).unwrap().to_vec2::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn fused_half_parts_equal_separate_products() {
        let x = Tensor::from_vec(random(5 * 64, 8), (5, 64), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::F16, GgmlDType::BF16] {
            let part = |rows, seed| Linear::from_qtensor(qtensor(rows, 64, dtype, seed)).unwrap();
            let parts = vec![part(16, 9), part(8, 10), part(24, 11)];
            let separate: Vec<_> = parts
                .iter()
                .map(|p| p.forward(&x).unwrap().to_vec2::<f32>().unwrap())
                .collect();
            let fused = Fused::new(parts);
            assert!(fused.is_joined());
            for (got, want) in fused.forward(&x).unwrap().iter().zip(&separate) {
                assert_eq!(&got.to_vec2::<f32>().unwrap(), want, "{dtype:?}");
            }
            let (gate, up) = (part(16, 12), part(16, 13));
            let want = (candle_nn::ops::silu(&gate.forward(&x).unwrap()).unwrap()
                * up.forward(&x).unwrap())
            .unwrap();
            let got = Fused::new(vec![gate, up]).forward_swiglu(&x).unwrap();
            assert!(crate::test_model::max_abs_diff(&got, &want).unwrap() < 1e-5);
        }
        let odd = || Linear::from_qtensor(qtensor(12, 64, GgmlDType::F16, 14)).unwrap();
        assert!(!Fused::new(vec![odd(), odd()]).is_joined());
    }

    /// A safetensors model loaded with dtype f16 or bf16 decodes like its f32 load, within the
    /// rounding of its weights.
    #[test]
    fn half_safetensors_models_decode_like_f32() {
        use crate::llama::load::DenseWeights;
        use crate::llama::{LlamaModel, SeqStep};
        use crate::test_model::{Preset, TestModelOptions};
        let tiktoken = crate::test_model::default_tokenizer_path();
        if !tiktoken.is_file() {
            eprintln!("skipped: no Llama 3 tokenizer at {}", tiktoken.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let options = TestModelOptions {
            preset: Preset::Tiny,
            dtype: DType::F32,
            tiktoken_model: &tiktoken,
            seed: 21,
        };
        crate::test_model::create(dir.path(), &options).unwrap();
        let files = crate::model_files::inspect(dir.path()).unwrap();
        let load = |precision| {
            crate::engine_load::load_text_model(
                &files,
                &Device::Cpu,
                precision,
                Some(64),
                &mut |_, _| {},
            )
            .unwrap()
        };
        let logits = |model: &LlamaModel| -> Vec<Vec<f32>> {
            let mut cache = model.new_cache();
            [128000u32, 791, 4062, 14198]
                .iter()
                .map(|id| {
                    let mut steps = [SeqStep {
                        tokens: std::slice::from_ref(id),
                        cache: &mut cache,
                    }];
                    let out = model.forward(&mut steps).unwrap();
                    out.flatten_all().unwrap().to_vec1::<f32>().unwrap()
                })
                .collect()
        };
        let reference = logits(&load(DenseWeights::F32));
        for (precision, tolerance) in [(DenseWeights::F16, 2e-3), (DenseWeights::Bf16, 2e-2)] {
            let got = logits(&load(precision));
            for (g, r) in got.iter().zip(&reference) {
                let diff = g.iter().zip(r).map(|(a, b)| (a - b).abs());
                let diff = diff.fold(0f32, f32::max);
                assert!(
                    diff < tolerance,
                    "{precision:?}: max abs logit difference {diff}"
                );
            }
        }
    }

    /// Timing, not a check: our kernels against candle's path for GGUF F16 (widened to f32 at
    /// load) and candle's own F16 kernel (`QMatMul::QTensor`), best of 30 each.
    /// `cargo test -p llama-stack-provider-inference-candle --lib half_matmul_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn half_matmul_speed() {
        use candle_core::quantized::QMatMul;
        let time = |f: &dyn Fn()| {
            f();
            (0..30)
                .map(|_| {
                    let t = std::time::Instant::now();
                    f();
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min)
        };
        for (rows, cols) in [(2048, 2048), (8192, 2048)] {
            for m in [1, 64] {
                let x = Tensor::from_vec(random(m * cols, 6), (m, cols), &Device::Cpu).unwrap();
                for dtype in [GgmlDType::F16, GgmlDType::BF16] {
                    let ours = Linear::from_qtensor(qtensor(rows, cols, dtype, 5)).unwrap();
                    half_of(&ours);
                    let widened = QMatMul::from_qtensor(qtensor(rows, cols, dtype, 5)).unwrap();
                    let t_ours = time(&|| drop(ours.forward(&x).unwrap()));
                    let t_f32 = time(&|| drop(widened.forward(&x).unwrap()));
                    println!(
                        "{dtype:?} {rows}x{cols}, m={m}: ours {:.3} ms ({:.1} GB/s), candle f32 {:.3} ms ({:.2}x)",
                        t_ours * 1e3,
                        (rows * cols * 2) as f64 / t_ours / 1e9,
                        t_f32 * 1e3,
                        t_f32 / t_ours,
                    );
                    // candle's own half kernel takes seconds for 64 rows.
                    if m == 1 {
                        let native = QMatMul::QTensor(Arc::new(qtensor(rows, cols, dtype, 5)));
                        let t_native = time(&|| drop(native.forward(&x).unwrap()));
                        println!("  candle {dtype:?} kernel {:.3} ms", t_native * 1e3);
                    }
                }
            }
        }
    }
}
