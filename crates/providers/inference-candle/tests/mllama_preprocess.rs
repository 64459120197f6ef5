//! Llama 3.2 Vision image preprocessing against the reference processor's output, committed
//! under tests/fixtures/mllama by scripts/fixtures/mllama.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use llama_stack_core::ErrorKind;
use llama_stack_provider_inference_candle::vision::{
    ImageLimits, MllamaImageConfig, decode_image, preprocess_image,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mllama")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn tensors(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join(name), &Device::Cpu).unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn floats(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn decode(name: &str) -> RgbImage {
    decode_image(&read(name), &ImageLimits::default()).unwrap()
}

fn refused(bytes: &[u8], limits: &ImageLimits) -> llama_stack_core::Error {
    match decode_image(bytes, limits) {
        Ok(img) => panic!("a {}x{} image was accepted", img.width(), img.height()),
        Err(err) => err,
    }
}

/// The reference pixel tensor's valid tiles, rebuilt from the 8-bit levels the fixture stores
/// (the generator checks that this reproduces the reference's float32 values exactly).
fn reference_tiles(name: &str, config: &MllamaImageConfig) -> Vec<f32> {
    let levels = image::open(fixtures().join(name)).unwrap().into_rgb8();
    let tile = config.tile_size as usize;
    let tiles = levels.height() as usize / tile;
    let mut out = vec![0f32; tiles * 3 * tile * tile];
    for (i, pixel) in levels.pixels().enumerate() {
        let (slot, y, x) = (i / (tile * tile), (i / tile) % tile, i % tile);
        for c in 0..3 {
            let scaled = (f64::from(pixel.0[c]) * (1.0 / 255.0)) as f32;
            out[((slot * 3 + c) * tile + y) * tile + x] =
                (scaled - config.image_mean[c]) / config.image_std[c];
        }
    }
    out
}

struct Difference {
    max: f32,
    differing: usize,
}

fn difference(ours: &[f32], reference: &[f32]) -> Difference {
    assert_eq!(ours.len(), reference.len());
    let mut diff = Difference {
        max: 0.0,
        differing: 0,
    };
    for (a, b) in ours.iter().zip(reference) {
        let d = (a - b).abs();
        diff.max = diff.max.max(d);
        diff.differing += usize::from(d != 0.0);
    }
    diff
}

/// Checks one fixture image's preprocessing, from `decoded` pixels, against the reference and
/// returns how far its pixels are from it.
fn check_image(name: &str, decoded: &RgbImage) -> Difference {
    let config = MllamaImageConfig::default();
    let ours = preprocess_image(decoded, &config);
    let stem = name.replace('.', "_");
    let reference = tensors(&format!("{stem}.ref.safetensors"));

    let num_tiles = ints(&reference["num_tiles"])[0] as usize;
    assert_eq!(ours.num_tiles, num_tiles, "{name}: num_tiles");
    assert_eq!(
        i64::from(ours.aspect_ratio_id),
        ints(&reference["aspect_ratio_ids"])[0],
        "{name}: aspect_ratio_id"
    );
    let mask: Vec<i64> = ours
        .aspect_ratio_mask
        .iter()
        .map(|&m| i64::from(m))
        .collect();
    assert_eq!(mask, ints(&reference["aspect_ratio_mask"]), "{name}: mask");
    // The reference shape is [batch, images, tiles, 3, H, W]; ours is one image's.
    let shape = ints(&reference["pixel_values_shape"]);
    let shape: Vec<usize> = shape[2..].iter().map(|&d| d as usize).collect();
    assert_eq!(ours.shape.to_vec(), shape, "{name}: shape");

    let tile_len = 3 * 560 * 560;
    let (valid, padding) = ours.pixel_values.split_at(num_tiles * tile_len);
    assert!(
        padding.iter().all(|&v| v == 0.0),
        "{name}: empty tile slots must be zero"
    );

    // The float32 excerpts check the normalisation independently of the level encoding.
    let first_rows: Vec<f32> = (0..3)
        .flat_map(|c| valid[c * 560 * 560..c * 560 * 560 + 4 * 560].to_vec())
        .collect();
    let last = &valid[(num_tiles - 1) * tile_len..];
    let last_rows: Vec<f32> = (0..3)
        .flat_map(|c| last[c * 560 * 560 + 556 * 560..(c + 1) * 560 * 560].to_vec())
        .collect();
    let excerpt = difference(&first_rows, &floats(&reference["first_tile_rows"]));
    let excerpt_end = difference(&last_rows, &floats(&reference["last_tile_rows"]));

    let whole = difference(
        valid,
        &reference_tiles(&format!("{stem}.tiles.png"), &config),
    );
    assert!(
        excerpt.max <= whole.max && excerpt_end.max <= whole.max,
        "{name}: excerpts differ more than the whole"
    );
    eprintln!(
        "{name}: {} tiles, max |ours - reference| = {:e}, {} of {} values differ",
        num_tiles,
        whole.max,
        whole.differing,
        valid.len()
    );
    whole
}

// Decoding and resampling follow the reference bit for bit for lossless formats, so their
// tensors must be identical, not merely close.
#[test]
fn lossless_images_match_the_reference_exactly() {
    for name in [
        "small.png",
        "square.webp",
        "wide.gif",
        "palette.png",
        "gray.png",
        "alpha.png",
    ] {
        let diff = check_image(name, &decode(name));
        assert_eq!(diff.max, 0.0, "{name}: {} values differ", diff.differing);
    }
}

#[test]
fn jpeg_preprocessing_matches_the_reference_exactly() {
    // From the pixels the reference decoded, the rest of the pipeline must agree exactly.
    let reference_pixels = decode("portrait_jpg.decoded.png");
    let diff = check_image("portrait.jpg", &reference_pixels);
    assert_eq!(diff.max, 0.0, "{} values differ", diff.differing);
}

#[test]
fn jpeg_decoding_differs_from_the_reference_only_by_rounding() {
    // Our JPEG decoder and the reference's (libjpeg-turbo, through Pillow) differ in IDCT
    // rounding and chroma upsampling, by a few levels at most.
    let reference_pixels = decode("portrait_jpg.decoded.png");
    let ours = decode("portrait.jpg");
    let level_diffs: Vec<u8> = ours
        .as_raw()
        .iter()
        .zip(reference_pixels.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let levels = level_diffs.iter().copied().max().unwrap();
    let mut histogram = [0usize; 256];
    for &d in &level_diffs {
        histogram[usize::from(d)] += 1;
    }
    eprintln!(
        "portrait.jpg decoding: max {levels} levels; values by difference {:?} of {}",
        &histogram[..=usize::from(levels)],
        level_diffs.len()
    );
    assert!(levels <= 6, "decoded pixels differ by {levels} levels");

    // Bilinear resampling is a weighted average with weights summing to one, so it cannot
    // widen a difference beyond its input's plus one level of rounding; normalisation divides
    // by the channel's std.
    let config = MllamaImageConfig::default();
    let min_std = config
        .image_std
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    let tolerance = f32::from(levels + 1) / 255.0 / min_std;
    let diff = check_image("portrait.jpg", &ours);
    assert!(
        diff.max <= tolerance,
        "max difference {} over {tolerance} ({levels} levels from decoding)",
        diff.max
    );
}

#[test]
fn other_tile_sizes_match_the_reference() {
    // The tiny model's tiles are 112 pixels; the reference tensors it was run on are kept
    // whole in its reference file.
    let config = MllamaImageConfig {
        tile_size: 112,
        ..MllamaImageConfig::default()
    };
    let ours = preprocess_image(&decode("alpha.png"), &config);
    let reference = tensors("tiny-model.reference.safetensors");
    assert_eq!(
        i64::from(ours.aspect_ratio_id),
        ints(&reference["aspect_ratio_ids"])[0]
    );
    let diff = difference(&ours.pixel_values, &floats(&reference["pixel_values"]));
    assert_eq!(diff.max, 0.0, "{} values differ", diff.differing);
}

#[test]
fn oversized_images_are_refused_with_a_clear_error() {
    let bytes = read("portrait.jpg");
    let too_many_pixels = ImageLimits {
        max_pixels: 600 * 900 - 1,
        ..ImageLimits::default()
    };
    let err = refused(&bytes, &too_many_pixels);
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("600x900") && err.message().contains("resize it"),
        "{}",
        err.message()
    );

    let too_many_bytes = ImageLimits {
        max_bytes: 1000,
        ..ImageLimits::default()
    };
    let err = refused(&bytes, &too_many_bytes);
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(
        err.message().contains("over the limit of 1000 bytes"),
        "{}",
        err.message()
    );
}

#[test]
fn corrupt_images_are_refused_with_a_clear_error() {
    for name in ["small.png", "portrait.jpg", "square.webp", "wide.gif"] {
        let bytes = read(name);
        let truncated = &bytes[..bytes.len() / 2];
        let err = refused(truncated, &ImageLimits::default());
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{name}");
        assert!(
            err.message().starts_with("image could not be read")
                && err
                    .message()
                    .contains("send a valid JPEG, PNG, WebP or GIF"),
            "{name}: {}",
            err.message()
        );
    }
    let bmp = b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0";
    let err = refused(bmp, &ImageLimits::default());
    assert!(err.message().contains("not supported"), "{}", err.message());
}

#[test]
fn tiny_model_fixture_is_complete() {
    let dir = fixtures().join("tiny-model");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "mllama");
    assert_eq!(config["image_token_index"], 512);
    assert_eq!(config["vision_config"]["image_size"], 112);
    assert_eq!(
        config["text_config"]["cross_attention_layers"],
        serde_json::json!([1])
    );
    let weights =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(weights.keys().any(|k| k.contains("vision_model")));
    assert!(weights.keys().any(|k| k.contains("cross_attn")));

    let reference = tensors("tiny-model.reference.safetensors");
    let prompt = ints(&reference["input_ids"]);
    assert!(prompt.contains(&512), "the prompt holds the image token");
    assert_eq!(reference["logits"].dims(), &[prompt.len(), 512]);
    assert_eq!(ints(&reference["greedy_tokens"]).len(), 16);
    assert_eq!(
        reference["cross_attention_mask"].dims(),
        &[1, prompt.len(), 1, 4]
    );
}
