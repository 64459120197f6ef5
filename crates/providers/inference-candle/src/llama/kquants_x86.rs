//! The AVX2 kernels of [`super`]: one activation row, or two sharing each weight vector's
//! unpacking (prompts, batched and speculative steps).

use std::arch::x86_64::*;

use super::{
    BLOCK, GROUP, Q4K_GROUP_BYTES, Q4K_MINS, Q4K_QUANTS, Q4K_SCALES, Q6K_GROUP_BYTES, Q6K_QUANTS,
    Q6K_SCALES, SUPER,
};

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

/// # Safety
/// AVX2, FMA and F16C must be available; `w` holds `n` Q4_K group super-blocks, `a`
/// `n * 256` quants, `a_scales` and `a_sums` `n * 8` values, `n = a_scales.len() / 8`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q4k(w: &[u8], a: &[i8], a_scales: &[f32], a_sums: &[i32]) -> [f32; GROUP] {
    let supers = a_scales.len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let mut out = _mm256_setzero_ps();
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q4K_GROUP_BYTES);
            let (mut acc_d, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for j in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + j;
                let wp = sb.add(Q4K_QUANTS + j * 128);
                let ap = a.as_ptr().add(b * BLOCK);
                // As in Q4_0: eight products of nibbles (0..=15) and bytes stay in 16 bits.
                let mut pairs = _mm256_setzero_si256();
                for p in 0..4 {
                    let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                    let lo = _mm256_and_si256(raw, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                    pairs = _mm256_add_epi16(
                        pairs,
                        _mm256_maddubs_epi16(lo, broadcast4(ap.add(p * 8))),
                    );
                    pairs = _mm256_add_epi16(
                        pairs,
                        _mm256_maddubs_epi16(hi, broadcast4(ap.add(p * 8 + 4))),
                    );
                }
                // The 6-bit sub-block scale multiplies in the pairwise add to 32 bits.
                let scaled =
                    _mm256_madd_epi16(pairs, row_pairs(sb.add(Q4K_SCALES + j * GROUP), false));
                let da = *a_scales.get_unchecked(b);
                acc_d = _mm256_fmadd_ps(_mm256_cvtepi32_ps(scaled), _mm256_set1_ps(da), acc_d);
                let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    sb.add(Q4K_MINS + j * GROUP) as *const __m128i,
                )));
                let a_total = *a_sums.get_unchecked(b) as f32 * da;
                acc_m = _mm256_fmadd_ps(mins, _mm256_set1_ps(a_total), acc_m);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(sb.add(16) as *const __m128i));
            out = _mm256_fmadd_ps(d, acc_d, out);
            out = _mm256_fnmadd_ps(dmin, acc_m, out);
        }
    }
    let mut dots = [0f32; GROUP];
    // SAFETY: `dots` holds eight f32.
    unsafe { _mm256_storeu_ps(dots.as_mut_ptr(), out) };
    dots
}

/// # Safety
/// As for [`group_q4k`], with `w` holding Q6_K group super-blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q6k(w: &[u8], a: &[i8], a_scales: &[f32]) -> [f32; GROUP] {
    let supers = a_scales.len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let top = _mm256_set1_epi8(0x30);
    let offset = _mm256_set1_epi8(32);
    let mut out = _mm256_setzero_ps();
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q6K_GROUP_BYTES);
            let mut acc = _mm256_setzero_ps();
            for blk in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + blk;
                let wp = sb.add(Q6K_QUANTS + blk * 192);
                let ap = a.as_ptr().add(b * BLOCK);
                let mut sum = _mm256_setzero_si256();
                for h in 0..2 {
                    let hv = _mm256_loadu_si256(wp.add(128 + h * 32) as *const __m256i);
                    let mut pairs = _mm256_setzero_si256();
                    for k in 0..2 {
                        let p = 2 * h + k;
                        let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                        // Top bits of the low-nibble column at bits 4k.., of the high one
                        // at 4k+2..; moved to bits 4..6 of each byte.
                        let (top_lo, top_hi) = if k == 0 {
                            (_mm256_slli_epi16(hv, 4), _mm256_slli_epi16(hv, 2))
                        } else {
                            (hv, _mm256_srli_epi16(hv, 2))
                        };
                        let q_lo = _mm256_sub_epi8(
                            _mm256_or_si256(
                                _mm256_and_si256(raw, low),
                                _mm256_and_si256(top_lo, top),
                            ),
                            offset,
                        );
                        let q_hi = _mm256_sub_epi8(
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                                _mm256_and_si256(top_hi, top),
                            ),
                            offset,
                        );
                        // Signed weights (−32..=31): maddubs wants unsigned × signed, so the
                        // weight's sign moves onto the activation. Four products of at most
                        // 32 · 127 per pair stay in 16 bits (32,512).
                        let a_lo = broadcast4(ap.add(p * 8));
                        let a_hi = broadcast4(ap.add(p * 8 + 4));
                        pairs = _mm256_add_epi16(
                            pairs,
                            _mm256_maddubs_epi16(
                                _mm256_sign_epi8(q_lo, q_lo),
                                _mm256_sign_epi8(a_lo, q_lo),
                            ),
                        );
                        pairs = _mm256_add_epi16(
                            pairs,
                            _mm256_maddubs_epi16(
                                _mm256_sign_epi8(q_hi, q_hi),
                                _mm256_sign_epi8(a_hi, q_hi),
                            ),
                        );
                    }
                    let scales = row_pairs(sb.add(Q6K_SCALES + (2 * blk + h) * GROUP), true);
                    sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, scales));
                }
                let da = *a_scales.get_unchecked(b);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_set1_ps(da), acc);
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            out = _mm256_fmadd_ps(d, acc, out);
        }
    }
    let mut dots = [0f32; GROUP];
    // SAFETY: `dots` holds eight f32.
    unsafe { _mm256_storeu_ps(dots.as_mut_ptr(), out) };
    dots
}

/// [`group_q4k`] for two activation rows at once, as [`group_q6k_x2`] is for Q6_K.
///
/// # Safety
/// As for [`group_q4k`], for both rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q4k_x2(
    w: &[u8],
    a: [&[i8]; 2],
    a_scales: [&[f32]; 2],
    a_sums: [&[i32]; 2],
) -> [[f32; GROUP]; 2] {
    let supers = a_scales[0].len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let mut out = [_mm256_setzero_ps(); 2];
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q4K_GROUP_BYTES);
            let mut acc_d = [_mm256_setzero_ps(); 2];
            let mut acc_m = [_mm256_setzero_ps(); 2];
            for j in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + j;
                let wp = sb.add(Q4K_QUANTS + j * 128);
                let ap = [a[0].as_ptr().add(b * BLOCK), a[1].as_ptr().add(b * BLOCK)];
                let mut pairs = [_mm256_setzero_si256(); 2];
                for p in 0..4 {
                    let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                    let lo = _mm256_and_si256(raw, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                    for r in 0..2 {
                        pairs[r] = _mm256_add_epi16(
                            pairs[r],
                            _mm256_maddubs_epi16(lo, broadcast4(ap[r].add(p * 8))),
                        );
                        pairs[r] = _mm256_add_epi16(
                            pairs[r],
                            _mm256_maddubs_epi16(hi, broadcast4(ap[r].add(p * 8 + 4))),
                        );
                    }
                }
                let scales = row_pairs(sb.add(Q4K_SCALES + j * GROUP), false);
                let mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                    sb.add(Q4K_MINS + j * GROUP) as *const __m128i,
                )));
                for r in 0..2 {
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
            for r in 0..2 {
                out[r] = _mm256_fmadd_ps(d, acc_d[r], out[r]);
                out[r] = _mm256_fnmadd_ps(dmin, acc_m[r], out[r]);
            }
        }
    }
    let mut dots = [[0f32; GROUP]; 2];
    for (row, out) in dots.iter_mut().zip(out) {
        // SAFETY: `row` holds eight f32.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), out) };
    }
    dots
}

/// [`group_q6k`] for two activation rows at once: each weight vector is unpacked once for
/// both, which is most of the kernel's work. Each row's arithmetic is [`group_q6k`]'s, in
/// the same order, so the results are the same bits.
///
/// # Safety
/// As for [`group_q6k`], for both rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn group_q6k_x2(w: &[u8], a: [&[i8]; 2], a_scales: [&[f32]; 2]) -> [[f32; GROUP]; 2] {
    let supers = a_scales[0].len() * BLOCK / SUPER;
    let low = _mm256_set1_epi8(0x0F);
    let top = _mm256_set1_epi8(0x30);
    let offset = _mm256_set1_epi8(32);
    let mut out = [_mm256_setzero_ps(); 2];
    for s in 0..supers {
        // SAFETY: super-block s < supers lies inside every slice, per the contract.
        unsafe {
            let sb = w.as_ptr().add(s * Q6K_GROUP_BYTES);
            let mut acc = [_mm256_setzero_ps(); 2];
            for blk in 0..SUPER / BLOCK {
                let b = s * (SUPER / BLOCK) + blk;
                let wp = sb.add(Q6K_QUANTS + blk * 192);
                let ap = [a[0].as_ptr().add(b * BLOCK), a[1].as_ptr().add(b * BLOCK)];
                let mut sum = [_mm256_setzero_si256(); 2];
                for h in 0..2 {
                    let hv = _mm256_loadu_si256(wp.add(128 + h * 32) as *const __m256i);
                    let mut pairs = [_mm256_setzero_si256(); 2];
                    for k in 0..2 {
                        let p = 2 * h + k;
                        let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                        let (top_lo, top_hi) = if k == 0 {
                            (_mm256_slli_epi16(hv, 4), _mm256_slli_epi16(hv, 2))
                        } else {
                            (hv, _mm256_srli_epi16(hv, 2))
                        };
                        let q_lo = _mm256_sub_epi8(
                            _mm256_or_si256(
                                _mm256_and_si256(raw, low),
                                _mm256_and_si256(top_lo, top),
                            ),
                            offset,
                        );
                        let q_hi = _mm256_sub_epi8(
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(raw, 4), low),
                                _mm256_and_si256(top_hi, top),
                            ),
                            offset,
                        );
                        let (abs_lo, abs_hi) =
                            (_mm256_sign_epi8(q_lo, q_lo), _mm256_sign_epi8(q_hi, q_hi));
                        for r in 0..2 {
                            let a_lo = broadcast4(ap[r].add(p * 8));
                            let a_hi = broadcast4(ap[r].add(p * 8 + 4));
                            pairs[r] = _mm256_add_epi16(
                                pairs[r],
                                _mm256_maddubs_epi16(abs_lo, _mm256_sign_epi8(a_lo, q_lo)),
                            );
                            pairs[r] = _mm256_add_epi16(
                                pairs[r],
                                _mm256_maddubs_epi16(abs_hi, _mm256_sign_epi8(a_hi, q_hi)),
                            );
                        }
                    }
                    let scales = row_pairs(sb.add(Q6K_SCALES + (2 * blk + h) * GROUP), true);
                    for r in 0..2 {
                        sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(pairs[r], scales));
                    }
                }
                for r in 0..2 {
                    let da = *a_scales[r].get_unchecked(b);
                    acc[r] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r]), _mm256_set1_ps(da), acc[r]);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(sb as *const __m128i));
            for r in 0..2 {
                out[r] = _mm256_fmadd_ps(d, acc[r], out[r]);
            }
        }
    }
    let mut dots = [[0f32; GROUP]; 2];
    for (row, out) in dots.iter_mut().zip(out) {
        // SAFETY: `row` holds eight f32.
        unsafe { _mm256_storeu_ps(row.as_mut_ptr(), out) };
    }
    dots
}
