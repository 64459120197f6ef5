//! The AVX2/F16C kernels of [`super`] for row-major F16 or BF16 rows in a mapped file.

use std::arch::x86_64::*;

use super::{ItemDots, ROWS_PER_ITEM, TILE_ACTS};

/// Weight rows of a decode tile (one activation row).
const DECODE_ROWS: usize = 8;
/// Weight rows of a tile with two activation rows (13 registers).
const PAIR_ROWS: usize = 4;
/// Weight rows of a tile when a step has more activation rows (up to 15 registers).
const TILE_ROWS: usize = 2;
/// Columns of a block, with several activation rows: six rows of them take 6 KiB.
const COLUMN_BLOCK: usize = 256;

/// The eight halves at `p` as f32: F16 through F16C, BF16 (`BF`) by moving its bits into the
/// top half of an f32. The file gives no alignment the kernels could rely on: unaligned load.
///
/// # Safety
/// Sixteen readable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen<const BF: bool>(p: *const u8) -> __m256 {
    // SAFETY: per the contract.
    let v = unsafe { _mm_loadu_si128(p as *const __m128i) };
    if BF {
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
    } else {
        _mm256_cvtph_ps(v)
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

fn widen_scalar<const BF: bool>(b: u16) -> f32 {
    if BF {
        f32::from_bits((b as u32) << 16)
    } else {
        half::f16::from_bits(b).to_f32()
    }
}

/// Dot products of the rows of a work item (`rows`, at most [`ROWS_PER_ITEM`], each `k`
/// halves) with the rows of `x` (1 to [`TILE_ACTS`], each `k`).
///
/// # Safety
/// AVX2, FMA and F16C must be available; every row of `rows` holds `2 * k` bytes, and `x` a
/// whole number of rows of `k`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn item<const BF: bool>(rows: &[&[u8]], x: &[f32], k: usize) -> ItemDots {
    let acts = x.len() / k;
    debug_assert!(rows.len() <= ROWS_PER_ITEM && (1..=TILE_ACTS).contains(&acts));
    debug_assert!(rows.iter().all(|r| r.len() >= 2 * k));
    let mut out = ItemDots::default();
    let mut w = [std::ptr::null(); ROWS_PER_ITEM];
    for (w, row) in w.iter_mut().zip(rows) {
        *w = row.as_ptr();
    }
    let (x, n) = (x.as_ptr(), rows.len());
    // SAFETY: each call reads `k` halves of the rows it is given and `k` values of `acts`
    // rows of `x`, which the contract provides.
    unsafe {
        let done = match acts {
            1 => tiles::<BF, DECODE_ROWS, 1>(&w, n, x, k, &mut out),
            2 => tiles::<BF, PAIR_ROWS, 2>(&w, n, x, k, &mut out),
            3 => tiles::<BF, TILE_ROWS, 3>(&w, n, x, k, &mut out),
            4 => tiles::<BF, TILE_ROWS, 4>(&w, n, x, k, &mut out),
            5 => tiles::<BF, TILE_ROWS, 5>(&w, n, x, k, &mut out),
            6 => tiles::<BF, TILE_ROWS, 6>(&w, n, x, k, &mut out),
            _ => unreachable!("a tile of {acts} activation rows"),
        };
        // The last rows of a matrix whose rows do not fill a tile, one at a time.
        for d in done..n {
            let (w, out) = (&w[d..], &mut out[d..]);
            match acts {
                1 => tiles::<BF, 1, 1>(w, 1, x, k, out),
                2 => tiles::<BF, 1, 2>(w, 1, x, k, out),
                3 => tiles::<BF, 1, 3>(w, 1, x, k, out),
                4 => tiles::<BF, 1, 4>(w, 1, x, k, out),
                5 => tiles::<BF, 1, 5>(w, 1, x, k, out),
                6 => tiles::<BF, 1, 6>(w, 1, x, k, out),
                _ => unreachable!(),
            };
        }
    }
    out
}

/// The whole tiles of `R` of the first `n` rows at `w` with the `A` rows at `x`, into `out`;
/// answers how many rows they cover. With several activation rows the columns go in blocks
/// of [`COLUMN_BLOCK`], so the activations' block stays in L1 while every tile of the item
/// reads it: whole rows of 64 activations would not, and each tile would fetch them again
/// from L2.
///
/// # Safety
/// As for [`item`], with `n` rows at `w` and `A` rows at `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tiles<const BF: bool, const R: usize, const A: usize>(
    w: &[*const u8],
    n: usize,
    x: *const f32,
    k: usize,
    out: &mut [[f32; TILE_ACTS]],
) -> usize {
    let n_tiles = n / R;
    let mut acc = [[[_mm256_setzero_ps(); A]; R]; ROWS_PER_ITEM];
    let whole = k - k % 8;
    let step = if A == 1 { whole } else { COLUMN_BLOCK };
    let mut j0 = 0;
    // SAFETY: columns below `k` of the rows and activation rows the contract provides.
    unsafe {
        while j0 < whole {
            let j1 = whole.min(j0 + step);
            for (t, acc) in acc.iter_mut().enumerate().take(n_tiles) {
                block::<BF, R, A>(&w[t * R..], x, k, j0..j1, acc);
            }
            j0 = j1;
        }
        for (t, acc) in acc.iter().enumerate().take(n_tiles) {
            for (r, acc) in acc.iter().enumerate() {
                let (w, out) = (w[t * R + r], &mut out[t * R + r]);
                for (a, (acc, out)) in acc.iter().zip(out.iter_mut()).enumerate() {
                    *out = hsum(*acc);
                    for c in whole..k {
                        let bits = (w.add(2 * c) as *const u16).read_unaligned();
                        *out += widen_scalar::<BF>(u16::from_le(bits)) * *x.add(a * k + c);
                    }
                }
            }
        }
    }
    n_tiles * R
}

/// Columns `cols` (a multiple of eight long) of `R` weight rows at `w` with `A` activation
/// rows at `x`, added to `acc`.
///
/// Each row's next 512 bytes are prefetched a cache line at a time: with column blocks, the
/// rows of an item are read in runs of 512 bytes, too short for the hardware prefetcher,
/// and the row's next run is the one read after the item's other tiles.
///
/// # Safety
/// As for [`item`], with `R` rows at `w` and `A` rows at `x`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block<const BF: bool, const R: usize, const A: usize>(
    w: &[*const u8],
    x: *const f32,
    k: usize,
    cols: std::ops::Range<usize>,
    acc: &mut [[__m256; A]; R],
) {
    let w: [*const u8; R] = std::array::from_fn(|r| w[r]);
    let mut sums = *acc;
    let mut j = cols.start;
    // SAFETY: columns below `k` of the `R` rows and `A` activation rows; prefetches never
    // fault, so those past the end of a row are harmless.
    unsafe {
        while j + 32 <= cols.end {
            for &w in &w {
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(2 * j + 512) as *const i8);
            }
            for u in 0..4 {
                step::<BF, R, A>(&w, x, k, j + 8 * u, &mut sums);
            }
            j += 32;
        }
        while j < cols.end {
            step::<BF, R, A>(&w, x, k, j, &mut sums);
            j += 8;
        }
    }
    *acc = sums;
}

/// Columns `j..j + 8` of [`block`]: each widened weight vector feeds `A` FMAs and each
/// activation vector `R`, into `R * A` independent accumulators. The weights widen first and
/// each activation vector is loaded just before its FMAs, so the tile needs `R * A + R + 1`
/// registers: two weight rows with six activation rows fit in sixteen, and widen a weight
/// vector per six FMAs (F16's conversion is what limits the rate on some CPUs).
///
/// # Safety
/// As for [`block`], for columns below `k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn step<const BF: bool, const R: usize, const A: usize>(
    w: &[*const u8; R],
    x: *const f32,
    k: usize,
    j: usize,
    sums: &mut [[__m256; A]; R],
) {
    // SAFETY: per the contract.
    unsafe {
        let mut wv = [_mm256_setzero_ps(); R];
        for (wv, &w) in wv.iter_mut().zip(w) {
            *wv = widen::<BF>(w.add(2 * j));
        }
        for a in 0..A {
            let xv = _mm256_loadu_ps(x.add(a * k + j));
            for (sums, &wv) in sums.iter_mut().zip(&wv) {
                sums[a] = _mm256_fmadd_ps(wv, xv, sums[a]);
            }
        }
    }
}

/// The rows of a work item (at most 16, each `k` halves) in the interleaved layout of the
/// kernels of [`super::super`], zeros past the last row, into `out`: eight rows' next eight
/// columns at a time, as one 8×8 transpose of halves.
///
/// # Safety
/// AVX2 must be available; every row of `rows` holds `2 * k` bytes.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn interleave(rows: &[&[u8]], k: usize, out: &mut Vec<u16>) {
    let groups = rows.len().div_ceil(8);
    out.resize(groups * k * 8, 0);
    for (g, group) in out.chunks_exact_mut(k * 8).enumerate() {
        let lanes = &rows[g * 8..rows.len().min(g * 8 + 8)];
        if lanes.len() < 8 {
            group.fill(0);
        }
        let mut j = 0;
        if lanes.len() == 8 {
            let dst = group.as_mut_ptr() as *mut __m128i;
            // SAFETY: columns below `k` of the eight rows, and of the group's `k * 8` halves.
            unsafe {
                while j + 8 <= k {
                    let r: [__m128i; 8] =
                        std::array::from_fn(|l| _mm_loadu_si128(lanes[l][2 * j..].as_ptr() as _));
                    let a = [
                        _mm_unpacklo_epi16(r[0], r[1]),
                        _mm_unpackhi_epi16(r[0], r[1]),
                        _mm_unpacklo_epi16(r[2], r[3]),
                        _mm_unpackhi_epi16(r[2], r[3]),
                        _mm_unpacklo_epi16(r[4], r[5]),
                        _mm_unpackhi_epi16(r[4], r[5]),
                        _mm_unpacklo_epi16(r[6], r[7]),
                        _mm_unpackhi_epi16(r[6], r[7]),
                    ];
                    // Columns 0-1, 2-3, 4-5 and 6-7 of rows 0-3, then of rows 4-7.
                    let b = [
                        _mm_unpacklo_epi32(a[0], a[2]),
                        _mm_unpackhi_epi32(a[0], a[2]),
                        _mm_unpacklo_epi32(a[1], a[3]),
                        _mm_unpackhi_epi32(a[1], a[3]),
                        _mm_unpacklo_epi32(a[4], a[6]),
                        _mm_unpackhi_epi32(a[4], a[6]),
                        _mm_unpacklo_epi32(a[5], a[7]),
                        _mm_unpackhi_epi32(a[5], a[7]),
                    ];
                    for c in 0..4 {
                        let at = dst.add(j + 2 * c);
                        _mm_storeu_si128(at, _mm_unpacklo_epi64(b[c], b[c + 4]));
                        _mm_storeu_si128(at.add(1), _mm_unpackhi_epi64(b[c], b[c + 4]));
                    }
                    j += 8;
                }
            }
        }
        // Columns past the last eight, and a last group of fewer than eight rows.
        for (l, row) in lanes.iter().enumerate() {
            for c in j..k {
                group[c * 8 + l] = u16::from_le_bytes([row[2 * c], row[2 * c + 1]]);
            }
        }
    }
}
