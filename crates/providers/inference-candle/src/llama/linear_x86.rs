//! The AVX2 kernels of [`super`] for Q8_0 and Q4_0 groups of eight interleaved rows.

use std::arch::x86_64::*;

use super::{BLOCK, GROUP};

/// Bytes ahead of the weights being multiplied whose cache lines the kernels request.
///
/// A decode step streams every weight once, and at two threads the kernels' arithmetic
/// leaves too few loads in flight for the hardware prefetcher alone to keep memory busy:
/// asking for the lines 2 KiB ahead took a 1B Q8_0 decode step from about 52 to 48 ms here.
const PREFETCH_AHEAD: usize = 2048;

/// Requests the `LINES` cache lines [`PREFETCH_AHEAD`] bytes after `p`. A prefetch never
/// faults, so past the end of the weights it costs nothing.
#[inline(always)]
pub(in crate::llama) fn prefetch<const LINES: usize>(p: *const u8) {
    for line in 0..LINES {
        let at = p.wrapping_add(PREFETCH_AHEAD + 64 * line);
        // SAFETY: SSE is part of x86-64, and a prefetch reads nothing the program sees.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at as *const i8) };
    }
}

/// Four activation bytes at `p`, repeated in every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    // SAFETY: four readable bytes at `p`, per the callers' contracts.
    _mm256_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

/// Dot products of a Q8_0 group with `R` activation rows (`a[r]` quants, `a_scales[r]` block
/// scales): each weight vector is loaded and its sign moved once for all rows, and each row's
/// sums are formed exactly as with one row, so results are the same bits.
///
/// # Safety
/// AVX2 and FMA must be available; `w` holds `nb` Q8_0 group blocks, `ws` `nb * 8` scales,
/// each `a[r]` `nb * 32` quants and each `a_scales[r]` `nb` scales, `nb = a_scales[0].len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rows_q8<const R: usize>(
    w: &[u8],
    ws: &[f32],
    a: [&[i8]; R],
    a_scales: [&[f32]; R],
) -> [[f32; GROUP]; R] {
    let nb = a_scales[0].len();
    debug_assert!(w.len() >= nb * 256 && ws.len() >= nb * GROUP);
    debug_assert!((0..R).all(|r| a[r].len() >= nb * BLOCK && a_scales[r].len() >= nb));
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for b in 0..nb {
        // SAFETY: block b < nb lies inside every slice, per the contract.
        unsafe {
            let wp = w.as_ptr().add(b * 256);
            prefetch::<4>(wp);
            let mut sum = [_mm256_setzero_si256(); R];
            for c in 0..8 {
                let x = _mm256_loadu_si256(wp.add(c * 32) as *const __m256i);
                // maddubs wants unsigned × signed: move the weight's sign onto each row's y.
                let magnitude = _mm256_sign_epi8(x, x);
                for r in 0..R {
                    let y = broadcast4(a[r].as_ptr().add(b * BLOCK + c * 4));
                    let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(y, x));
                    sum[r] = _mm256_add_epi32(sum[r], _mm256_madd_epi16(pairs, ones));
                }
            }
            let dw = _mm256_loadu_ps(ws.as_ptr().add(b * GROUP));
            for r in 0..R {
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(*a_scales[r].get_unchecked(b)));
                acc[r][b & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum[r]), acc[r][b & 1]);
            }
        }
    }
    let mut out = [[0f32; GROUP]; R];
    for r in 0..R {
        // SAFETY: `out[r]` holds eight f32.
        unsafe { _mm256_storeu_ps(out[r].as_mut_ptr(), _mm256_add_ps(acc[r][0], acc[r][1])) };
    }
    out
}

/// [`rows_q8`] for Q4_0: each weight vector's nibbles are split once for all rows.
///
/// # Safety
/// As for [`rows_q8`], with `w` holding `nb` Q4_0 group blocks and each `a_sums[r]` `nb`
/// sums.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn rows_q4<const R: usize>(
    w: &[u8],
    ws: &[f32],
    a: [&[i8]; R],
    a_scales: [&[f32]; R],
    a_sums: [&[i32]; R],
) -> [[f32; GROUP]; R] {
    let nb = a_scales[0].len();
    debug_assert!(w.len() >= nb * 128 && ws.len() >= nb * GROUP);
    debug_assert!((0..R).all(|r| a[r].len() >= nb * BLOCK && a_sums[r].len() >= nb));
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    // Separate accumulators for even and odd blocks and for the offset keep the FMA
    // latency chains short enough to hide.
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut acc_offset = [_mm256_setzero_ps(); R];
    for b in 0..nb {
        // SAFETY: block b < nb lies inside every slice, per the contract.
        unsafe {
            let wp = w.as_ptr().add(b * 128);
            prefetch::<2>(wp);
            // Unsigned nibbles (0..=15) times signed bytes: each 16-bit pair sum stays
            // below 2 * 15 * 128, so the eight products of a block add up in 16 bits.
            let mut pairs = [_mm256_setzero_si256(); R];
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                let lo = _mm256_and_si256(raw, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                for r in 0..R {
                    let ap = a[r].as_ptr().add(b * BLOCK);
                    pairs[r] = _mm256_add_epi16(
                        pairs[r],
                        _mm256_maddubs_epi16(lo, broadcast4(ap.add(p * 8))),
                    );
                    pairs[r] = _mm256_add_epi16(
                        pairs[r],
                        _mm256_maddubs_epi16(hi, broadcast4(ap.add(p * 8 + 4))),
                    );
                }
            }
            let dw = _mm256_loadu_ps(ws.as_ptr().add(b * GROUP));
            for r in 0..R {
                let sum = _mm256_madd_epi16(pairs[r], ones);
                let da = *a_scales[r].get_unchecked(b);
                acc[r][b & 1] = _mm256_fmadd_ps(
                    _mm256_mul_ps(dw, _mm256_set1_ps(da)),
                    _mm256_cvtepi32_ps(sum),
                    acc[r][b & 1],
                );
                // The nibbles are the weights plus 8: take 8 × Σa back out.
                let offset = -8.0 * *a_sums[r].get_unchecked(b) as f32 * da;
                acc_offset[r] = _mm256_fmadd_ps(dw, _mm256_set1_ps(offset), acc_offset[r]);
            }
        }
    }
    let mut out = [[0f32; GROUP]; R];
    for r in 0..R {
        let total = _mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), acc_offset[r]);
        // SAFETY: `out[r]` holds eight f32.
        unsafe { _mm256_storeu_ps(out[r].as_mut_ptr(), total) };
    }
    out
}
