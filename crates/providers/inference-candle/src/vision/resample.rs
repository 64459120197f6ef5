//! Bilinear resizing of 8-bit RGB images that reproduces Pillow's `Image.resize` bit for bit.
//!
//! The reference Mllama processor resizes with Pillow, and a model sees every rounding
//! difference of the resized pixels: the `image` crate's filters use a different kernel support
//! when downscaling and float arithmetic, which moves pixels by a few levels. So this follows
//! Pillow's own scheme: an antialiased kernel widened by the scale factor, weights normalised per
//! output pixel and then quantised to 22-bit fixed point, a horizontal pass rounded to 8 bits,
//! then a vertical pass.

use image::RgbImage;

/// Fractional bits of the fixed-point weights: 32 bits less 8 for the pixel and 2 of headroom
/// for the sum of a kernel's weights overshooting 1.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The triangle kernel's half-width in source pixels at scale 1.
const BILINEAR_SUPPORT: f64 = 1.0;

fn bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Which source pixels, with which fixed-point weights, make each output pixel along one axis.
struct AxisKernel {
    /// Per output pixel: the first source index and how many follow.
    spans: Vec<(usize, usize)>,
    /// `spans.len()` rows of `stride` weights; only the first `span.1` of a row are used.
    weights: Vec<i32>,
    stride: usize,
}

impl AxisKernel {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        // Downscaling widens the kernel so every source pixel contributes (antialiasing).
        let filter_scale = scale.max(1.0);
        let support = BILINEAR_SUPPORT * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let mut spans = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * stride];
        let mut row = vec![0f64; stride];
        for out in 0..out_size {
            let center = (out as f64 + 0.5) * scale;
            // `as i64` truncates toward zero like the C cast the reference relies on; both ends
            // are then clamped into the image.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = end.saturating_sub(first);
            let mut total = 0.0;
            for (i, w) in row.iter_mut().enumerate().take(count) {
                *w = bilinear(((first + i) as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            let dest = &mut weights[out * stride..out * stride + count];
            for (slot, w) in dest.iter_mut().zip(&row) {
                let w = if total != 0.0 { w / total } else { *w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                // Round half away from zero, as a C cast after adding ±0.5.
                *slot = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            spans.push((first, count));
        }
        AxisKernel {
            spans,
            weights,
            stride,
        }
    }

    fn weights(&self, out: usize) -> &[i32] {
        let count = self.spans[out].1;
        &self.weights[out * self.stride..out * self.stride + count]
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `src` to `width` x `height` with Pillow's antialiased bilinear filter.
pub fn resize_bilinear(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) {
        return src.clone();
    }
    let vertical = AxisKernel::new(in_h, out_h);
    let mut rows = in_h;
    let mut row_offset = 0;
    let mut pixels: Vec<u8>;
    let src_raw = src.as_raw();
    if in_w != out_w {
        // Only the source rows the vertical pass reads are resized horizontally.
        let first_row = vertical.spans[0].0;
        let last = vertical.spans[out_h - 1];
        let end_row = last.0 + last.1;
        let horizontal = AxisKernel::new(in_w, out_w);
        pixels = vec![0u8; (end_row - first_row) * out_w * 3];
        for (y, out_row) in pixels.chunks_exact_mut(out_w * 3).enumerate() {
            let in_row = &src_raw[(first_row + y) * in_w * 3..(first_row + y + 1) * in_w * 3];
            for x in 0..out_w {
                let (start, _) = horizontal.spans[x];
                let k = horizontal.weights(x);
                for c in 0..3 {
                    let mut acc: i32 = 1 << (PRECISION_BITS - 1);
                    for (i, &w) in k.iter().enumerate() {
                        acc += i32::from(in_row[(start + i) * 3 + c]) * w;
                    }
                    out_row[x * 3 + c] = clip8(acc);
                }
            }
        }
        rows = end_row - first_row;
        row_offset = first_row;
    } else {
        pixels = src_raw.clone();
    }
    if in_h == out_h {
        return RgbImage::from_raw(width, height, pixels).expect("buffer matches dimensions");
    }
    debug_assert!(rows * out_w * 3 == pixels.len());
    let stride = out_w * 3;
    let mut out = vec![0u8; out_h * stride];
    for (y, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let (start, _) = vertical.spans[y];
        let start = start - row_offset;
        let k = vertical.weights(y);
        for (i, value) in out_row.iter_mut().enumerate() {
            let mut acc: i32 = 1 << (PRECISION_BITS - 1);
            for (j, &w) in k.iter().enumerate() {
                acc += i32::from(pixels[(start + j) * stride + i]) * w;
            }
            *value = clip8(acc);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer matches dimensions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_a_copy() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 7]));
        assert_eq!(resize_bilinear(&img, 5, 4), img);
    }

    #[test]
    fn flat_colour_stays_flat_both_ways() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        for (w, h) in [(11, 7), (80, 50), (37, 60), (5, 23)] {
            let out = resize_bilinear(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [200, 10, 99]), "{w}x{h}");
        }
    }

    #[test]
    fn downscale_by_two_averages_pairs() {
        // At scale 2 the widened kernel covers four source pixels with weights 1/8, 3/8, 3/8,
        // 1/8; on a two-level stripe pattern that lands halfway.
        let img = RgbImage::from_fn(8, 1, |x, _| {
            image::Rgb([if x % 2 == 0 { 0 } else { 200 }; 3])
        });
        let out = resize_bilinear(&img, 4, 1);
        assert_eq!(out.get_pixel(1, 0).0, [100; 3]);
    }
}
