//! Q4_K, Q5_K and Q6_K weights, the bulk of llama.cpp's Q4_K_M and Q5_K_M files (Q4_K or Q5_K
//! for most matrices, Q6_K for `attn_v`, half of `ffn_down` and the output), repacked at load
//! into eight interleaved rows and multiplied by our own kernels, like Q4_0 and Q8_0 in
//! [`super::linear`]. Q5_K's layout is in [`q5k`].
//!
//! The layout keeps the file's own compression: 4- or 6-bit quants, the 6- or 8-bit sub-block
//! scales as bytes, and the super-block f16 scales, so a Q4_K row costs 148 bytes per 256
//! weights (the file's 144; f32 scales and mins per 32 would cost 192) and a Q6_K row 210
//! (the same as the file). Decode reads every weight once per token, so bytes are time.
//!
//! Per super-block of 256 columns and group of eight rows, `[lane]` being the row in the group:
//! - Q4_K (1184 bytes): `d[lane]`, `dmin[lane]` as f16; `scale[j][lane]`, `min[j][lane]` as
//!   bytes for the eight sub-blocks `j` of 32 columns; then per sub-block, four 32-byte vectors
//!   in the Q4_0 order (vector `p` holds columns `8p..8p+4` of rows 0..8 in its low nibbles and
//!   `8p+4..8p+8` in its high ones). Weight = `d·scale[j]·q − dmin·min[j]`.
//! - Q6_K (1680 bytes): `d[lane]` as f16; `scale[s][lane]` as signed bytes for the sixteen
//!   sub-blocks of 16 columns; then per block of 32 columns, the low four bits of each quant in
//!   the Q4_0 order (128 bytes) and their top two bits (64 bytes: vector `h` holds, for half
//!   `h` of the block, at byte `lane·4 + e`, the columns `16h+e`, `16h+4+e`, `16h+8+e`,
//!   `16h+12+e` two bits each from the bottom). Weight = `d·scale[s]·(q − 32)`.
//!
//! Activations are the 8-bit blocks of 32 that Q4_0 uses; their per-block sums carry the `min`
//! term of Q4_K and Q5_K, so it costs one multiply-add per block instead of a pass over the
//! quants, and their sums per 16 carry Q6_K's offset of 32 the same way.

use super::linear::{Activations, PackedKind};

/// Columns per super-block.
pub(super) const SUPER: usize = 256;
const GROUP: usize = 8;
const BLOCK: usize = 32;
/// Bytes of one super-block of one group of eight rows.
pub(super) const Q4K_GROUP_BYTES: usize = 32 + 128 + 8 * 128;
pub(super) const Q6K_GROUP_BYTES: usize = 16 + 128 + 8 * 192;
/// Offsets inside a Q4_K group super-block.
pub(super) const Q4K_SCALES: usize = 32;
pub(super) const Q4K_MINS: usize = 96;
pub(super) const Q4K_QUANTS: usize = 160;
/// Offsets inside a Q6_K group super-block.
pub(super) const Q6K_SCALES: usize = 16;
pub(super) const Q6K_QUANTS: usize = 144;

/// Bytes of one group of eight rows of `cols` columns.
pub(super) fn group_bytes(kind: PackedKind, cols: usize) -> usize {
    cols / SUPER
        * match kind {
            PackedKind::Q4K => Q4K_GROUP_BYTES,
            PackedKind::Q5K => q5k::GROUP_BYTES,
            PackedKind::Q6K => Q6K_GROUP_BYTES,
            PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!("not a K-quant"),
        }
}

/// The low nibble of column `c` (0..32) of row `lane` in four vectors of Q4_0's order.
fn nibble(v: &[u8], lane: usize, c: usize) -> u8 {
    let byte = v[(c / 8) * 32 + lane * 4 + c % 4];
    if c % 8 < 4 { byte & 0x0F } else { byte >> 4 }
}

fn f16_at(v: &[u8], lane: usize) -> f32 {
    half::f16::from_le_bytes([v[2 * lane], v[2 * lane + 1]]).to_f32()
}

/// Row `lane` of super-block `sb` (a group super-block), as weights `(d·scale, dmin·min)` and
/// quants per sub-block of 32 columns, the quant offset already applied (Q6_K's −32).
fn row_block(
    kind: PackedKind,
    sb: &[u8],
    lane: usize,
    blk: usize,
) -> ([i32; BLOCK], [f32; 2], f32) {
    let mut q = [0i32; BLOCK];
    match kind {
        PackedKind::Q4K => {
            let v = &sb[Q4K_QUANTS + blk * 128..];
            for (c, q) in q.iter_mut().enumerate() {
                *q = nibble(v, lane, c) as i32;
            }
            let sc = sb[Q4K_SCALES + blk * GROUP + lane] as f32;
            let m = sb[Q4K_MINS + blk * GROUP + lane] as f32;
            (q, [f16_at(sb, lane) * sc; 2], f16_at(&sb[16..], lane) * m)
        }
        PackedKind::Q5K => {
            let (q, scale, min) = q5k::row_block(sb, lane, blk);
            (q, [scale; 2], min)
        }
        PackedKind::Q6K => {
            let v = &sb[Q6K_QUANTS + blk * 192..];
            for (c, q) in q.iter_mut().enumerate() {
                let (h, k, e) = (c / 16, (c % 16) / 4, c % 4);
                let high = (v[128 + h * 32 + lane * 4 + e] >> (2 * k)) & 3;
                *q = (nibble(v, lane, c) | (high << 4)) as i32 - 32;
            }
            let d = f16_at(sb, lane);
            let sc = |s: usize| sb[Q6K_SCALES + s * GROUP + lane] as i8 as f32 * d;
            (q, [sc(2 * blk), sc(2 * blk + 1)], 0.0)
        }
        PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!("not a K-quant"),
    }
}

/// Row `lane` of a group (`group`: its bytes), as f32 weights.
pub(super) fn dequantize_row(kind: PackedKind, group: &[u8], lane: usize, out: &mut [f32]) {
    let gb = group_bytes(kind, SUPER);
    for (s, out) in out.chunks_exact_mut(SUPER).enumerate() {
        let sb = &group[s * gb..(s + 1) * gb];
        for (blk, out) in out.chunks_exact_mut(BLOCK).enumerate() {
            let (q, scale, min) = row_block(kind, sb, lane, blk);
            for (c, o) in out.iter_mut().enumerate() {
                *o = q[c] as f32 * scale[c / 16] - min;
            }
        }
    }
}

/// Dot products of the eight rows of a group with one activation row: `a` its 8-bit quants,
/// `a_scales` and `a_sums` the scale and quant sum of each block of 32.
pub(super) fn group_dot(
    kind: PackedKind,
    group: &[u8],
    a: &[i8],
    a_scales: &[f32],
    a_sums: &[i32],
) -> [f32; GROUP] {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return group_dot_avx2(kind, group, a, a_scales, a_sums);
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(dots) = neon::group_dot(kind, group, a, a_scales, a_sums) {
        return dots;
    }
    group_dot_portable(kind, group, a, a_scales, a_sums)
}

/// Dot products of a group with activation rows `i..m` of `acts`: as many rows as a kernel
/// takes at once (answered: four or two on AVX2, two on NEON, else one), sharing each weight
/// vector's unpacking among them.
pub(super) fn group_dots(
    kind: PackedKind,
    group: &[u8],
    acts: &Activations,
    i: usize,
    m: usize,
) -> ([[f32; GROUP]; 4], usize) {
    let mut dots = [[0f32; GROUP]; 4];
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        let supers = acts.row_scales(i).len() * BLOCK / SUPER;
        assert!(group.len() >= group_bytes(kind, supers * SUPER));
        // SAFETY: AVX2/FMA/F16C checked; the group holds `supers` super-blocks, as asserted,
        // and so does every row of `acts`.
        unsafe {
            return if i + 4 <= m {
                (rows_avx2(kind, group, acts, i), 4)
            } else if i + 2 <= m {
                let [d0, d1] = rows_avx2(kind, group, acts, i);
                ([d0, d1, dots[2], dots[3]], 2)
            } else {
                let [d0] = rows_avx2(kind, group, acts, i);
                ([d0, dots[1], dots[2], dots[3]], 1)
            };
        }
    }
    let row = |i| (acts.row_quants(i), acts.row_scales(i), acts.row_sums(i));
    if i + 1 < m {
        let (r0, r1) = (row(i), row(i + 1));
        if let Some([d0, d1]) = group_dot_x2(kind, group, [r0.0, r1.0], [r0.1, r1.1], [r0.2, r1.2])
        {
            return ([d0, d1, dots[2], dots[3]], 2);
        }
    }
    let (a, a_scales, a_sums) = row(i);
    dots[0] = group_dot(kind, group, a, a_scales, a_sums);
    (dots, 1)
}

/// [`group_dot`] for two activation rows, where a kernel shares the weights' unpacking between
/// them (the K-quants on NEON); `None` elsewhere, for the caller to take the rows one at a time.
fn group_dot_x2(
    kind: PackedKind,
    group: &[u8],
    a: [&[i8]; 2],
    a_scales: [&[f32]; 2],
    a_sums: [&[i32]; 2],
) -> Option<[[f32; GROUP]; 2]> {
    #[cfg(target_arch = "aarch64")]
    if let Some(dots) = neon::group_dot_x2(kind, group, a, a_scales, a_sums) {
        return Some(dots);
    }
    let _ = (kind, group, a, a_scales, a_sums);
    None
}

/// Rows `i..i + N` of `acts` through the AVX2 kernel of `kind`.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `group` holds as many super-blocks as each row of
/// `acts`, which holds rows `i..i + N`.
#[cfg(target_arch = "x86_64")]
unsafe fn rows_avx2<const N: usize>(
    kind: PackedKind,
    group: &[u8],
    acts: &Activations,
    i: usize,
) -> [[f32; GROUP]; N] {
    let rows: [usize; N] = std::array::from_fn(|r| i + r);
    let a = rows.map(|i| acts.row_quants(i));
    let a_scales = rows.map(|i| acts.row_scales(i));
    // SAFETY: per the contract.
    unsafe {
        match kind {
            PackedKind::Q4K => x86::group_q4k(group, a, a_scales, rows.map(|i| acts.row_sums(i))),
            PackedKind::Q5K => x86::group_q5k(group, a, a_scales, rows.map(|i| acts.row_sums(i))),
            PackedKind::Q6K => x86::group_q6k(group, a, a_scales, rows.map(|i| acts.row_halves(i))),
            PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!("not a K-quant"),
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// The vector kernels; the caller must have checked [`avx2`].
#[cfg(target_arch = "x86_64")]
fn group_dot_avx2(
    kind: PackedKind,
    group: &[u8],
    a: &[i8],
    a_scales: &[f32],
    a_sums: &[i32],
) -> [f32; GROUP] {
    let supers = a_scales.len() * BLOCK / SUPER;
    assert!(
        group.len() >= group_bytes(kind, supers * SUPER)
            && a.len() >= supers * SUPER
            && a_sums.len() >= a_scales.len()
    );
    assert!(avx2());
    // SAFETY: AVX2/FMA/F16C checked; the slices hold `supers` super-blocks, as asserted.
    unsafe {
        match kind {
            PackedKind::Q4K => x86::group_q4k(group, [a], [a_scales], [a_sums])[0],
            PackedKind::Q5K => x86::group_q5k(group, [a], [a_scales], [a_sums])[0],
            PackedKind::Q6K => {
                // Q6_K's kernel wants the activations' sums per 16, which callers with whole
                // rows of [`Activations`] have at hand ([`group_dots`]).
                let halves: Vec<i16> = a[..supers * SUPER]
                    .chunks_exact(BLOCK / 2)
                    .map(|q| q.iter().map(|&v| v as i16).sum())
                    .collect();
                x86::group_q6k(group, [a], [a_scales], [&halves])[0]
            }
            PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!("not a K-quant"),
        }
    }
}

fn group_dot_portable(
    kind: PackedKind,
    group: &[u8],
    a: &[i8],
    a_scales: &[f32],
    a_sums: &[i32],
) -> [f32; GROUP] {
    let gb = group_bytes(kind, SUPER);
    let mut dots = [0f32; GROUP];
    for (lane, dot) in dots.iter_mut().enumerate() {
        for (b, (&da, &sum)) in a_scales.iter().zip(a_sums).enumerate() {
            let sb = &group[(b * BLOCK / SUPER) * gb..];
            let (q, scale, min) = row_block(kind, sb, lane, b % (SUPER / BLOCK));
            let ab = &a[b * BLOCK..(b + 1) * BLOCK];
            for (half, scale) in scale.iter().enumerate() {
                let s: i32 = (16 * half..16 * half + 16)
                    .map(|c| q[c] * ab[c] as i32)
                    .sum();
                *dot += s as f32 * scale * da;
            }
            *dot -= min * sum as f32 * da;
        }
    }
    dots
}

#[path = "kquants_q5k.rs"]
pub(super) mod q5k;

#[cfg(target_arch = "x86_64")]
#[path = "kquants_x86.rs"]
mod x86;

#[cfg(target_arch = "aarch64")]
#[path = "kquants_neon.rs"]
mod neon;

#[cfg(test)]
mod tests {
    use crate::llama::linear::tests::random;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;
    use crate::llama::linear::Linear;

    /// Rows not a multiple of eight, three super-blocks per row, several activation rows.
    const ROWS: usize = 70;
    const COLS: usize = 3 * SUPER;
    const M: usize = 7;

    fn check(dtype: GgmlDType, kind: PackedKind) {
        // Uneven magnitudes across columns exercise the sub-block scales and mins.
        let w: Vec<f32> = random(ROWS * COLS, 21)
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % COLS / 40) as f32 * 0.3) + 0.1)
            .collect();
        let w = Tensor::from_vec(w, (ROWS, COLS), &Device::Cpu).unwrap();
        let x = random(M * COLS, 22);
        let q = QTensor::quantize(&w, dtype).unwrap();
        let dense: Vec<Vec<f32>> = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
        let data = q.data().unwrap();
        let row_bytes = COLS / SUPER * crate::llama::repack::file_block_bytes(kind);
        let rows = [&data[..]];
        let packed = crate::llama::repack::kquant(
            kind,
            COLS,
            &crate::llama::repack::FileRows::new(&rows, row_bytes),
        );
        let gb = group_bytes(kind, COLS);
        assert_eq!(packed.len(), ROWS.div_ceil(GROUP) * gb);

        // The repacked weights are the file's weights, as candle decodes them.
        let mut row = vec![0f32; COLS];
        for (r, want) in dense.iter().enumerate() {
            let group = &packed[(r / GROUP) * gb..(r / GROUP + 1) * gb];
            dequantize_row(kind, group, r % GROUP, &mut row);
            let diff = row
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff <= 1e-6, "{kind:?} row {r}: {diff}");
        }

        // Both kernels against the exact product of the dequantized weights and the
        // dequantized 8-bit activations: only f32 rounding of the sums may differ.
        let acts = Activations::quantize(&x, M, COLS);
        for i in 0..M {
            let (a, s, sums) = (acts.row_quants(i), acts.row_scales(i), acts.row_sums(i));
            for g in 0..ROWS.div_ceil(GROUP) {
                let group = &packed[g * gb..(g + 1) * gb];
                let mut kernels = vec![("portable", group_dot_portable(kind, group, a, s, sums))];
                #[cfg(target_arch = "x86_64")]
                if avx2() {
                    kernels.push(("avx2", group_dot_avx2(kind, group, a, s, sums)));
                }
                #[cfg(target_arch = "aarch64")]
                kernels.push(("neon", neon::group_dot(kind, group, a, s, sums).unwrap()));
                for lane in 0..GROUP.min(ROWS - g * GROUP) {
                    let r = g * GROUP + lane;
                    let (exact, magnitude) = (0..COLS).fold((0f64, 0f64), |(e, m), c| {
                        let av = a[c] as f64 * s[c / BLOCK] as f64;
                        let wv = dense[r][c] as f64;
                        (e + wv * av, m + (wv * av).abs())
                    });
                    for (name, dots) in &kernels {
                        let err = (dots[lane] as f64 - exact).abs();
                        assert!(
                            err <= 1e-5 * magnitude,
                            "{kind:?} {name} row {r}: {} vs {exact}",
                            dots[lane]
                        );
                    }
                }
                // Padding rows contribute nothing.
                for (_, dots) in &kernels {
                    let padding = (0..GROUP).filter(|lane| g * GROUP + lane >= ROWS);
                    assert!(padding.clone().all(|lane| dots[lane] == 0.0));
                }
            }
        }

        // The whole product against f32 weights times f32 activations: the 8-bit activations
        // are off by at most half a step (amax/254 per block of 32), so each output is off by
        // at most Σ_block step/2 · Σ|w| over the block, plus f32 rounding.
        let linear = Linear::from_qtensor(q).unwrap();
        let got: Vec<Vec<f32>> = linear
            .forward(&Tensor::from_vec(x.clone(), (M, COLS), &Device::Cpu).unwrap())
            .unwrap()
            .to_vec2()
            .unwrap();
        for i in 0..M {
            let xi = &x[i * COLS..(i + 1) * COLS];
            for (r, w) in dense.iter().enumerate() {
                let exact: f64 = w.iter().zip(xi).map(|(&w, &x)| w as f64 * x as f64).sum();
                let bound: f64 = (0..COLS / BLOCK)
                    .map(|b| {
                        let block = b * BLOCK..(b + 1) * BLOCK;
                        let amax = xi[block.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
                        let w_abs: f64 = w[block].iter().map(|v| v.abs() as f64).sum();
                        amax as f64 / 254.0 * w_abs * (1.0 + 1e-4)
                    })
                    .sum();
                let err = (got[i][r] as f64 - exact).abs();
                assert!(
                    err <= bound,
                    "{kind:?} ({i}, {r}): error {err} over bound {bound}"
                );
            }
        }
    }

    #[test]
    fn q4_k_kernels_match_the_dequantized_weights() {
        check(GgmlDType::Q4K, PackedKind::Q4K);
    }

    #[test]
    fn q5_k_kernels_match_the_dequantized_weights() {
        check(GgmlDType::Q5K, PackedKind::Q5K);
    }

    #[test]
    fn q6_k_kernels_match_the_dequantized_weights() {
        check(GgmlDType::Q6K, PackedKind::Q6K);
    }

    /// A `quant` file (`q4_k_m`, `q5_k_m`) that llama.cpp's `llama-quantize` wrote: the
    /// vs_llamacpp bench's 1B one where present, else a small random model quantized into
    /// `dir` by the `llama-quantize` of `LLAMA_CPP_BIN_DIR` or of scripts/build-llamacpp.sh's
    /// cache. `None`, said why, when neither can be had.
    fn llama_cpp_file(quant: &str, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        use crate::test_model::{self, GgufType, Preset, TestModelOptions};
        let bench = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../../../target/bench-models/1b-{quant}/model.gguf"
        ));
        if bench.is_file() {
            return Some(bench);
        }
        let bin = std::env::var_os("LLAMA_CPP_BIN_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                let home = std::env::var_os("HOME")?;
                Some(std::path::Path::new(&home).join(".cache/llama-stack-rs/llama.cpp/bin"))
            })?;
        let quantize = bin.join("llama-quantize");
        let tokenizer = test_model::default_tokenizer_path();
        if !quantize.is_file() || !tokenizer.is_file() {
            eprintln!(
                "skipped: needs {} (scripts/build-llamacpp.sh) and {} (scripts/fetch-tokenizer.sh)",
                quantize.display(),
                tokenizer.display()
            );
            return None;
        }
        let options = TestModelOptions {
            preset: Preset::Small,
            dtype: candle_core::DType::F32,
            tiktoken_model: &tokenizer,
            seed: 7,
        };
        let f16 = test_model::create_gguf(&dir.join("f16"), &options, GgufType::F16).unwrap();
        let path = dir.join(format!("{quant}.gguf"));
        let status = std::process::Command::new(&quantize)
            .arg(&f16)
            .arg(&path)
            .arg(quant.to_uppercase())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("running llama-quantize");
        assert!(status.success(), "llama-quantize {quant} failed");
        Some(path)
    }

    /// Matrices of a llama.cpp-written `quant` file against candle's dequantization of them,
    /// within the activation bound; `main` is the K-quant the file is mostly made of.
    fn llama_cpp_matrices_match_their_dequantization(quant: &str, main: GgmlDType) {
        let dir = tempfile::tempdir().unwrap();
        let Some(path) = llama_cpp_file(quant, dir.path()) else {
            return;
        };
        let content = crate::llama::load::read_gguf(&path).unwrap();
        let mut file = std::fs::File::open(&path).unwrap();
        let mut types = Vec::new();
        for name in [
            "blk.0.attn_q.weight",
            "blk.0.attn_v.weight",
            "blk.0.ffn_gate.weight",
            "blk.0.ffn_down.weight",
            "blk.1.ffn_down.weight",
        ] {
            let q = content.tensor(&mut file, name, &Device::Cpu).unwrap();
            types.push(q.dtype());
            let (rows, cols) = q.shape().dims2().unwrap();
            let dense: Vec<Vec<f32>> = q.dequantize(&Device::Cpu).unwrap().to_vec2().unwrap();
            // Several rows, to take the multi-row kernels as well as the one-row one.
            let m = 7;
            let x = random(m * cols, 30);
            let linear = Linear::from_qtensor(q).unwrap();
            assert!(matches!(linear, Linear::Quant(_)), "{name}");
            let xt = Tensor::from_vec(x.clone(), (m, cols), &Device::Cpu).unwrap();
            let got: Vec<Vec<f32>> = linear.forward(&xt).unwrap().to_vec2().unwrap();
            for (i, x) in x.chunks_exact(cols).enumerate() {
                for r in 0..rows {
                    let w = &dense[r];
                    let exact: f64 = w.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
                    let bound: f64 = (0..cols / BLOCK)
                        .map(|b| {
                            let block = b * BLOCK..(b + 1) * BLOCK;
                            let amax = x[block.clone()].iter().fold(0f32, |m, v| m.max(v.abs()));
                            let w_abs: f64 = w[block].iter().map(|v| v.abs() as f64).sum();
                            amax as f64 / 254.0 * w_abs * (1.0 + 1e-4)
                        })
                        .sum();
                    let err = (got[i][r] as f64 - exact).abs();
                    assert!(
                        err <= bound,
                        "{name} ({i}, {r}): error {err} over bound {bound}"
                    );
                }
            }
        }
        assert!(types.contains(&main), "{quant}: {types:?}");
    }

    #[test]
    #[ignore]
    fn llama_cpp_q4_k_m_matrices_match_their_dequantization() {
        llama_cpp_matrices_match_their_dequantization("q4_k_m", GgmlDType::Q4K);
    }

    #[test]
    #[ignore]
    fn llama_cpp_q5_k_m_matrices_match_their_dequantization() {
        llama_cpp_matrices_match_their_dequantization("q5_k_m", GgmlDType::Q5K);
    }

    /// Timing, not a check: one activation row (decode) through our kernels and through
    /// candle's `QMatMul` on the same weights, alternating, best of 20 each.
    /// `cargo test -p llama-stack-provider-inference-candle --lib kquant_matmul_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn kquant_matmul_speed() {
        use candle_core::Module;
        use candle_core::quantized::QMatMul;
        for (dtype, rows, cols) in [
            // A 1B Q4_K_M layer's gate/up (joined), down and q; a quarter of the output.
            (GgmlDType::Q4K, 16384, 2048),
            (GgmlDType::Q6K, 2048, 8192),
            (GgmlDType::Q4K, 2048, 2048),
            (GgmlDType::Q6K, 32768, 2048),
            // The same shapes of a Q5_K_M file.
            (GgmlDType::Q5K, 16384, 2048),
            (GgmlDType::Q5K, 2048, 2048),
        ] {
            let w = Tensor::from_vec(random(rows * cols, 5), (rows, cols), &Device::Cpu).unwrap();
            let ours = Linear::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let bytes = q.storage_size_in_bytes() as f64;
            let theirs = QMatMul::from_qtensor(q).unwrap();
            // KQ_ROWS activation rows: 1 is a decode step, a prompt chunk is up to 256.
            let m: usize = std::env::var("KQ_ROWS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            let x = Tensor::from_vec(random(m * cols, 6), (m, cols), &Device::Cpu).unwrap();
            let (mut best_ours, mut best_theirs) = (f64::MAX, f64::MAX);
            for _ in 0..20 {
                let t = std::time::Instant::now();
                ours.forward(&x).unwrap();
                best_ours = best_ours.min(t.elapsed().as_secs_f64());
                let t = std::time::Instant::now();
                theirs.forward(&x).unwrap();
                best_theirs = best_theirs.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{dtype:?} {rows}x{cols}, {m} rows: ours {:.3} ms ({:.1} GB/s of file bytes), candle {:.3} ms, {:.2}x",
                best_ours * 1e3,
                bytes / best_ours / 1e9,
                best_theirs * 1e3,
                best_theirs / best_ours
            );
        }
    }

    #[test]
    fn multi_row_kernels_give_the_one_row_results_bit_for_bit() {
        let (rows, cols) = (19, 3 * SUPER);
        let w = Tensor::from_vec(random(rows * cols, 11), (rows, cols), &Device::Cpu).unwrap();
        let dtypes = [
            GgmlDType::Q6K,
            GgmlDType::Q5K,
            GgmlDType::Q4K,
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
        ];
        for dtype in dtypes {
            let linear = Linear::from_qtensor(QTensor::quantize(&w, dtype).unwrap()).unwrap();
            // Seven rows: four at once, then two, then one left over.
            let x = Tensor::from_vec(random(7 * cols, 12), (7, cols), &Device::Cpu).unwrap();
            let together = linear.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            for (i, row) in together.iter().enumerate() {
                let one = linear
                    .forward(&x.narrow(0, i, 1).unwrap())
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                assert_eq!(row, &one[0], "{dtype:?} row {i}");
            }
        }
    }

    #[test]
    fn k_quant_embedding_rows_are_the_dequantized_weights() {
        for dtype in [GgmlDType::Q4K, GgmlDType::Q5K, GgmlDType::Q6K] {
            let w = Tensor::from_vec(random(9 * SUPER, 3), (9, SUPER), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&w, dtype).unwrap();
            let want = q.dequantize(&Device::Cpu).unwrap().get(8).unwrap();
            let ours = Linear::from_qtensor(q).unwrap();
            assert!(matches!(ours, Linear::Quant(_)));
            let ids = Tensor::new(&[8u32], &Device::Cpu).unwrap();
            let got = ours.embedding(&ids).unwrap().get(0).unwrap();
            let diff = crate::test_model::max_abs_diff(&got, &want).unwrap();
            assert!(diff <= 1e-6, "{dtype:?}: {diff}");
        }
    }
}
