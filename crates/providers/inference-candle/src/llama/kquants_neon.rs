//! The NEON kernels of [`super`]: one activation row, or two sharing each weight vector's
//! unpacking (prompts, batched and speculative steps).
//!
//! Plain NEON, or `sdot` where the CPU has the dot-product extension, like
//! [`super::super::linear`]'s NEON kernels and with their register layout: the rows 0..4 and
//! 4..8 of a 32-byte vector in two registers, a row's four columns per 32-bit lane. Each row's arithmetic is the portable code's, operation for operation (exact integer
//! sums per 16 columns, then the same f32 products and sums in the same order), so the
//! results are the same bits, and the two-row kernels give the one-row results.

use std::arch::aarch64::*;

use super::super::linear::neon::{broadcast4, has_dotprod, mac_or_dot, rows_of};
use super::{
    BLOCK, GROUP, PackedKind, Q4K_GROUP_BYTES, Q4K_MINS, Q4K_QUANTS, Q4K_SCALES, Q6K_GROUP_BYTES,
    Q6K_QUANTS, Q6K_SCALES, SUPER, f16_at, q5k,
};

/// [`super::group_dot`] for Q4_K, Q5_K and Q6_K; `None` for the formats served elsewhere.
pub(super) fn group_dot(
    kind: PackedKind,
    group: &[u8],
    a: &[i8],
    a_scales: &[f32],
    a_sums: &[i32],
) -> Option<[f32; GROUP]> {
    let [dots] = rows_dot(kind, group, [a], [a_scales], [a_sums], has_dotprod())?;
    Some(dots)
}

/// [`super::group_dot_x2`] for Q4_K, Q5_K and Q6_K; `None` for the formats served elsewhere.
pub(super) fn group_dot_x2(
    kind: PackedKind,
    group: &[u8],
    a: [&[i8]; 2],
    a_scales: [&[f32]; 2],
    a_sums: [&[i32]; 2],
) -> Option<[[f32; GROUP]; 2]> {
    rows_dot(kind, group, a, a_scales, a_sums, has_dotprod())
}

/// The group dots of `N` activation rows, on `sdot` when `dot` (which only a CPU with the
/// dot-product extension may ask for).
fn rows_dot<const N: usize>(
    kind: PackedKind,
    group: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
    a_sums: [&[i32]; N],
    dot: bool,
) -> Option<[[f32; GROUP]; N]> {
    debug_assert!(!dot || has_dotprod());
    // SAFETY: NEON is part of the aarch64 baseline; `dot` only where the CPU has `sdot`.
    unsafe {
        Some(match (kind, dot) {
            (PackedKind::Q4K, false) => q4k_rows::<N, false, false>(group, a, a_scales, a_sums),
            (PackedKind::Q4K, true) => q4k_rows::<N, false, true>(group, a, a_scales, a_sums),
            (PackedKind::Q5K, false) => q4k_rows::<N, true, false>(group, a, a_scales, a_sums),
            (PackedKind::Q5K, true) => q4k_rows::<N, true, true>(group, a, a_scales, a_sums),
            (PackedKind::Q6K, false) => q6k_rows::<N, false>(group, a, a_scales),
            (PackedKind::Q6K, true) => q6k_rows::<N, true>(group, a, a_scales),
            _ => return None,
        })
    }
}

/// Eight per-row bytes at `p`, unsigned, as two f32 vectors (rows 0..4, 4..8).
///
/// # Safety
/// Eight bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row_bytes_u8(p: *const u8) -> [float32x4_t; 2] {
    // SAFETY: per the contract.
    let wide = vmovl_u8(unsafe { vld1_u8(p) });
    [
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(wide))),
        vcvtq_f32_u32(vmovl_high_u16(wide)),
    ]
}

/// As [`row_bytes_u8`], for signed bytes.
///
/// # Safety
/// Eight bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row_bytes_i8(p: *const u8) -> [float32x4_t; 2] {
    // SAFETY: per the contract.
    let wide = vmovl_s8(unsafe { vld1_s8(p as *const i8) });
    [
        vcvtq_f32_s32(vmovl_s16(vget_low_s16(wide))),
        vcvtq_f32_s32(vmovl_high_s16(wide)),
    ]
}

/// The eight rows' f16 values at the start of `v`, as f32. Once per super-block: scalar
/// conversions cost nothing next to the 2048 products, and need no `fp16` intrinsics.
#[target_feature(enable = "neon")]
fn row_f16(v: &[u8]) -> [float32x4_t; 2] {
    let f: [f32; GROUP] = std::array::from_fn(|lane| f16_at(v, lane));
    // SAFETY: `f` holds eight f32.
    unsafe { [vld1q_f32(f.as_ptr()), vld1q_f32(f.as_ptr().add(4))] }
}

#[target_feature(enable = "neon")]
fn store<const N: usize>(acc: [[float32x4_t; 2]; N]) -> [[f32; GROUP]; N] {
    let mut out = [[0f32; GROUP]; N];
    for (out, acc) in out.iter_mut().zip(acc) {
        // SAFETY: `out` holds eight f32.
        unsafe {
            vst1q_f32(out.as_mut_ptr(), acc[0]);
            vst1q_f32(out.as_mut_ptr().add(4), acc[1]);
        }
    }
    out
}

/// Checks that `group` and every row hold the super-blocks `a_scales[0]` covers; returns
/// their number.
fn supers<const N: usize>(group: &[u8], gb: usize, a: [&[i8]; N], a_scales: [&[f32]; N]) -> usize {
    let blocks = a_scales[0].len();
    assert!(blocks.is_multiple_of(SUPER / BLOCK));
    let supers = blocks * BLOCK / SUPER;
    assert!(group.len() >= supers * gb);
    assert!(a.iter().all(|a| a.len() >= supers * SUPER));
    assert!(a_scales.iter().all(|s| s.len() == blocks));
    supers
}

/// Q4_K group dots of `N` activation rows; Q5_K's with `FIFTH`, whose sub-blocks carry the
/// quants' fifth bits after the nibbles; summed with `sdot` with `DOT`.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q4k_rows<const N: usize, const FIFTH: bool, const DOT: bool>(
    w: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
    a_sums: [&[i32]; N],
) -> [[f32; GROUP]; N] {
    let (gb, sub_bytes) = if FIFTH {
        (q5k::GROUP_BYTES, q5k::SUB_BYTES)
    } else {
        (Q4K_GROUP_BYTES, 128)
    };
    let supers = supers(w, gb, a, a_scales);
    assert!(a_sums.iter().all(|s| s.len() >= supers * (SUPER / BLOCK)));
    let (low, fifth) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x10));
    let mut dots = [[vdupq_n_f32(0.0); 2]; N];
    for s in 0..supers {
        let sb = &w[s * gb..(s + 1) * gb];
        let (d, dmin) = (row_f16(sb), row_f16(&sb[16..]));
        for j in 0..SUPER / BLOCK {
            let b = s * (SUPER / BLOCK) + j;
            // Per half of the block, row, and rows 0..4 / 4..8.
            let mut sums = [[[[vdupq_n_s32(0); 2]; 2]; N]; 2];
            let (sc, m);
            // SAFETY: super-block s < supers, and block b, lie inside every slice, as
            // asserted.
            unsafe {
                let wp = sb.as_ptr().add(Q4K_QUANTS + j * sub_bytes);
                for p in 0..4 {
                    let mut nibbles = [[vdupq_n_s8(0); 2]; 2];
                    for (h, n) in nibbles.iter_mut().enumerate() {
                        let raw = vld1q_u8(wp.add(p * 32 + 16 * h));
                        let (mut lo, mut hi) = (vandq_u8(raw, low), vshrq_n_u8::<4>(raw));
                        if FIFTH {
                            // The fifth bits of the low and high nibbles sit at bits 2p and
                            // 2p + 1: moved to bit 4 (a negative shift goes right).
                            let bits = vld1q_u8(wp.add(128 + 16 * h));
                            let to_4 = vdupq_n_s8(4 - 2 * p as i8);
                            lo = vorrq_u8(lo, vandq_u8(vshlq_u8(bits, to_4), fifth));
                            let to_4 = vdupq_n_s8(3 - 2 * p as i8);
                            hi = vorrq_u8(hi, vandq_u8(vshlq_u8(bits, to_4), fifth));
                        }
                        *n = [vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)];
                    }
                    for (r, sums) in sums[p / 2].iter_mut().enumerate() {
                        let ap = a[r].as_ptr().add(b * BLOCK + p * 8);
                        let (y_lo, y_hi) = (broadcast4(ap), broadcast4(ap.add(4)));
                        for (h, n) in nibbles.iter().enumerate() {
                            mac_or_dot::<DOT>(&mut sums[h], n[0], y_lo);
                            mac_or_dot::<DOT>(&mut sums[h], n[1], y_hi);
                        }
                    }
                }
                sc = row_bytes_u8(sb.as_ptr().add(Q4K_SCALES + j * GROUP));
                m = row_bytes_u8(sb.as_ptr().add(Q4K_MINS + j * GROUP));
            }
            for r in 0..N {
                let da = vdupq_n_f32(a_scales[r][b]);
                let a_total = vdupq_n_f32(a_sums[r][b] as f32);
                for h in 0..2 {
                    let scale = vmulq_f32(d[h], sc[h]);
                    let min = vmulq_f32(dmin[h], m[h]);
                    let mut dot = dots[r][h];
                    for half in &sums {
                        let sum = vcvtq_f32_s32(rows_of::<DOT>(half[r][h]));
                        dot = vaddq_f32(dot, vmulq_f32(vmulq_f32(sum, scale), da));
                    }
                    dots[r][h] = vsubq_f32(dot, vmulq_f32(vmulq_f32(min, a_total), da));
                }
            }
        }
    }
    store(dots)
}

/// Q6_K group dots of `N` activation rows; summed with `sdot` with `DOT`.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q6k_rows<const N: usize, const DOT: bool>(
    w: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
) -> [[f32; GROUP]; N] {
    let supers = supers(w, Q6K_GROUP_BYTES, a, a_scales);
    let (low, top, offset) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x30), vdupq_n_s8(32));
    let mut dots = [[vdupq_n_f32(0.0); 2]; N];
    for s in 0..supers {
        let sb = &w[s * Q6K_GROUP_BYTES..(s + 1) * Q6K_GROUP_BYTES];
        let d = row_f16(sb);
        for blk in 0..SUPER / BLOCK {
            let b = s * (SUPER / BLOCK) + blk;
            let mut sums = [[[[vdupq_n_s32(0); 2]; 2]; N]; 2];
            let mut sc = [[vdupq_n_f32(0.0); 2]; 2];
            // SAFETY: super-block s < supers, and block b, lie inside every slice, as
            // asserted.
            unsafe {
                let wp = sb.as_ptr().add(Q6K_QUANTS + blk * 192);
                for (half, sums) in sums.iter_mut().enumerate() {
                    for k in 0..2 {
                        let p = 2 * half + k;
                        let mut quants = [[vdupq_n_s8(0); 2]; 2];
                        for (h, q) in quants.iter_mut().enumerate() {
                            let raw = vld1q_u8(wp.add(p * 32 + 16 * h));
                            let hv = vld1q_u8(wp.add(128 + half * 32 + 16 * h));
                            // The top two bits of the low-nibble column sit at bits 4k..,
                            // of the high one at 4k+2..: moved to bits 4..6.
                            let (top_lo, top_hi) = if k == 0 {
                                (vshlq_n_u8::<4>(hv), vshlq_n_u8::<2>(hv))
                            } else {
                                (hv, vshrq_n_u8::<2>(hv))
                            };
                            let q_lo = vorrq_u8(vandq_u8(raw, low), vandq_u8(top_lo, top));
                            let q_hi = vorrq_u8(vshrq_n_u8::<4>(raw), vandq_u8(top_hi, top));
                            *q = [
                                vsubq_s8(vreinterpretq_s8_u8(q_lo), offset),
                                vsubq_s8(vreinterpretq_s8_u8(q_hi), offset),
                            ];
                        }
                        for (r, sums) in sums.iter_mut().enumerate() {
                            let ap = a[r].as_ptr().add(b * BLOCK + p * 8);
                            let (y_lo, y_hi) = (broadcast4(ap), broadcast4(ap.add(4)));
                            for (h, q) in quants.iter().enumerate() {
                                mac_or_dot::<DOT>(&mut sums[h], q[0], y_lo);
                                mac_or_dot::<DOT>(&mut sums[h], q[1], y_hi);
                            }
                        }
                    }
                    sc[half] = row_bytes_i8(sb.as_ptr().add(Q6K_SCALES + (2 * blk + half) * GROUP));
                }
            }
            for r in 0..N {
                let da = vdupq_n_f32(a_scales[r][b]);
                for h in 0..2 {
                    let mut dot = dots[r][h];
                    for (half, sc) in sums.iter().zip(&sc) {
                        let scale = vmulq_f32(sc[h], d[h]);
                        let sum = vcvtq_f32_s32(rows_of::<DOT>(half[r][h]));
                        dot = vaddq_f32(dot, vmulq_f32(vmulq_f32(sum, scale), da));
                    }
                    dots[r][h] = dot;
                }
            }
        }
    }
    store(dots)
}

#[cfg(test)]
mod tests {
    use super::super::{group_bytes, group_dot_portable};
    use super::*;
    use crate::llama::linear::Activations;
    use crate::llama::repack::{FileRows, file_block_bytes, kquant};

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        fn unit(&mut self) -> f32 {
            (self.next() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        }
    }

    /// A file's Q4_K, Q5_K or Q6_K matrix with random quants, scales and mins over their
    /// whole range, and finite super-block scales.
    fn file_bytes(kind: PackedKind, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let mut data = Vec::new();
        for _ in 0..rows * cols / SUPER {
            let f16 = |rng: &mut Rng| half::f16::from_f32(rng.unit() * 0.01).to_le_bytes();
            match kind {
                PackedKind::Q4K | PackedKind::Q5K => {
                    data.extend(f16(rng));
                    data.extend(f16(rng));
                    let rest = if kind == PackedKind::Q4K { 140 } else { 172 };
                    data.extend((0..rest).map(|_| rng.next() as u8));
                }
                PackedKind::Q6K => {
                    data.extend((0..208).map(|_| rng.next() as u8));
                    data.extend(f16(rng));
                }
                _ => unreachable!(),
            }
        }
        data
    }

    /// Activations over their whole range: random, and ±1 (every quant ±127).
    fn activations(m: usize, cols: usize, rng: &mut Rng) -> [Activations; 2] {
        let x: Vec<f32> = (0..m * cols).map(|_| rng.unit() * 3.0).collect();
        let signs: Vec<f32> = (0..m * cols)
            .map(|_| if rng.next() & 1 == 0 { 1.0 } else { -1.0 })
            .collect();
        [
            Activations::quantize(&x, m, cols),
            Activations::quantize(&signs, m, cols),
        ]
    }

    fn check(kind: PackedKind) {
        let mut rng = Rng(3);
        let mut checked = 0;
        for rows in [1, 8, 13, 21] {
            for cols in [SUPER, 3 * SUPER, 8 * SUPER] {
                let bytes = file_bytes(kind, rows, cols, &mut rng);
                let parts = [&bytes[..]];
                let row_bytes = cols / SUPER * file_block_bytes(kind);
                let packed = kquant(kind, cols, &FileRows::new(&parts, row_bytes));
                let gb = group_bytes(kind, cols);
                for acts in activations(3, cols, &mut rng) {
                    let row = |i: usize| (acts.row_quants(i), acts.row_scales(i), acts.row_sums(i));
                    for g in 0..rows.div_ceil(GROUP) {
                        let group = &packed[g * gb..(g + 1) * gb];
                        let real = (rows - g * GROUP).min(GROUP);
                        let mut one = Vec::new();
                        for i in 0..3 {
                            let (a, s, sums) = row(i);
                            let neon = group_dot(kind, group, a, s, sums).unwrap();
                            let want = group_dot_portable(kind, group, a, s, sums);
                            assert_eq!(neon, want, "{kind:?} {rows}x{cols} group {g} row {i}");
                            for dot in [false, has_dotprod()] {
                                let [got] = rows_dot(kind, group, [a], [s], [sums], dot).unwrap();
                                assert_eq!(got, want, "{kind:?} sdot {dot} group {g} row {i}");
                            }
                            // Padding rows have zero super-block scales.
                            assert!(neon[real..].iter().all(|&v| v == 0.0));
                            assert_eq!(super::super::group_dot(kind, group, a, s, sums), neon);
                            one.push(neon);
                            checked += 1;
                        }
                        for i in 0..2 {
                            let ((a0, s0, m0), (a1, s1, m1)) = (row(i), row(i + 1));
                            let two = group_dot_x2(kind, group, [a0, a1], [s0, s1], [m0, m1]);
                            assert_eq!(
                                two,
                                Some([one[i], one[i + 1]]),
                                "{kind:?} rows {i}, {}",
                                i + 1
                            );
                            let dispatched = super::super::group_dot_x2(
                                kind,
                                group,
                                [a0, a1],
                                [s0, s1],
                                [m0, m1],
                            );
                            assert_eq!(dispatched, two);
                        }
                    }
                }
            }
        }
        assert!(checked > 100);
    }

    #[test]
    fn neon_q4_k_group_dots_equal_the_portable_code() {
        check(PackedKind::Q4K);
    }

    #[test]
    fn neon_q5_k_group_dots_equal_the_portable_code() {
        check(PackedKind::Q5K);
    }

    #[test]
    fn neon_q6_k_group_dots_equal_the_portable_code() {
        check(PackedKind::Q6K);
    }

    #[test]
    fn other_formats_are_left_to_their_own_kernels() {
        for kind in [PackedKind::Q8_0, PackedKind::Q4_0] {
            assert!(group_dot(kind, &[], &[], &[], &[]).is_none());
            assert!(group_dot_x2(kind, &[], [&[]; 2], [&[]; 2], [&[]; 2]).is_none());
        }
    }
}
