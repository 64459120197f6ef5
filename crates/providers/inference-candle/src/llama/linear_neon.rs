//! The NEON kernels of [`super`] for Q8_0 and Q4_0 groups of eight interleaved rows.
//!
//! NEON is part of the aarch64 baseline, so the plain kernels (widening multiplies and
//! pairwise adds) need no run-time detection. Where the CPU has the dot-product extension
//! (Apple M1 and later, Graviton 2 and later), a second pair of kernels uses `sdot`, four
//! byte products summed into each 32-bit lane in one instruction. Its Rust intrinsic is not
//! stable yet, so it is written as inline assembly.
//!
//! A 32-byte vector of the layout is two 16-byte registers, rows 0..4 and rows 4..8, each
//! row's four columns in one 32-bit lane. The integer sums are exact, and the f32 arithmetic
//! is the portable code's, operation for operation, so the results are the same bits.

use std::arch::aarch64::*;

use super::{Activations, BLOCK, GROUP, PackedKind};

/// [`super::Packed::group_dot_portable`] for Q8_0 and Q4_0 (`w`: the group's quants, `ws`:
/// its scales); `None` for the formats served elsewhere.
pub(super) fn group_dot(
    kind: PackedKind,
    w: &[u8],
    ws: &[f32],
    acts: &Activations,
    i: usize,
) -> Option<[f32; GROUP]> {
    let (a, a_scales) = (acts.row_quants(i), acts.row_scales(i));
    let dot = has_dotprod();
    // SAFETY: NEON is part of the aarch64 baseline, and the sdot kernels run only where the
    // CPU reports the dot-product extension.
    unsafe {
        match kind {
            PackedKind::Q8_0 if dot => Some(group_q8::<true>(w, ws, a, a_scales)),
            PackedKind::Q4_0 if dot => Some(group_q4::<true>(w, ws, a, a_scales)),
            PackedKind::Q8_0 => Some(group_q8::<false>(w, ws, a, a_scales)),
            PackedKind::Q4_0 => Some(group_q4::<false>(w, ws, a, a_scales)),
            _ => None,
        }
    }
}

/// Whether the CPU has the dot-product extension (`sdot`); the standard library caches the
/// answer after the first call.
pub(in crate::llama) fn has_dotprod() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// `acc` plus, in each 32-bit lane, the sum of that lane's four byte products of `w` and `a`.
///
/// The assembly enables the extension itself, so the kernels that use it stay plain-NEON
/// functions into which this inlines; they are only reached after [`has_dotprod`].
///
/// # Safety
/// The CPU must have the dot-product extension.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn sdot(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` only reads and writes the three vector registers; the caller vouches
    // for the extension.
    unsafe {
        std::arch::asm!(
            ".arch_extension dotprod",
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Four activation bytes at `p`, repeated in every 32-bit lane.
///
/// # Safety
/// Four bytes at `p` must be readable.
#[inline]
#[target_feature(enable = "neon")]
pub(in crate::llama) unsafe fn broadcast4(p: *const i8) -> int8x16_t {
    // SAFETY: per the contract.
    vreinterpretq_s8_s32(vdupq_n_s32(unsafe { (p as *const i32).read_unaligned() }))
}

/// Adds the products of four rows' four weights (`w`) and four activations (`a`, in every
/// lane) to `acc`, two products per 32-bit lane: row 0's in `acc[0]` lanes 0..2, row 1's in
/// lanes 2..4, rows 2 and 3 likewise in `acc[1]`. Each product of two bytes fits 16 bits.
#[inline]
#[target_feature(enable = "neon")]
pub(in crate::llama) fn mac(acc: &mut [int32x4_t; 2], w: int8x16_t, a: int8x16_t) {
    acc[0] = vpadalq_s16(acc[0], vmull_s8(vget_low_s8(w), vget_low_s8(a)));
    acc[1] = vpadalq_s16(acc[1], vmull_high_s8(w, a));
}

/// The four rows' sums of [`mac`]'s accumulators.
#[inline]
#[target_feature(enable = "neon")]
pub(in crate::llama) fn rows4(acc: [int32x4_t; 2]) -> int32x4_t {
    vpaddq_s32(acc[0], acc[1])
}

/// [`mac`], or with `DOT` one `sdot` that sums each row's four products into its lane of
/// `acc[0]` (`acc[1]` stays zero); [`rows_of`] reads either back as the four rows' sums.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[inline]
#[target_feature(enable = "neon")]
pub(in crate::llama) unsafe fn mac_or_dot<const DOT: bool>(
    acc: &mut [int32x4_t; 2],
    w: int8x16_t,
    a: int8x16_t,
) {
    if DOT {
        // SAFETY: per the contract.
        acc[0] = unsafe { sdot(acc[0], w, a) };
    } else {
        mac(acc, w, a);
    }
}

/// The four rows' sums of [`mac_or_dot`]'s accumulators.
#[inline]
#[target_feature(enable = "neon")]
pub(in crate::llama) fn rows_of<const DOT: bool>(acc: [int32x4_t; 2]) -> int32x4_t {
    if DOT { acc[0] } else { rows4(acc) }
}

/// `acc + sum · d · da` per lane, in the portable code's order.
#[inline]
#[target_feature(enable = "neon")]
fn add_scaled(acc: float32x4_t, sum: int32x4_t, d: float32x4_t, da: float32x4_t) -> float32x4_t {
    vaddq_f32(acc, vmulq_f32(vmulq_f32(vcvtq_f32_s32(sum), d), da))
}

#[target_feature(enable = "neon")]
fn store(acc: [float32x4_t; 2]) -> [f32; GROUP] {
    let mut out = [0f32; GROUP];
    // SAFETY: `out` holds eight f32.
    unsafe {
        vst1q_f32(out.as_mut_ptr(), acc[0]);
        vst1q_f32(out.as_mut_ptr().add(4), acc[1]);
    }
    out
}

/// `w` holds `nb` Q8_0 group blocks, `ws` `nb * 8` scales, `a` `nb * 32` quants, `a_scales`
/// `nb` scales, `nb = a_scales.len()`. `DOT` sums with `sdot`.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
pub(super) unsafe fn group_q8<const DOT: bool>(
    w: &[u8],
    ws: &[f32],
    a: &[i8],
    a_scales: &[f32],
) -> [f32; GROUP] {
    let nb = a_scales.len();
    assert!(w.len() >= nb * 256 && ws.len() >= nb * GROUP && a.len() >= nb * BLOCK);
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, &da) in a_scales.iter().enumerate() {
        let mut sums = [[vdupq_n_s32(0); 2]; 2];
        // SAFETY: block b < nb lies inside every slice, as asserted.
        unsafe {
            let wp = w.as_ptr().add(b * 256) as *const i8;
            let ap = a.as_ptr().add(b * BLOCK);
            for c in 0..8 {
                let y = broadcast4(ap.add(c * 4));
                mac_or_dot::<DOT>(&mut sums[0], vld1q_s8(wp.add(c * 32)), y);
                mac_or_dot::<DOT>(&mut sums[1], vld1q_s8(wp.add(c * 32 + 16)), y);
            }
        }
        let da = vdupq_n_f32(da);
        for (h, sums) in sums.into_iter().enumerate() {
            // SAFETY: the block's eight scales lie inside `ws`, as asserted.
            let d = unsafe { vld1q_f32(ws.as_ptr().add(b * GROUP + 4 * h)) };
            acc[h] = add_scaled(acc[h], rows_of::<DOT>(sums), d, da);
        }
    }
    store(acc)
}

/// As for [`group_q8`], with `w` holding `nb` Q4_0 group blocks.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
pub(super) unsafe fn group_q4<const DOT: bool>(
    w: &[u8],
    ws: &[f32],
    a: &[i8],
    a_scales: &[f32],
) -> [f32; GROUP] {
    let nb = a_scales.len();
    assert!(w.len() >= nb * 128 && ws.len() >= nb * GROUP && a.len() >= nb * BLOCK);
    let (low, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, &da) in a_scales.iter().enumerate() {
        let mut sums = [[vdupq_n_s32(0); 2]; 2];
        // SAFETY: block b < nb lies inside every slice, as asserted.
        unsafe {
            let wp = w.as_ptr().add(b * 128);
            let ap = a.as_ptr().add(b * BLOCK);
            for p in 0..4 {
                let (y_lo, y_hi) = (broadcast4(ap.add(p * 8)), broadcast4(ap.add(p * 8 + 4)));
                for (h, sums) in sums.iter_mut().enumerate() {
                    let raw = vld1q_u8(wp.add(p * 32 + 16 * h));
                    let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, low)), eight);
                    let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)), eight);
                    mac_or_dot::<DOT>(sums, lo, y_lo);
                    mac_or_dot::<DOT>(sums, hi, y_hi);
                }
            }
        }
        let da = vdupq_n_f32(da);
        for (h, sums) in sums.into_iter().enumerate() {
            // SAFETY: the block's eight scales lie inside `ws`, as asserted.
            let d = unsafe { vld1q_f32(ws.as_ptr().add(b * GROUP + 4 * h)) };
            acc[h] = add_scaled(acc[h], rows_of::<DOT>(sums), d, da);
        }
    }
    store(acc)
}

#[cfg(test)]
mod tests {
    use super::super::Packed;
    use super::*;

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

    /// A file's Q8_0 or Q4_0 matrix with random quants over their whole range.
    fn file_bytes(kind: PackedKind, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
        let quant_bytes = match kind {
            PackedKind::Q8_0 => BLOCK,
            _ => BLOCK / 2,
        };
        let mut data = Vec::new();
        for _ in 0..rows * cols / BLOCK {
            data.extend(half::f16::from_f32(rng.unit() * 0.05).to_le_bytes());
            data.extend((0..quant_bytes).map(|_| rng.next() as u8));
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

    #[test]
    fn neon_q8_0_and_q4_0_group_dots_equal_the_portable_code() {
        let mut rng = Rng(7);
        let mut checked = 0;
        for kind in [PackedKind::Q8_0, PackedKind::Q4_0] {
            for rows in [1, 8, 13, 30] {
                for cols in [32, 96, 512] {
                    let data = file_bytes(kind, rows, cols, &mut rng);
                    let p = Packed::repack_one(kind, cols, &data);
                    let (gb, nb) = (p.group_bytes(), p.blocks_per_row());
                    for acts in activations(3, cols, &mut rng) {
                        for i in 0..3 {
                            for g in 0..rows.div_ceil(GROUP) {
                                let quants = &p.quants[g * gb..(g + 1) * gb];
                                let scales = &p.scales[g * nb * GROUP..(g + 1) * nb * GROUP];
                                let neon = group_dot(kind, quants, scales, &acts, i).unwrap();
                                let want = p.group_dot_portable(g, &acts, i);
                                let (a, a_scales) = (acts.row_quants(i), acts.row_scales(i));
                                // SAFETY: NEON is baseline; sdot only where detected.
                                let (plain, dot) = unsafe {
                                    match kind {
                                        PackedKind::Q8_0 => (
                                            group_q8::<false>(quants, scales, a, a_scales),
                                            has_dotprod().then(|| {
                                                group_q8::<true>(quants, scales, a, a_scales)
                                            }),
                                        ),
                                        _ => (
                                            group_q4::<false>(quants, scales, a, a_scales),
                                            has_dotprod().then(|| {
                                                group_q4::<true>(quants, scales, a, a_scales)
                                            }),
                                        ),
                                    }
                                };
                                assert_eq!(plain, neon_or(dot, plain), "{kind:?} sdot");
                                assert_eq!(plain, neon, "{kind:?} dispatch");
                                let real = rows - g * GROUP;
                                assert_eq!(
                                    neon[..real.min(GROUP)],
                                    want[..real.min(GROUP)],
                                    "{kind:?} {rows}x{cols} group {g} row {i}"
                                );
                                // Padding rows have zero scales.
                                assert!(neon[real.min(GROUP)..].iter().all(|&v| v == 0.0));
                                // Through the dispatch, too.
                                assert_eq!(p.group_dot(g, &acts, i), neon);
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(checked > 100);
    }

    /// The sdot kernel's result where the CPU has one, else the plain kernel's.
    fn neon_or(dot: Option<[f32; GROUP]>, plain: [f32; GROUP]) -> [f32; GROUP] {
        dot.unwrap_or(plain)
    }

    #[test]
    fn neon_sdot_is_detected_under_the_test_emulator() {
        // scripts/test-neon.sh runs these tests on qemu-user's default CPU, which has the
        // dot-product extension, and sets NEON_CHECK_SDOT so that a CPU without it fails here
        // instead of leaving the sdot kernels untested. Elsewhere a CPU may lack it.
        if std::env::var_os("NEON_CHECK_SDOT").is_some() {
            assert!(
                has_dotprod(),
                "this CPU lacks the dot-product extension: the sdot kernels were not checked"
            );
        }
    }

    #[test]
    fn other_formats_are_left_to_their_own_kernels() {
        let acts = Activations::quantize(&[0.5; 256], 1, 256);
        for kind in [PackedKind::Q4K, PackedKind::Q6K] {
            assert!(group_dot(kind, &[], &[], &acts, 0).is_none());
        }
    }
}
