//! F16 and BF16 weights served in place from a mapped GGUF file, in the file's row-major order.
//!
//! Interleaving rows ([`super`]) means copying every matrix at load: a 3B F16 model held the
//! map and the copy at once (twice its size at the peak) and read the whole file before it
//! could answer. Here a matrix is the file's bytes. A vector of eight consecutive columns of
//! one row widens against eight consecutive activations, each row keeps its own accumulators,
//! and one horizontal sum per row and activation row ends its dot products. A decode step
//! takes eight rows at a time: eight independent FMA chains, eight streams the hardware
//! prefetcher follows. A few activation rows (batched decode) meet two weight rows at a time,
//! up to six of them, in column blocks that keep the activations in L1.
//!
//! Row-major tiles widen a weight vector for fewer FMAs than the interleaved layout's, and
//! load whole activation vectors where it broadcasts one value: with many activation rows
//! (prefill chunks) they ran at about 0.75x its speed. From [`INTERLEAVED_FROM`] rows on, each
//! work item's sixteen rows are transposed into that layout in a per-thread buffer and go
//! through [`super`]'s kernels; the transpose is paid once per item and step, a small share of
//! a step that multiplies every weight with eight or more rows.

use std::sync::Arc;

use memmap2::Mmap;

use super::super::SendPtr;
use super::HalfKind;
#[cfg(target_arch = "x86_64")]
use super::{GROUP, ROWS_PER_TILE};

/// Rows one work item covers: two groups of eight, the tile of [`super`]'s kernels.
const ROWS_PER_ITEM: usize = 16;
#[cfg(target_arch = "x86_64")]
const _: () = assert!(ROWS_PER_ITEM == GROUP * super::GROUPS_PER_ITEM);
/// Activation rows the kernels take at once.
const TILE_ACTS: usize = 6;
/// Activation rows from which a work item's rows are interleaved for [`super`]'s kernels.
#[cfg(target_arch = "x86_64")]
const INTERLEAVED_FROM: usize = 8;

/// Per weight row of a work item, its dot products with each activation row.
pub(super) type ItemDots = [[f32; TILE_ACTS]; ROWS_PER_ITEM];

/// Rows of one or several stacked matrices (q, k, v) in a mapped file, two bytes a weight.
#[derive(Debug)]
pub(super) struct Mapped {
    map: Arc<Mmap>,
    /// Per part, in order: the offset of its first row in the map, and its rows.
    parts: Vec<(usize, usize)>,
    row_bytes: usize,
}

impl Mapped {
    /// `parts`, each `(rows, bytes)` with `bytes` a slice of `map` of `rows` rows of `cols`;
    /// `None` where one is not.
    pub(super) fn new(map: Arc<Mmap>, cols: usize, parts: &[(usize, &[u8])]) -> Option<Mapped> {
        let base = map.as_ptr() as usize;
        let row_bytes = cols * 2;
        let mut found = Vec::with_capacity(parts.len());
        for &(rows, bytes) in parts {
            let start = (bytes.as_ptr() as usize).checked_sub(base)?;
            if bytes.len() != rows * row_bytes || start + bytes.len() > map.len() {
                return None;
            }
            found.push((start, rows));
        }
        Some(Mapped {
            map,
            parts: found,
            row_bytes,
        })
    }

    /// The matrices stacked, where they are rows of one map of one width.
    pub(super) fn join(parts: &[&Mapped]) -> Option<Mapped> {
        let first = parts.first()?;
        let same = parts
            .iter()
            .all(|p| Arc::ptr_eq(&p.map, &first.map) && p.row_bytes == first.row_bytes);
        same.then(|| Mapped {
            map: first.map.clone(),
            parts: parts.iter().flat_map(|p| p.parts.iter().copied()).collect(),
            row_bytes: first.row_bytes,
        })
    }

    fn rows(&self) -> usize {
        self.parts.iter().map(|&(_, rows)| rows).sum()
    }

    /// Row `r`'s bytes.
    #[inline]
    fn row(&self, mut r: usize) -> &[u8] {
        for &(start, rows) in &self.parts {
            if r < rows {
                let at = start + r * self.row_bytes;
                return &self.map[at..at + self.row_bytes];
            }
            r -= rows;
        }
        panic!("row {r} past the end of the matrix")
    }

    /// Row `r`, widened to f32.
    pub(super) fn widen_row(&self, kind: HalfKind, r: usize, out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(self.row(r).chunks_exact(2)) {
            *o = kind.widen(u16::from_le_bytes([b[0], b[1]]));
        }
    }

    /// `x · selfᵀ` for the `m` rows of `x`, as a row-major `(m, rows)` buffer; `simd` picks
    /// the AVX2 kernels (the caller has checked the CPU has them) over the portable ones.
    pub(super) fn products(&self, kind: HalfKind, x: &[f32], m: usize, simd: bool) -> Vec<f32> {
        let (rows, k) = (self.rows(), self.row_bytes / 2);
        let mut out = vec![0f32; m * rows];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let items = rows.div_ceil(ROWS_PER_ITEM);
        candle_core::utils::barrier_pool().execute_chunked(items, |range| {
            let out_ptr = &out_ptr;
            for item in range {
                let (r0, r1) = (item * ROWS_PER_ITEM, rows.min((item + 1) * ROWS_PER_ITEM));
                #[cfg(target_arch = "x86_64")]
                if simd && m >= INTERLEAVED_FROM {
                    self.item_interleaved(kind, r0, r1, x, m, out_ptr);
                    continue;
                }
                let mut i = 0;
                while i < m {
                    let acts = (m - i).min(TILE_ACTS);
                    let dots = self.item(kind, r0, r1, &x[i * k..(i + acts) * k], simd);
                    for (d, dots) in dots.iter().enumerate().take(r1 - r0) {
                        for (a, &dot) in dots.iter().enumerate().take(acts) {
                            // SAFETY: each (i, row) is written by the one item owning the
                            // row, and lies inside the m × rows output.
                            unsafe { *out_ptr.0.add((i + a) * rows + r0 + d) = dot };
                        }
                    }
                    i += acts;
                }
            }
        });
        out
    }

    /// The rows `r0..r1` of one work item; empty past them.
    fn item_rows(&self, r0: usize, r1: usize) -> [&[u8]; ROWS_PER_ITEM] {
        std::array::from_fn(|d| if r0 + d < r1 { self.row(r0 + d) } else { &[] })
    }

    /// Rows `r0..r1` (one work item) times all `m` rows of `x` into the `(m, rows)` output at
    /// `out`, the item's rows first transposed into the interleaved layout of [`super`]'s
    /// kernels.
    #[cfg(target_arch = "x86_64")]
    fn item_interleaved(
        &self,
        kind: HalfKind,
        r0: usize,
        r1: usize,
        x: &[f32],
        m: usize,
        out: &SendPtr,
    ) {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (k, n, rows) = (self.row_bytes / 2, r1 - r0, self.rows());
        let groups = n.div_ceil(GROUP);
        let item_rows = self.item_rows(r0, r1);
        SCRATCH.with_borrow_mut(|scratch| {
            // SAFETY: the caller checked AVX2/FMA/F16C; each row holds `k` halves, and the
            // scratch `groups` groups of `k` columns, as the tile kernel reads.
            unsafe { x86::interleave(&item_rows[..n], k, scratch) };
            let mut i = 0;
            while i < m {
                let acts = (m - i).min(ROWS_PER_TILE);
                let xs = &x[i * k..(i + acts) * k];
                // SAFETY: as above.
                let tile = unsafe {
                    match kind {
                        HalfKind::F16 => super::x86::tile::<false>(scratch, xs, k, groups, acts),
                        HalfKind::Bf16 => super::x86::tile::<true>(scratch, xs, k, groups, acts),
                    }
                };
                for (a, dots) in tile.iter().enumerate().take(acts) {
                    for (d, &dot) in dots.iter().flatten().enumerate().take(n) {
                        // SAFETY: each (i, row) is written by the one item owning the row, and
                        // lies inside the m × rows output.
                        unsafe { *out.0.add((i + a) * rows + r0 + d) = dot };
                    }
                }
                i += acts;
            }
        });
    }

    /// Dot products of rows `r0..r1` (one work item) with the rows of `x` (at most six).
    fn item(&self, kind: HalfKind, r0: usize, r1: usize, x: &[f32], simd: bool) -> ItemDots {
        let (k, n) = (self.row_bytes / 2, r1 - r0);
        let rows = self.item_rows(r0, r1);
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: the caller checked AVX2/FMA/F16C; `rows` holds `n` rows of `k` halves
            // and `x` whole rows of `k`, as the kernels read.
            return unsafe {
                match kind {
                    HalfKind::F16 => x86::item::<false>(&rows[..n], x, k),
                    HalfKind::Bf16 => x86::item::<true>(&rows[..n], x, k),
                }
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        portable(kind, &rows[..n], x, k)
    }
}

/// [`Mapped::item`] without vector intrinsics: eight lanes of partial sums per activation row
/// give the compiler independent chains to vectorize.
fn portable(kind: HalfKind, rows: &[&[u8]], x: &[f32], k: usize) -> ItemDots {
    let acts = x.len() / k;
    let mut out = ItemDots::default();
    for (w, dots) in rows.iter().zip(out.iter_mut()) {
        let mut acc = [[0f32; 8]; TILE_ACTS];
        for (c, chunk) in w.chunks(16).enumerate() {
            let mut wv = [0f32; 8];
            for (v, b) in wv.iter_mut().zip(chunk.chunks_exact(2)) {
                *v = kind.widen(u16::from_le_bytes([b[0], b[1]]));
            }
            for (a, acc) in acc.iter_mut().enumerate().take(acts) {
                let xs = &x[a * k + c * 8..(a * k + c * 8 + chunk.len() / 2)];
                for ((acc, &w), &x) in acc.iter_mut().zip(&wv).zip(xs) {
                    *acc += w * x;
                }
            }
        }
        for (dot, acc) in dots.iter_mut().zip(&acc).take(acts) {
            *dot = acc.iter().sum();
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
#[path = "linear_half_mapped_x86.rs"]
mod x86;

#[cfg(test)]
mod tests {
    use super::super::super::{Fused, FusedKind, Linear};
    use super::*;
    use crate::llama::linear::tests::random;
    use candle_core::quantized::GgmlDType;
    use candle_core::{Device, Tensor};

    /// `bytes` in an anonymous read-only map.
    fn map_of(bytes: &[u8]) -> Arc<Mmap> {
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).unwrap();
        map.copy_from_slice(bytes);
        Arc::new(map.make_read_only().unwrap())
    }

    /// `n` random weights rounded to `kind`, as file bytes and widened.
    fn weights(kind: HalfKind, n: usize, seed: u64) -> (Vec<u8>, Vec<f32>) {
        let mut bytes = Vec::with_capacity(2 * n);
        let mut widened = Vec::with_capacity(n);
        for v in random(n, seed) {
            let bits = match kind {
                HalfKind::F16 => half::f16::from_f32(v).to_bits(),
                HalfKind::Bf16 => half::bf16::from_f32(v).to_bits(),
            };
            bytes.extend_from_slice(&bits.to_le_bytes());
            widened.push(kind.widen(bits));
        }
        (bytes, widened)
    }

    fn dtype(kind: HalfKind) -> GgmlDType {
        match kind {
            HalfKind::F16 => GgmlDType::F16,
            HalfKind::Bf16 => GgmlDType::BF16,
        }
    }

    /// Matrices of `rows` rows each, stacked in one map at an odd offset (the kernels must not
    /// rely on alignment), with their widened weights.
    struct File {
        map: Arc<Mmap>,
        /// Per matrix: its byte range in the map and its rows.
        ranges: Vec<(std::ops::Range<usize>, usize)>,
        widened: Vec<Vec<f32>>,
    }

    fn file(kind: HalfKind, cols: usize, rows: &[usize]) -> File {
        let mut bytes = vec![0u8; 3];
        let (mut ranges, mut widened) = (Vec::new(), Vec::new());
        for (seed, &n) in rows.iter().enumerate() {
            let (b, w) = weights(kind, n * cols, 40 + seed as u64);
            ranges.push((bytes.len()..bytes.len() + b.len(), n));
            bytes.extend_from_slice(&b);
            widened.push(w);
        }
        File {
            map: map_of(&bytes),
            ranges,
            widened,
        }
    }

    impl File {
        fn parts(&self, which: &[usize]) -> Vec<(usize, &[u8])> {
            which
                .iter()
                .map(|&i| (self.ranges[i].1, &self.map[self.ranges[i].0.clone()]))
                .collect()
        }

        fn mapped(&self, cols: usize, which: &[usize]) -> Mapped {
            Mapped::new(self.map.clone(), cols, &self.parts(which)).unwrap()
        }
    }

    /// Each kernel (AVX2 where the CPU has it, and the portable one) against f64 arithmetic on
    /// the widened weights, within the rounding of f32 sums of `cols` products.
    #[test]
    fn kernels_match_an_f64_reference() {
        let mut kernels = vec![false];
        if super::super::use_simd() {
            kernels.push(true);
        }
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            for (rows, cols) in [(13, 64), (40, 100), (8, 9), (21, 256), (3, 3)] {
                let f = file(kind, cols, &[rows]);
                let mapped = f.mapped(cols, &[0]);
                let w = &f.widened[0];
                for m in [1, 2, 3, 5, 7, 64] {
                    let x = random(m * cols, 50 + m as u64);
                    for &simd in &kernels {
                        let got = mapped.products(kind, &x, m, simd);
                        for i in 0..m {
                            for r in 0..rows {
                                let (mut exact, mut scale) = (0f64, 0f64);
                                for j in 0..cols {
                                    let p = w[r * cols + j] as f64 * x[i * cols + j] as f64;
                                    exact += p;
                                    scale += p.abs();
                                }
                                let diff = (got[i * rows + r] as f64 - exact).abs();
                                assert!(
                                    diff <= scale * 1e-6 + 1e-7,
                                    "{kind:?} {rows}x{cols} m={m} simd={simd} ({i}, {r}): {diff}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Served in place, joined parts give each part's own product, and agree with the
    /// interleaved layout of the same bytes.
    #[test]
    fn joined_parts_give_each_parts_own_product() {
        let cols = 128;
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            let f = file(kind, cols, &[16, 8, 24]);
            for m in [1, 5] {
                let x = Tensor::from_vec(random(m * cols, 60), (m, cols), &Device::Cpu).unwrap();
                let one = |which: &[usize]| {
                    Linear::from_ggml_mapped(&f.map, dtype(kind), cols, &f.parts(which))
                        .unwrap()
                        .unwrap()
                };
                let separate: Vec<Vec<Vec<f32>>> = (0..3)
                    .map(|i| one(&[i]).forward(&x).unwrap().to_vec2().unwrap())
                    .collect();
                let joined = Fused::joined(vec![16, 8, 24], one(&[0, 1, 2]));
                let by_new = Fused::new((0..3).map(|i| one(&[i])).collect());
                assert!(by_new.is_joined());
                for fused in [joined, by_new] {
                    let Fused {
                        kind: FusedKind::One(Linear::Half(h)),
                        ..
                    } = &fused
                    else {
                        panic!("not one half matrix")
                    };
                    assert!(h.is_mapped());
                    for (got, want) in fused.forward(&x).unwrap().iter().zip(&separate) {
                        assert_eq!(&got.to_vec2::<f32>().unwrap(), want, "{kind:?} m={m}");
                    }
                }
                for (i, want) in separate.iter().enumerate() {
                    let interleaved = Linear::from_ggml_parts(dtype(kind), cols, &f.parts(&[i]))
                        .unwrap()
                        .unwrap();
                    let got = interleaved.forward(&x).unwrap().to_vec2::<f32>().unwrap();
                    for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                        assert!((g - w).abs() < 1e-5, "{kind:?} part {i}: {g} vs {w}");
                    }
                }
            }
            let (gate, up) = (f.parts(&[0])[0], f.parts(&[2])[0]);
            let half = |part| {
                Linear::from_ggml_mapped(&f.map, dtype(kind), cols, &[part])
                    .unwrap()
                    .unwrap()
            };
            let up = (16, &up.1[..16 * cols * 2]);
            let x = Tensor::from_vec(random(3 * cols, 61), (3, cols), &Device::Cpu).unwrap();
            let want = (candle_nn::ops::silu(&half(gate).forward(&x).unwrap()).unwrap()
                * half(up).forward(&x).unwrap())
            .unwrap();
            let both = Linear::from_ggml_mapped(&f.map, dtype(kind), cols, &[gate, up]);
            let got = Fused::joined(vec![16, 16], both.unwrap().unwrap())
                .forward_swiglu(&x)
                .unwrap();
            assert!(crate::test_model::max_abs_diff(&got, &want).unwrap() < 1e-6);
        }
    }

    #[test]
    fn embedding_rows_are_the_files_values() {
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            let (rows, cols) = (13, 40);
            let f = file(kind, cols, &[rows]);
            let linear = Linear::from_ggml_mapped(&f.map, dtype(kind), cols, &f.parts(&[0]))
                .unwrap()
                .unwrap();
            let ids = [12u32, 0, 5, 5];
            let got = linear
                .embedding(&Tensor::new(&ids, &Device::Cpu).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (row, &id) in got.iter().zip(&ids) {
                let id = id as usize;
                assert_eq!(
                    row[..],
                    f.widened[0][id * cols..(id + 1) * cols],
                    "{kind:?}"
                );
            }
            let outside = Tensor::new(&[13u32], &Device::Cpu).unwrap();
            assert!(linear.embedding(&outside).is_err());
        }
    }

    #[test]
    fn bytes_outside_the_map_or_of_the_wrong_length_are_not_mapped() {
        let f = file(HalfKind::F16, 16, &[8]);
        let elsewhere = f.map[f.ranges[0].0.clone()].to_vec();
        let copied = Linear::from_ggml_mapped(&f.map, GgmlDType::F16, 16, &[(8, &elsewhere)]);
        let Linear::Half(h) = copied.unwrap().unwrap() else {
            panic!("not kept in half precision")
        };
        assert!(!h.is_mapped());
        let short = &f.map[f.ranges[0].0.start..f.ranges[0].0.end - 2];
        assert!(Linear::from_ggml_mapped(&f.map, GgmlDType::F16, 16, &[(8, short)]).is_err());
    }

    /// An F16 GGUF file loads with its matrices served from the map, and decodes and prefills
    /// like the same weights loaded from safetensors into the interleaved layout.
    #[test]
    fn f16_gguf_is_served_from_the_map() {
        use crate::llama::load::DenseWeights;
        use crate::llama::{LlamaModel, SeqStep};
        use crate::test_model::{GgufType, Preset, TestModelOptions};
        let tiktoken = crate::test_model::default_tokenizer_path();
        if !tiktoken.is_file() {
            eprintln!("skipped: no Llama 3 tokenizer at {}", tiktoken.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let options = TestModelOptions {
            preset: Preset::Tiny,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tiktoken,
            seed: 23,
        };
        crate::test_model::create(&dir.path().join("hf"), &options).unwrap();
        crate::test_model::create_gguf(&dir.path().join("gguf"), &options, GgufType::F16).unwrap();
        let load = |location: &str, precision| {
            let files = crate::model_files::inspect(&dir.path().join(location)).unwrap();
            crate::engine_load::load_text_model(
                &files,
                &Device::Cpu,
                precision,
                Some(64),
                &mut |_, _| {},
            )
            .unwrap()
        };
        let ids = [128000u32, 791, 4062, 14198, 39935];
        // One step of the whole prompt, then one token at a time.
        let logits = |model: &LlamaModel| -> Vec<Vec<f32>> {
            let mut cache = model.new_cache();
            let mut out = Vec::new();
            for tokens in [&ids[..4], &ids[4..]] {
                let mut steps = [SeqStep {
                    tokens,
                    cache: &mut cache,
                }];
                let t = model.forward(&mut steps).unwrap();
                out.push(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
            }
            out
        };
        let gguf = load("gguf", DenseWeights::Stored);
        let mapped = |l: &Linear| matches!(l, Linear::Half(h) if h.is_mapped());
        assert!(mapped(&gguf.layers[0].wo) && mapped(&gguf.embed));
        for fused in [&gguf.layers[0].qkv, &gguf.layers[0].gate_up] {
            assert!(matches!(&fused.kind, FusedKind::One(l) if mapped(l)));
        }
        let reference = load("hf", DenseWeights::F16);
        assert!(!mapped(&reference.layers[0].wo));
        for (g, r) in logits(&gguf).iter().zip(&logits(&reference)) {
            let diff = g.iter().zip(r).map(|(a, b)| (a - b).abs());
            let diff = diff.fold(0f32, f32::max);
            assert!(diff < 1e-3, "max abs logit difference {diff}");
        }
    }

    /// Timing, not a check: served from the map against the interleaved copy of the same
    /// bytes, best of 30 each.
    /// `cargo test -p llama-stack-provider-inference-candle --lib mapped_matmul_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn mapped_matmul_speed() {
        // Alternating the two, so that load from elsewhere weighs on both alike.
        let time = |f: &dyn Fn(), g: &dyn Fn()| {
            let once = |f: &dyn Fn()| {
                let t = std::time::Instant::now();
                f();
                t.elapsed().as_secs_f64()
            };
            f();
            g();
            (0..30).fold((f64::MAX, f64::MAX), |(a, b), _| {
                (a.min(once(f)), b.min(once(g)))
            })
        };
        for (rows, cols) in [(2048, 2048), (8192, 3072), (3072, 8192)] {
            for kind in [HalfKind::F16, HalfKind::Bf16] {
                let f = file(kind, cols, &[rows]);
                let parts = f.parts(&[0]);
                let mapped = Linear::from_ggml_mapped(&f.map, dtype(kind), cols, &parts);
                let mapped = mapped.unwrap().unwrap();
                let copied = Linear::from_ggml_parts(dtype(kind), cols, &parts);
                let copied = copied.unwrap().unwrap();
                for m in [1, 2, 5, 16, 64] {
                    let x = Tensor::from_vec(random(m * cols, 6), (m, cols), &Device::Cpu);
                    let x = x.unwrap();
                    let (t_mapped, t_copied) = time(&|| drop(mapped.forward(&x).unwrap()), &|| {
                        drop(copied.forward(&x).unwrap())
                    });
                    println!(
                        "{kind:?} {rows}x{cols}, m={m}: mapped {:.3} ms ({:.1} GB/s), \
                         interleaved {:.3} ms ({:.2}x)",
                        t_mapped * 1e3,
                        (rows * cols * 2) as f64 / t_mapped / 1e9,
                        t_copied * 1e3,
                        t_copied / t_mapped,
                    );
                }
            }
        }
    }
}
