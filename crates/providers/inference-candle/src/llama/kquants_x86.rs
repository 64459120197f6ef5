//! The AVX2 kernels of [`super`], each for one activation row or several sharing each weight
//! vector's unpacking (prompts, batched and speculative steps).

use std::arch::x86_64::*;

use super::q5k::{GROUP_BYTES as Q5K_GROUP_BYTES, SUB_BYTES as Q5K_SUB_BYTES};
use super::{
    BLOCK, GROUP, Q4K_GROUP_BYTES, Q4K_MINS, Q4K_QUANTS, Q4K_SCALES, Q6K_GROUP_BYTES, Q6K_QUANTS,
    Q6K_SCALES, SUPER,
};
use crate::llama::linear::x86::prefetch;

/// Four activation bytes at `p`, repeated in every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    // SAFETY: four readable bytes at `p`, per the callers' contracts.
    _mm256_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

/// Eight per-row bytes at `p` as sixteen 16-bit lanes, each row's value twice: the
/// partner of `madd_epi16` on products whose two 16-bit halves belong to one row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_pairs(p: *const u8, signed: bool) -> __m256i {
    let dup = _mm_setr_epi8(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    // SAFETY: eight readable bytes at `p`, per the callers' contracts.
    let bytes = _mm_shuffle_epi8(unsafe { _mm_loadl_epi64(p as *const __m128i) }, dup);
    if signed {
        _mm256_cvtepi8_epi16(bytes)
    } else {
        _mm256_cvtepu8_epi16(bytes)
    }
}

/// Q4_K for `N` activation rows (one for decode, more for prompts, batched and speculative
/// steps), each weight vector unpacked once for all of them. Every row goes through the same
/// operations in the same order whatever `N`, so one row's results do not depend on the rows
/// beside it.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds `n` Q4_K group super-blocks, and for each
/// row, `a` `n * 256` quants, `a_scales` and `a_sums` `n * 8` values, `n = a_scales[0].len() / 8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q4k<const N: usize>(
    w: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
    a_sums: [&[i32]; N],
) -> [[f32; GROUP]; N] {
    let supers = a_scales[0].len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let mut out = [_mm256_setzero_ps(); N];
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q4K_GROUP_BYTES);
            let mut acc_d = [_mm256_setzero_ps(); N];
            let mut acc_m = [_mm256_setzero_ps(); N];
            for j in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + j;
                // An eighth of the super-block per sub-block: 148 bytes, three lines at most.
                prefetch::<3>(sb.add(j * Q4K_GROUP_BYTES / 8));
                let wp = sb.add(Q4K_QUANTS + j * 128);
                // As in Q4_0: eight products of nibbles (0..=15) and bytes stay in 16 bits.
                let mut pairs = [_mm256_setzero_si256(); N];
                for p in 0..4 {
                    let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                    let lo = _mm256_and_si256(raw, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                    for r in 0..N {
                        let ap = a[r].as_ptr().add(b * BLOCK + p * 8);
                        let both = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, broadcast4(ap)),
                            _mm256_maddubs_epi16(hi, broadcast4(ap.add(4))),
                        );
                        pairs[r] = _mm256_add_epi16(pairs[r], both);
                    }
                }
                // The 6-bit sub-block scale multiplies in the pairwise add to 32 bits.
                let scales = row_pairs(sb.add(Q4K_SCALES + j * GROUP), false);
                let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    sb.add(Q4K_MINS + j * GROUP) as *const __m128i,
                )));
                for r in 0..N {
                    let scaled = _mm256_madd_epi16(pairs[r], scales);
                    let da = *a_scales[r].get_unchecked(b);
                    acc_d[r] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled), _mm256_set1_ps(da), acc_d[r]);
                    let a_total = *a_sums[r].get_unchecked(b) as f32 * da;
                    acc_m[r] = _mm256_fmadd_ps(mins, _mm256_set1_ps(a_total), acc_m[r]);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(sb.add(16) as *const __m128i));
            for r in 0..N {
                out[r] = _mm256_fmadd_ps(d, acc_d[r], out[r]);
                out[r] = _mm256_fnmadd_ps(dmin, acc_m[r], out[r]);
            }
        }
    }
    let mut dots = [[0f32; GROUP]; N];
    for (row, out) in dots.iter_mut().zip(out) {
        // SAFETY: `row` holds eight f32.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), out) };
    }
    dots
}

/// Bit `k` of each byte of `v` moved to bit 4 (other bits left for the caller to mask).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bit_to_4(v: __m256i, k: usize) -> __m256i {
    // 16-bit shifts of at most four places: bit 4 of either byte comes from its own byte.
    match k {
        0 => _mm256_slli_epi16(v, 4),
        1 => _mm256_slli_epi16(v, 3),
        2 => _mm256_slli_epi16(v, 2),
        3 => _mm256_slli_epi16(v, 1),
        4 => v,
        5 => _mm256_srli_epi16(v, 1),
        6 => _mm256_srli_epi16(v, 2),
        _ => _mm256_srli_epi16(v, 3),
    }
}

/// [`group_q4k`] for Q5_K.
///
/// # Safety
/// As for [`group_q4k`], with `w` holding Q5_K group super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q5k<const N: usize>(
    w: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
    a_sums: [&[i32]; N],
) -> [[f32; GROUP]; N] {
    let supers = a_scales[0].len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let fifth = _mm256_set1_epi8(0x10);
    let mut out = [_mm256_setzero_ps(); N];
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q5K_GROUP_BYTES);
            let mut acc_d = [_mm256_setzero_ps(); N];
            let mut acc_m = [_mm256_setzero_ps(); N];
            for j in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + j;
                // 180 bytes: three lines at most.
                prefetch::<3>(sb.add(j * Q5K_GROUP_BYTES / 8));
                let wp = sb.add(Q4K_QUANTS + j * Q5K_SUB_BYTES);
                let hv = _mm256_loadu_si256(wp.add(128) as *const __m256i);
                // Products of 5-bit quants and bytes reach 2 · 31 · 127 per pair: four of
                // them fit 16 bits, eight would not, so each half of the block has its own.
                let mut pairs = [[_mm256_setzero_si256(); 2]; N];
                for p in 0..4 {
                    let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                    let lo = _mm256_or_si256(
                        _mm256_and_si256(raw, low),
                        _mm256_and_si256(bit_to_4(hv, 2 * p), fifth),
                    );
                    let hi = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                        _mm256_and_si256(bit_to_4(hv, 2 * p + 1), fifth),
                    );
                    for r in 0..N {
                        let ap = a[r].as_ptr().add(b * BLOCK + p * 8);
                        let both = _mm256_add_epi16(
                            _mm256_maddubs_epi16(lo, broadcast4(ap)),
                            _mm256_maddubs_epi16(hi, broadcast4(ap.add(4))),
                        );
                        pairs[r][p / 2] = _mm256_add_epi16(pairs[r][p / 2], both);
                    }
                }
                let scales = row_pairs(sb.add(Q4K_SCALES + j * GROUP), false);
                let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    sb.add(Q4K_MINS + j * GROUP) as *const __m128i,
                )));
                for r in 0..N {
                    let scaled = _mm256_add_epi32(
                        _mm256_madd_epi16(pairs[r][0], scales),
                        _mm256_madd_epi16(pairs[r][1], scales),
                    );
                    let da = *a_scales[r].get_unchecked(b);
                    acc_d[r] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled), _mm256_set1_ps(da), acc_d[r]);
                    let a_total = *a_sums[r].get_unchecked(b) as f32 * da;
                    acc_m[r] = _mm256_fmadd_ps(mins, _mm256_set1_ps(a_total), acc_m[r]);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(sb.add(16) as *const __m128i));
            for r in 0..N {
                out[r] = _mm256_fmadd_ps(d, acc_d[r], out[r]);
                out[r] = _mm256_fnmadd_ps(dmin, acc_m[r], out[r]);
            }
        }
    }
    let mut dots = [[0f32; GROUP]; N];
    for (row, out) in dots.iter_mut().zip(out) {
        // SAFETY: `row` holds eight f32.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), out) };
    }
    dots
}

/// [`group_q4k`] for Q6_K. The quants stay unsigned (0..=63), which `maddubs` takes as they
/// are, rather than signed with their sign moved onto the activations for each row; the
/// offset of 32 comes off each block's integer sum afterwards, as 32 · Σ over its two
/// sub-blocks of scale · Σ activations, from the activations' sums per 16.
///
/// # Safety
/// As for [`group_q4k`], with `w` holding Q6_K group super-blocks and `a_halves` `n * 16`
/// values per row in place of `a_sums`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q6k<const N: usize>(
    w: &[u8],
    a: [&[i8]; N],
    a_scales: [&[f32]; N],
    a_halves: [&[i16]; N],
) -> [[f32; GROUP]; N] {
    let supers = a_scales[0].len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let top = _mm256_set1_epi8(0x30);
    // Sub-block 2·blk's scale of each row beside sub-block 2·blk + 1's.
    let interleave = _mm_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    let mut out = [_mm256_setzero_ps(); N];
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q6K_GROUP_BYTES);
            let mut acc = [_mm256_setzero_ps(); N];
            for blk in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + blk;
                // 210 bytes: four lines at most.
                prefetch::<4>(sb.add(blk * Q6K_GROUP_BYTES / 8));
                let wp = sb.add(Q6K_QUANTS + blk * 192);
                // The block's quants, unpacked once into registers for every row: columns
                // `8p..8p+4` in `q[2p]`, `8p+4..8p+8` in `q[2p + 1]`.
                let mut q = [_mm256_setzero_si256(); 8];
                for h in 0..2 {
                    let hv = _mm256_loadu_si256(wp.add(128 + h * 32) as *const __m256i);
                    for k in 0..2 {
                        let p = 2 * h + k;
                        let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                        let (top_lo, top_hi) = if k == 0 {
                            (_mm256_slli_epi16(hv, 4), _mm256_slli_epi16(hv, 2))
                        } else {
                            (hv, _mm256_srli_epi16(hv, 2))
                        };
                        q[2 * p] = _mm256_or_si256(
                            _mm256_and_si256(raw, low),
                            _mm256_and_si256(top_lo, top),
                        );
                        q[2 * p + 1] = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                            _mm256_and_si256(top_hi, top),
                        );
                    }
                }
                let scales =
                    [0, 1].map(|h| row_pairs(sb.add(Q6K_SCALES + (2 * blk + h) * GROUP), true));
                let both = _mm_loadu_si128(sb.add(Q6K_SCALES + 2 * blk * GROUP) as *const __m128i);
                // 32 · scale (at most 4096 in size) still fits 16 bits, so the offset's factor
                // is paid once here rather than per row.
                let both =
                    _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(both, interleave)), 5);
                for r in 0..N {
                    let ap = a[r].as_ptr().add(b * BLOCK);
                    let mut sum = _mm256_setzero_si256();
                    for p in 0..4 {
                        // Two products of at most 63 · 127 per pair: two pairs fit 16 bits.
                        let pairs = _mm256_add_epi16(
                            _mm256_maddubs_epi16(q[2 * p], broadcast4(ap.add(p * 8))),
                            _mm256_maddubs_epi16(q[2 * p + 1], broadcast4(ap.add(p * 8 + 4))),
                        );
                        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, scales[p / 2]));
                    }
                    let halves = (a_halves[r].as_ptr().add(2 * b) as *const i32).read_unaligned();
                    let offset = _mm256_madd_epi16(both, _mm256_set1_epi32(halves));
                    let exact = _mm256_sub_epi32(sum, offset);
                    let da = *a_scales[r].get_unchecked(b);
                    acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), _mm256_set1_ps(da), acc[r]);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            for r in 0..N {
                out[r] = _mm256_fmadd_ps(d, acc[r], out[r]);
            }
        }
    }
    let mut dots = [[0f32; GROUP]; N];
    for (row, out) in dots.iter_mut().zip(out) {
        // SAFETY: `row` holds eight f32.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), out) };
    }
    dots
}
