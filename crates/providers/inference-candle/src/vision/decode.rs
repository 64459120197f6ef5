//! Turning the bytes a client sent into RGB pixels, refusing what is too large to hold.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, RgbImage};
use llama_stack_core::{Error, Result};
use serde::Deserialize;

/// How large an image a request may carry. Checked before any pixel is decoded, so a small
/// file that claims huge dimensions is refused without allocating for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageLimits {
    /// Largest encoded image accepted, in bytes (after base64 decoding). Default 20 MiB.
    pub max_bytes: usize,
    /// Largest decoded image accepted, in pixels (width × height). Default 40 million, about
    /// 8000 × 5000; the model only sees at most four 560 × 560 tiles, so bigger images add
    /// decoding time and memory without adding detail.
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
        }
    }
}

/// The formats a request may carry; anything else is refused by name.
const ACCEPTED: [ImageFormat; 4] = [
    ImageFormat::Jpeg,
    ImageFormat::Png,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

/// Decodes a JPEG, PNG, WebP or GIF (its first frame) into 8-bit RGB.
///
/// Grayscale and palette images are expanded to RGB, and transparent ones are laid on a white
/// background, as the reference processor's conversion to RGB does.
pub fn decode_image(bytes: &[u8], limits: &ImageLimits) -> Result<RgbImage> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::invalid(format!(
            "image is {} bytes, over the limit of {} bytes (images.max_bytes); send a smaller or \
             more compressed image",
            bytes.len(),
            limits.max_bytes
        ))
        .with_context("image_bytes", bytes.len().to_string()));
    }
    let format =
        image::guess_format(bytes).map_err(|_| unreadable("its format is not recognised"))?;
    if !ACCEPTED.contains(&format) {
        return Err(Error::invalid(format!(
            "image format {format:?} is not supported; send JPEG, PNG, WebP or GIF"
        )));
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(unreadable("the JPEG data ends before the image does"));
    }
    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|e| unreadable(&format!("its header could not be read ({e})")))?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(Error::invalid(format!(
            "image is {width}x{height} ({pixels} pixels), over the limit of {} pixels \
             (images.max_pixels); resize it before sending",
            limits.max_pixels
        ))
        .with_context("image_pixels", pixels.to_string()));
    }
    let mut reader = reader();
    // The header was checked above; this bounds what a decoder may allocate if the body
    // disagrees with it (8 bytes a pixel covers 16-bit RGBA).
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(pixels.saturating_mul(8).max(1 << 20));
    reader.limits(decoder_limits);
    let decoded = reader
        .decode()
        .map_err(|e| unreadable(&format!("it could not be decoded ({e})")))?;
    if decoded.color().has_alpha() {
        Ok(flatten_onto_white(&decoded.into_rgba8()))
    } else {
        Ok(decoded.into_rgb8())
    }
}

/// Composites a translucent image onto white, as the reference processor does before dropping
/// alpha, with Pillow's integer arithmetic so the pixels agree exactly: the source's weight is
/// kept with 7 extra bits and the division by 255 is a rounded shift.
fn flatten_onto_white(rgba: &image::RgbaImage) -> RgbImage {
    const EXTRA_BITS: u32 = 7;
    let div255 = |v: u32| ((v >> 8) + v) >> 8;
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        let source_weight = a << EXTRA_BITS;
        let white_weight = (255 << EXTRA_BITS) - source_weight;
        let blend = |c: u8| {
            let mixed = u32::from(c) * source_weight + 255 * white_weight;
            (div255(mixed + (0x80 << EXTRA_BITS)) >> EXTRA_BITS) as u8
        };
        image::Rgb([blend(r), blend(g), blend(b)])
    })
}

/// Whether an end-of-image marker follows the last start-of-scan marker. The JPEG decoder
/// fills a cut-off image with grey rather than failing, which would hand the model a picture
/// the client never sent. Inside entropy-coded data a 0xFF byte is only ever followed by 0x00
/// or a restart marker, so neither marker can appear there by accident, and an embedded
/// thumbnail's markers sit before the main image's scans.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last = |marker: u8| bytes.windows(2).rposition(|w| w == [0xFF, marker]);
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end > scan,
        _ => false,
    }
}

fn unreadable(why: &str) -> Error {
    Error::invalid(format!(
        "image could not be read: {why}; send a valid JPEG, PNG, WebP or GIF file"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(width, height, image::Rgb([1, 2, 3]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_a_png() {
        let img = decode_image(&png(3, 2), &ImageLimits::default()).unwrap();
        assert_eq!(img.dimensions(), (3, 2));
        assert_eq!(img.get_pixel(2, 1).0, [1, 2, 3]);
    }

    #[test]
    fn transparency_becomes_white() {
        let img = image::RgbaImage::from_fn(3, 1, |x, _| {
            image::Rgba([0, 100, 255, [0, 128, 255][x as usize]])
        });
        let flat = flatten_onto_white(&img);
        assert_eq!(flat.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(flat.get_pixel(1, 0).0, [127, 177, 255]);
        assert_eq!(flat.get_pixel(2, 0).0, [0, 100, 255]);
    }

    #[test]
    fn refuses_too_many_bytes() {
        let bytes = png(3, 2);
        let limits = ImageLimits {
            max_bytes: bytes.len() - 1,
            ..ImageLimits::default()
        };
        let err = decode_image(&bytes, &limits).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(
            err.message().contains("bytes, over the limit"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn refuses_unknown_bytes() {
        let err = decode_image(b"definitely not an image", &ImageLimits::default()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(
            err.message().contains("not recognised"),
            "{}",
            err.message()
        );
    }
}
