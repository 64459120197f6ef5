//! Attention of a few new rows (a decode step, a speculative check) over the cached history,
//! reading keys and values where the cache keeps them: f32, f16 or q8_0, one vector at a
//! time. The tensor path would first copy the whole history of the layer into a new f32 tensor
//! (and for f16 and q8_0 convert it), then run five tensor ops with an allocation each, on
//! every layer of every step.
//!
//! Each key/value head is one work item: the query heads that share it (grouped-query
//! attention) and the new rows are scored against each key as it is read, so every stored
//! vector is read once per step.

use super::cache::History;
use super::linear::SendPtr;

/// New rows at most for which a step takes this path; longer prompt chunks are matrix
/// products, which the tensor path does better.
pub(super) const MAX_ROWS: usize = 8;

/// `q`: `(n_heads, n, head_dim)`, rotated, for the `n` rows at positions `pos..pos + n`; the
/// cache holds their keys and values already. Returns `(n, n_heads * head_dim)`.
pub(super) fn attend(
    q: &[f32],
    n: usize,
    n_heads: usize,
    pos: usize,
    keys: &History<'_>,
    values: &History<'_>,
) -> Vec<f32> {
    let dim = q.len() / (n_heads * n);
    let rep = n_heads / keys.heads;
    let scale = 1.0 / (dim as f32).sqrt();
    let mut out = vec![0f32; n * n_heads * dim];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let shape = Shape {
        n,
        n_heads,
        rep,
        dim,
        pos,
        scale,
    };
    candle_core::utils::barrier_pool().execute_chunked(keys.heads, |heads| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA were just detected.
            return unsafe { attend_heads_avx2(heads, q, &shape, keys, values, &out_ptr) };
        }
        attend_heads(heads, q, &shape, keys, values, &out_ptr);
    });
    out
}

/// The sizes of one [`attend`] call.
struct Shape {
    n: usize,
    n_heads: usize,
    /// Query heads per key/value head.
    rep: usize,
    dim: usize,
    pos: usize,
    scale: f32,
}

/// [`attend_heads`] compiled for AVX2 and FMA, which its loops vectorize to (the crate's
/// baseline is SSE2).
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn attend_heads_avx2(
    heads: std::ops::Range<usize>,
    q: &[f32],
    shape: &Shape,
    keys: &History<'_>,
    values: &History<'_>,
    out: &SendPtr,
) {
    attend_heads(heads, q, shape, keys, values, out)
}

/// Attention of the query heads sharing each key/value head in `heads`.
#[inline(always)]
fn attend_heads(
    heads: std::ops::Range<usize>,
    q: &[f32],
    shape: &Shape,
    keys: &History<'_>,
    values: &History<'_>,
    out_ptr: &SendPtr,
) {
    let &Shape {
        n,
        n_heads,
        rep,
        dim,
        pos,
        scale,
    } = shape;
    let total = pos + n;
    // Rows of this kv head: query head `h` of the group, new row `i`, at `h * n + i`.
    let rows = rep * n;
    let mut scores = vec![0f32; rows * total];
    let mut acc = vec![0f32; rows * dim];
    let mut buf = vec![0f32; dim];
    for kv in heads {
        let queries = &q[kv * rep * n * dim..(kv + 1) * rep * n * dim];
        for j in 0..total {
            let key = keys.vector(kv, j, &mut buf);
            for r in 0..rows {
                // Row i sees positions up to pos + i.
                let visible = j <= pos + r % n;
                scores[r * total + j] = if visible {
                    dot(&queries[r * dim..(r + 1) * dim], key) * scale
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
        for row in scores.chunks_exact_mut(total) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            row.iter_mut().for_each(|s| *s /= sum);
        }
        acc.fill(0.0);
        for j in 0..total {
            let value = values.vector(kv, j, &mut buf);
            for (r, acc) in acc.chunks_exact_mut(dim).enumerate() {
                let p = scores[r * total + j];
                if p != 0.0 {
                    acc.iter_mut().zip(value).for_each(|(a, v)| *a += p * v);
                }
            }
        }
        for (r, acc) in acc.chunks_exact(dim).enumerate() {
            let (head, i) = (kv * rep + r / n, r % n);
            // SAFETY: (row i, head) belongs to this kv head's item alone and lies inside
            // the n × n_heads × dim output.
            unsafe {
                let at = out_ptr.0.add((i * n_heads + head) * dim);
                std::ptr::copy_nonoverlapping(acc.as_ptr(), at, dim);
            }
        }
    }
}

/// Eight independent sums, so the loop vectorizes without reordering a single sum.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}
