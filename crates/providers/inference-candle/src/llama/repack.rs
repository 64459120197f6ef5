//! Load-time rewriting of a GGUF file's blocks into the eight-row layouts the kernels read
//! (described in [`super::linear`] and [`super::kquants`]).
//!
//! Every layout keeps four consecutive columns of a row together, so each step here moves a
//! run of four quants as one `u32`, with masks and shifts, straight from the file's bytes to
//! their place. Rewriting a byte at a time through decoded integers ran at about 250 MB/s, and
//! a 3B file spent six of its eight seconds of load there; a load is now bound by reading the
//! file.

use super::kquants::{
    Q4K_GROUP_BYTES, Q4K_MINS, Q4K_QUANTS, Q4K_SCALES, Q6K_GROUP_BYTES, Q6K_QUANTS, Q6K_SCALES,
    SUPER, q5k,
};
use super::linear::PackedKind;

/// Rows in one group.
const GROUP: usize = 8;
/// Columns per block of Q8_0 and Q4_0, and per sub-block of Q4_K and Q5_K.
const BLOCK: usize = 32;

/// Bytes of one block of one row in a file.
pub(super) fn file_block_bytes(kind: PackedKind) -> usize {
    match kind {
        PackedKind::Q8_0 => 2 + BLOCK,
        PackedKind::Q4_0 => 2 + BLOCK / 2,
        PackedKind::Q4K => 144,
        PackedKind::Q5K => q5k::FILE_BYTES,
        PackedKind::Q6K => 210,
    }
}

/// The rows of a matrix as a file holds them: one tensor's bytes, or several tensors of one
/// type and width stacked (q, k and v; gate and up), so that joined matrices are repacked
/// straight into one buffer.
pub(super) struct FileRows<'a> {
    parts: &'a [&'a [u8]],
    row_bytes: usize,
}

impl<'a> FileRows<'a> {
    /// `parts`, each a whole number of rows of `row_bytes` bytes.
    pub(super) fn new(parts: &'a [&'a [u8]], row_bytes: usize) -> FileRows<'a> {
        debug_assert!(parts.iter().all(|p| p.len() % row_bytes == 0));
        FileRows { parts, row_bytes }
    }

    pub(super) fn rows(&self) -> usize {
        self.parts.iter().map(|p| p.len() / self.row_bytes).sum()
    }

    /// Row `r`'s bytes.
    #[inline]
    pub(super) fn row(&self, mut r: usize) -> &'a [u8] {
        for part in self.parts {
            let rows = part.len() / self.row_bytes;
            if r < rows {
                return &part[r * self.row_bytes..(r + 1) * self.row_bytes];
            }
            r -= rows;
        }
        panic!("row {r} past the end of the matrix")
    }
}

#[inline(always)]
fn rd(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

#[inline(always)]
fn wr(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Four bytes of Q4_0's vector order from two runs of four file bytes: the low nibbles of
/// `lo` and `hi` (`high` false) or their high nibbles, `lo`'s in the result's low nibbles.
#[inline(always)]
fn nibbles(lo: u32, hi: u32, high: bool) -> u32 {
    const LOW: u32 = 0x0F0F_0F0F;
    let shift = if high { 4 } else { 0 };
    ((lo >> shift) & LOW) | (((hi >> shift) & LOW) << 4)
}

/// One row's 32 quants, four bits each in the low (`high` false) or high nibbles of `src`'s
/// 32 bytes, into the four 32-byte vectors of Q4_0's order at `dst`, as row `lane`.
#[inline(always)]
fn put_nibbles(dst: &mut [u8], lane: usize, src: &[u8], high: bool) {
    let (dst, src) = (&mut dst[..128], &src[..32]);
    assert!(lane < GROUP);
    for p in 0..4 {
        wr(
            dst,
            p * 32 + lane * 4,
            nibbles(rd(src, 8 * p), rd(src, 8 * p + 4), high),
        );
    }
}

/// Q8_0 or Q4_0 `rows × cols` from a file: the eight rows' f32 scales per group and block, and
/// the quants (padding rows: zero scales, and quants that decode to zero).
pub(super) fn q8_0_q4_0(kind: PackedKind, cols: usize, data: &FileRows) -> (Vec<f32>, Vec<u8>) {
    let rows = data.rows();
    let nb = cols / BLOCK;
    let groups = rows.div_ceil(GROUP);
    let src_block = file_block_bytes(kind);
    let (bb, pad) = match kind {
        PackedKind::Q8_0 => (GROUP * BLOCK, 0u8),
        PackedKind::Q4_0 => (GROUP * BLOCK / 2, 0x88),
        PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => unreachable!("a K-quant"),
    };
    let mut scales = vec![0f32; groups * nb * GROUP];
    par_groups(&mut scales, nb * GROUP, |g, out| {
        for lane in 0..GROUP.min(rows - g * GROUP) {
            let row = data.row(g * GROUP + lane);
            for (b, src) in row.chunks_exact(src_block).enumerate() {
                out[b * GROUP + lane] = half::f16::from_le_bytes([src[0], src[1]]).to_f32();
            }
        }
    });
    let mut quants = vec![pad; groups * nb * bb];
    par_groups(&mut quants, nb * bb, |g, out| {
        for lane in 0..GROUP.min(rows - g * GROUP) {
            let row = data.row(g * GROUP + lane);
            for (src, dst) in row.chunks_exact(src_block).zip(out.chunks_exact_mut(bb)) {
                let q = &src[2..];
                match kind {
                    // Vector `c` holds columns 4c..4c+4 of each row.
                    PackedKind::Q8_0 => {
                        (0..8).for_each(|c| wr(dst, c * 32 + lane * 4, rd(q, 4 * c)))
                    }
                    // Columns 0..16 are the low nibbles of the 16 bytes, 16..32 the high ones.
                    PackedKind::Q4_0 => {
                        for p in 0..4 {
                            let at = 8 * (p % 2);
                            let v = nibbles(rd(q, at), rd(q, at + 4), p >= 2);
                            wr(dst, p * 32 + lane * 4, v);
                        }
                    }
                    PackedKind::Q4K | PackedKind::Q5K | PackedKind::Q6K => unreachable!(),
                }
            }
        }
    });
    (scales, quants)
}

/// Q4_K, Q5_K or Q6_K `rows × cols` from a file, in groups of eight rows (padding rows decode
/// to zero: their `d` and `dmin` are zero).
pub(super) fn kquant(kind: PackedKind, cols: usize, data: &FileRows) -> Vec<u8> {
    let rows = data.rows();
    let supers = cols / SUPER;
    let src_bytes = file_block_bytes(kind);
    let gb = match kind {
        PackedKind::Q4K => Q4K_GROUP_BYTES,
        PackedKind::Q5K => q5k::GROUP_BYTES,
        PackedKind::Q6K => Q6K_GROUP_BYTES,
        PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!("not a K-quant"),
    };
    let mut out = vec![0u8; rows.div_ceil(GROUP) * supers * gb];
    // Groups are independent, so a load spreads them over the cores.
    par_groups(&mut out, supers * gb, |g, group| {
        for lane in 0..GROUP.min(rows - g * GROUP) {
            let row = data.row(g * GROUP + lane);
            for (src, dst) in row.chunks_exact(src_bytes).zip(group.chunks_exact_mut(gb)) {
                match kind {
                    PackedKind::Q4K => put_q4k(dst, lane, src, &src[16..144], 128),
                    PackedKind::Q5K => {
                        put_q4k(dst, lane, src, &src[48..176], q5k::SUB_BYTES);
                        put_fifth_bits(dst, lane, &src[16..48]);
                    }
                    PackedKind::Q6K => put_q6k(dst, lane, src),
                    PackedKind::Q8_0 | PackedKind::Q4_0 => unreachable!(),
                }
            }
        }
    });
    out
}

/// Row `lane` of a Q4_K-style file super-block (`src`: `d`, `dmin`, twelve bytes of packed
/// scales and mins; `qs`: the 128 bytes of nibbles) into its group super-block `dst`,
/// sub-blocks `stride` bytes apart.
fn put_q4k(dst: &mut [u8], lane: usize, src: &[u8], qs: &[u8], stride: usize) {
    dst[2 * lane..2 * lane + 2].copy_from_slice(&src[0..2]);
    dst[16 + 2 * lane..16 + 2 * lane + 2].copy_from_slice(&src[2..4]);
    let sm = &src[4..16];
    for j in 0..8 {
        // llama.cpp's get_scale_min_k4: eight 6-bit scales and mins packed in 12 bytes.
        let (sc, m) = if j < 4 {
            (sm[j] & 63, sm[j + 4] & 63)
        } else {
            (
                (sm[j + 4] & 0x0F) | ((sm[j - 4] >> 6) << 4),
                (sm[j + 4] >> 4) | ((sm[j] >> 6) << 4),
            )
        };
        dst[Q4K_SCALES + j * GROUP + lane] = sc;
        dst[Q4K_MINS + j * GROUP + lane] = m;
        // Sub-blocks 2k and 2k+1 share 32 bytes, in their low and high nibbles.
        let at = Q4K_QUANTS + j * stride;
        put_nibbles(
            &mut dst[at..at + 128],
            lane,
            &qs[(j / 2) * 32..],
            j % 2 == 1,
        );
    }
}

/// Q5_K's fifth bits (`qh`: bit `j` of byte `c` for column `c` of sub-block `j`) of row `lane`:
/// for each sub-block, byte `lane·4 + e` of its bit vector holds at bit `2p + h` the fifth bit
/// of column `8p + 4h + e`.
fn put_fifth_bits(dst: &mut [u8], lane: usize, qh: &[u8]) {
    for j in 0..8 {
        let mut bits = 0u32;
        for p in 0..4 {
            for h in 0..2 {
                bits |= ((rd(qh, 8 * p + 4 * h) >> j) & 0x0101_0101) << (2 * p + h);
            }
        }
        wr(dst, Q4K_QUANTS + j * q5k::SUB_BYTES + 128 + lane * 4, bits);
    }
}

/// Row `lane` of a Q6_K file super-block (`ql` 128 bytes, `qh` 64, 16 signed scales, `d`).
fn put_q6k(dst: &mut [u8], lane: usize, src: &[u8]) {
    let (ql, qh, sc) = (&src[0..128], &src[128..192], &src[192..208]);
    dst[2 * lane..2 * lane + 2].copy_from_slice(&src[208..210]);
    for (s, &scale) in sc.iter().enumerate() {
        dst[Q6K_SCALES + s * GROUP + lane] = scale;
    }
    for blk in 0..8 {
        // llama.cpp's dequantize_row_q6_K: two halves of 128 columns, each four quarters of 32;
        // quarter `k` takes the low (k < 2) or high nibbles of 32 bytes of `ql` and bits
        // 2k..2k+2 of 32 bytes of `qh`.
        let (half, quarter) = (blk / 4, blk % 4);
        let base = Q6K_QUANTS + blk * 192;
        let low = &ql[half * 64 + 32 * (quarter % 2)..];
        put_nibbles(&mut dst[base..base + 128], lane, low, quarter >= 2);
        let high = &qh[half * 32..half * 32 + 32];
        for h in 0..2 {
            let mut v = 0u32;
            for k in 0..4 {
                v |= ((rd(high, 16 * h + 4 * k) >> (2 * quarter)) & 0x0303_0303) << (2 * k);
            }
            wr(dst, base + 128 + h * 32 + lane * 4, v);
        }
    }
}

/// Calls `fill(g, chunk)` for each `group_len`-long chunk `g` of `out`, the chunks spread over
/// the cores in contiguous runs.
pub(super) fn par_groups<T: Send>(
    out: &mut [T],
    group_len: usize,
    fill: impl Fn(usize, &mut [T]) + Sync,
) {
    if group_len == 0 {
        return;
    }
    let groups = out.len() / group_len;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = groups.div_ceil(threads.min(groups).max(1)).max(1);
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per * group_len).enumerate() {
            let fill = &fill;
            scope.spawn(move || {
                for (k, group) in chunk.chunks_mut(group_len).enumerate() {
                    fill(t * per + k, group);
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use crate::llama::linear::tests::random;
    use crate::llama::linear::{Fused, Linear};

    /// Matrices stacked while they are repacked from their file bytes multiply exactly as each
    /// one repacked on its own, for every type our kernels read.
    #[test]
    fn parts_repacked_into_one_buffer_give_each_parts_own_product() {
        let cols = 512;
        let x = Tensor::from_vec(random(5 * cols, 31), (5, cols), &Device::Cpu).unwrap();
        for dtype in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q4K,
            GgmlDType::Q5K,
            GgmlDType::Q6K,
            GgmlDType::F16,
            GgmlDType::BF16,
        ] {
            let parts: Vec<QTensor> = [(16, 1), (8, 2), (24, 3)]
                .iter()
                .map(|&(rows, seed)| {
                    let w = Tensor::from_vec(random(rows * cols, seed), (rows, cols), &Device::Cpu);
                    QTensor::quantize(&w.unwrap(), dtype).unwrap()
                })
                .collect();
            let bytes: Vec<_> = parts
                .iter()
                .map(|q| q.data().unwrap().into_owned())
                .collect();
            let stacked: Vec<(usize, &[u8])> = parts
                .iter()
                .zip(&bytes)
                .map(|(q, b)| (q.shape().dims()[0], &b[..]))
                .collect();
            let joined = Linear::from_ggml_parts(dtype, cols, &stacked)
                .unwrap()
                .unwrap();
            let joined = Fused::joined(vec![16, 8, 24], joined);
            let separate: Vec<Tensor> = parts
                .into_iter()
                .map(|q| Linear::from_qtensor(q).unwrap().forward(&x).unwrap())
                .collect();
            for (got, want) in joined.forward(&x).unwrap().iter().zip(&separate) {
                assert_eq!(got.dims(), want.dims());
                let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert!(
                    got == want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    "{dtype:?}"
                );
            }
        }
    }

    #[test]
    fn a_tensor_of_the_wrong_length_is_an_error() {
        let err = Linear::from_ggml(GgmlDType::Q4K, 8, 256, &[0u8; 100]).unwrap_err();
        assert!(
            err.to_string()
                .contains("8x256 Q4K tensor of 100 bytes, not 1152"),
            "{err}"
        );
        // Rows the format's blocks do not divide are left to candle.
        assert!(
            Linear::from_ggml(GgmlDType::Q4K, 8, 128, &[0u8; 576])
                .unwrap()
                .is_none()
        );
    }
}
