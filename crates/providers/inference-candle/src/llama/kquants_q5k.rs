//! Q5_K, the bulk of llama.cpp's Q5_K_M files, in the layout of [`super`]: Q4_K's with a fifth
//! bit per weight.
//!
//! Per super-block of 256 columns and group of eight rows (1440 bytes; a row costs 180 bytes per
//! 256 weights, the file's 176): `d[lane]`, `dmin[lane]` as f16; `scale[j][lane]`,
//! `min[j][lane]` as bytes for the eight sub-blocks `j` of 32 columns, all as in Q4_K; then
//! per sub-block, the low four bits of each quant in four 32-byte vectors of the Q4_0 order
//! (128 bytes) and their fifth bits in one more vector (32 bytes): its byte `lane·4 + e` holds
//! at bit `2p + h` the fifth bit of the quant that vector `p` keeps at byte `lane·4 + e` in its
//! low (`h = 0`) or high (`h = 1`) nibble, so each nibble vector finds its bits at one shift.
//! Weight = `d·scale[j]·q − dmin·min[j]`, `q` in 0..=31.

use super::{BLOCK, GROUP, Q4K_MINS, Q4K_QUANTS, Q4K_SCALES, f16_at, nibble};

/// Bytes of one super-block of one group of eight rows.
pub(in crate::llama) const GROUP_BYTES: usize = Q4K_QUANTS + 8 * SUB_BYTES;
/// Bytes of one sub-block of 32 columns: nibbles, then fifth bits.
pub(in crate::llama) const SUB_BYTES: usize = 128 + 32;
/// Bytes of one super-block of one row in a file.
pub(in crate::llama) const FILE_BYTES: usize = 176;

/// Row `lane` of sub-block `blk` of group super-block `sb`: quants, `d·scale`, `dmin·min`.
pub(super) fn row_block(sb: &[u8], lane: usize, blk: usize) -> ([i32; BLOCK], f32, f32) {
    let v = &sb[Q4K_QUANTS + blk * SUB_BYTES..];
    let mut q = [0i32; BLOCK];
    for (c, q) in q.iter_mut().enumerate() {
        let bit = 2 * (c / 8) + (c % 8) / 4;
        let high = (v[128 + lane * 4 + c % 4] >> bit) & 1;
        *q = (nibble(v, lane, c) | (high << 4)) as i32;
    }
    let sc = sb[Q4K_SCALES + blk * GROUP + lane] as f32;
    let m = sb[Q4K_MINS + blk * GROUP + lane] as f32;
    (q, f16_at(sb, lane) * sc, f16_at(&sb[16..], lane) * m)
}
