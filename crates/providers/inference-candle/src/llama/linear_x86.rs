//! The AVX2 kernels of [`super`] for Q8_0 and Q4_0 groups of eight interleaved rows.

use std::arch::x86_64::*;

use super::{BLOCK, GROUP};

/// Four activation bytes at `p`, repeated in every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast4(p: *const i8) -> __m256i {
    // SAFETY: four readable bytes at `p`, per the callers' contracts.
    _mm256_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
}

/// # Safety
/// AVX2 and FMA must be available; `w` holds `nb` Q8_0 group blocks, `ws` `nb * 8`
/// scales, `a` `nb * 32` quants and `a_scales` `nb` scales, `nb = a_scales.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn group_q8(w: &[u8], ws: &[f32], a: &[i8], a_scales: &[f32]) -> [f32; GROUP] {
    let nb = a_scales.len();
    debug_assert!(w.len() >= nb * 256 && ws.len() >= nb * GROUP && a.len() >= nb * BLOCK);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 2];
    for b in 0..nb {
        // SAFETY: block b < nb lies inside every slice, per the contract.
        unsafe {
            let wp = w.as_ptr().add(b * 256);
            let ap = a.as_ptr().add(b * BLOCK);
            let mut sum = _mm256_setzero_si256();
            for c in 0..8 {
                let x = _mm256_loadu_si256(wp.add(c * 32) as *const __m256i);
                let y = broadcast4(ap.add(c * 4));
                // maddubs wants unsigned × signed: move the weight's sign onto y.
                let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, ones));
            }
            let d = _mm256_mul_ps(
                _mm256_loadu_ps(ws.as_ptr().add(b * GROUP)),
                _mm256_set1_ps(*a_scales.get_unchecked(b)),
            );
            acc[b & 1] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc[b & 1]);
        }
    }
    let mut out = [0f32; GROUP];
    // SAFETY: `out` holds eight f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(acc[0], acc[1])) };
    out
}

/// # Safety
/// As for [`group_q8`], with `w` holding `nb` Q4_0 group blocks and `a_sums` `nb` sums.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn group_q4(
    w: &[u8],
    ws: &[f32],
    a: &[i8],
    a_scales: &[f32],
    a_sums: &[i32],
) -> [f32; GROUP] {
    let nb = a_scales.len();
    debug_assert!(w.len() >= nb * 128 && ws.len() >= nb * GROUP && a.len() >= nb * BLOCK);
    let ones = _mm256_set1_epi16(1);
    let low = _mm256_set1_epi8(0x0F);
    // Separate accumulators for even and odd blocks and for the offset keep the FMA
    // latency chains short enough to hide.
    let mut acc = [_mm256_setzero_ps(); 2];
    let mut acc_offset = _mm256_setzero_ps();
    for b in 0..nb {
        // SAFETY: block b < nb lies inside every slice, per the contract.
        unsafe {
            let wp = w.as_ptr().add(b * 128);
            let ap = a.as_ptr().add(b * BLOCK);
            // Unsigned nibbles (0..=15) times signed bytes: each 16-bit pair sum stays
            // below 2 * 15 * 128, so the eight products of a block add up in 16 bits.
            let mut pairs = _mm256_setzero_si256();
            for p in 0..4 {
                let raw = _mm256_loadu_si256(wp.add(p * 32) as *const __m256i);
                let lo = _mm256_and_si256(raw, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
                pairs =
                    _mm256_add_epi16(pairs, _mm256_maddubs_epi16(lo, broadcast4(ap.add(p * 8))));
                pairs = _mm256_add_epi16(
                    pairs,
                    _mm256_maddubs_epi16(hi, broadcast4(ap.add(p * 8 + 4))),
                );
            }
            let sum = _mm256_madd_epi16(pairs, ones);
            let dw = _mm256_loadu_ps(ws.as_ptr().add(b * GROUP));
            let da = *a_scales.get_unchecked(b);
            acc[b & 1] = _mm256_fmadd_ps(
                _mm256_mul_ps(dw, _mm256_set1_ps(da)),
                _mm256_cvtepi32_ps(sum),
                acc[b & 1],
            );
            // The nibbles are the weights plus 8: take 8 × Σa back out.
            let offset = -8.0 * *a_sums.get_unchecked(b) as f32 * da;
            acc_offset = _mm256_fmadd_ps(dw, _mm256_set1_ps(offset), acc_offset);
        }
    }
    let total = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), acc_offset);
    let mut out = [0f32; GROUP];
    // SAFETY: `out` holds eight f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
    out
}
