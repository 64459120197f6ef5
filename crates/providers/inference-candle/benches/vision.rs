//! Llama 3.2 Vision on `inline::candle`: image encoding, time to first token and decode speed
//! with an image in context, on random weights of a real model's shape.
//!
//! `cargo bench -p llama-stack-provider-inference-candle --bench vision` builds the 11B Vision
//! shape in memory (no checkpoint is written: 11B f32 weights would not fit on disk here),
//! quantizing the text decoder as it is built, and prints a table. `VISION_BENCH_SHAPE=11b|tiny`,
//! `VISION_BENCH_QUANT=q4_0|q8_0|f32`, `VISION_BENCH_TILES=1,4` and `VISION_BENCH_TOKENS=16`
//! tune it. `VISION_BENCH_VISION_LAYERS=1` keeps one local and one global vision layer: the
//! image still becomes the same number of vision tokens, so decode and prefill cost what they
//! cost with the full encoder, without waiting minutes for it.

use std::sync::Mutex;
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use image::{Rgb, RgbImage};
use llama_stack_provider_inference_candle::vision::mllama::{
    MllamaConfig, MllamaImages, MllamaModel, cross_attention_mask,
};
use llama_stack_provider_inference_candle::vision::{MllamaImageConfig, preprocess_image};
use rand::{Rng, SeedableRng};

/// Every tensor the model asks for, drawn on demand: ones for norms and gates, small uniform
/// values for the rest. Each is dropped (or quantized) by the loader as soon as it is used, so
/// memory holds the model once, as a checkpoint load would.
struct RandomWeights(Mutex<rand::rngs::SmallRng>);

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _hint: Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let values: Vec<f32> = if n == 1 || name.contains("norm") && name.ends_with("weight") {
            vec![1.0; n]
        } else {
            let mut rng = self.0.lock().unwrap();
            let bound = if name.contains("embedding") {
                0.5
            } else {
                0.035
            };
            (0..n).map(|_| rng.random_range(-bound..bound)).collect()
        };
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: the random backend needs a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        true
    }
}

fn config(shape: &str) -> MllamaConfig {
    let json = match shape {
        // Llama-3.2-11B-Vision's config.json, the fields the model reads.
        "11b" => serde_json::json!({
            "model_type": "mllama",
            "image_token_index": 128256,
            "text_config": {
                "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
                "num_hidden_layers": 40, "num_attention_heads": 32, "num_key_value_heads": 8,
                "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
                "max_position_embeddings": 131072, "rope_theta": 500000.0,
                "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                "tie_word_embeddings": false
            },
            "vision_config": {
                "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                "num_global_layers": 8, "attention_heads": 16, "image_size": 560,
                "patch_size": 14, "max_num_tiles": 4, "vision_output_dim": 7680,
                "intermediate_layers_indices": [3, 7, 15, 23, 30]
            }
        }),
        _ => serde_json::json!({
            "model_type": "mllama",
            "image_token_index": 128256,
            "text_config": {
                "vocab_size": 128256, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                "cross_attention_layers": [1], "max_position_embeddings": 8192,
                "tie_word_embeddings": false
            },
            "vision_config": {
                "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_global_layers": 1, "attention_heads": 2, "image_size": 112,
                "patch_size": 14, "max_num_tiles": 4, "vision_output_dim": 96,
                "intermediate_layers_indices": [0, 1]
            }
        }),
    };
    serde_json::from_value(json).unwrap()
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A gradient photo-like image `tiles` tiles large at the model's tile size.
fn image(tile: u32, tiles: usize) -> RgbImage {
    let (w, h) = if tiles == 1 {
        (tile, tile)
    } else {
        (2 * tile, 2 * tile)
    };
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    })
}

fn main() {
    let shape = std::env::var("VISION_BENCH_SHAPE").unwrap_or_else(|_| "11b".into());
    let quant_name = std::env::var("VISION_BENCH_QUANT").unwrap_or_else(|_| "q4_0".into());
    let tokens: usize = std::env::var("VISION_BENCH_TOKENS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(16);
    let tile_counts: Vec<usize> = std::env::var("VISION_BENCH_TILES")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    let quant = match quant_name.as_str() {
        "q8_0" => Some(GgmlDType::Q8_0),
        "q4_0" => Some(GgmlDType::Q4_0),
        _ => None,
    };
    let mut config = config(&shape);
    config.text_config.weight_quant = quant;
    if let Some(layers) = std::env::var("VISION_BENCH_VISION_LAYERS")
        .ok()
        .and_then(|l| l.parse::<usize>().ok())
    {
        let vision = &mut config.vision_config;
        vision.num_hidden_layers = layers;
        vision.num_global_layers = layers;
        for index in vision.intermediate_layers_indices.iter_mut() {
            *index = (*index).min(layers - 1);
        }
        println!("vision encoder cut to {layers} local and {layers} global layers");
    }
    let threads = candle_core::utils::get_num_threads();
    let backend: Box<dyn SimpleBackend> = Box::new(RandomWeights(Mutex::new(
        rand::rngs::SmallRng::seed_from_u64(1),
    )));
    let started = Instant::now();
    let vb = VarBuilder::from_backend(backend, DType::F32, Device::Cpu);
    let model = MllamaModel::new(config.clone(), vb).unwrap();
    let build_s = started.elapsed().as_secs_f64();
    let rss = rss_mib();
    println!(
        "shape {shape}, text decoder {quant_name}, {threads} threads: built in {build_s:.1} s, RSS {rss:.0} MiB"
    );
    println!("| tiles | encode s | prefill s (prompt tokens) | TTFT s | decode tok/s |");
    println!("|---|---|---|---|---|");
    let image_config = MllamaImageConfig {
        tile_size: config.vision_config.image_size as u32,
        max_image_tiles: config.vision_config.max_num_tiles,
        ..MllamaImageConfig::default()
    };
    // "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>Describe ..."
    let mut prompt: Vec<u32> = vec![128000, 128006, 882, 128007, 271, config.image_token_index];
    prompt.extend((0..24u32).map(|i| 1000 + i * 37));
    prompt.extend([128009, 128006, 78191, 128007, 271]);
    for &tiles in &tile_counts {
        let input = preprocess_image(&image(image_config.tile_size, tiles), &image_config);
        assert_eq!(input.num_tiles, tiles);
        let images =
            MllamaImages::from_preprocessed(std::slice::from_ref(&input), &Device::Cpu).unwrap();
        let t = Instant::now();
        let mut sequence = model.new_sequence(Some(&images)).unwrap();
        let encode_s = t.elapsed().as_secs_f64();
        let mask = cross_attention_mask(
            &prompt,
            config.image_token_index,
            &[input.num_tiles],
            input.shape[0],
        );
        let t = Instant::now();
        let logits = model
            .forward_last(&mut sequence, &prompt, Some(&mask), 1)
            .unwrap();
        let prefill_s = t.elapsed().as_secs_f64();
        let mut next = logits
            .get(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        let t = Instant::now();
        for _ in 0..tokens {
            let logits = model.forward(&mut sequence, &[next], None).unwrap();
            next = logits
                .get(0)
                .unwrap()
                .argmax(0)
                .unwrap()
                .to_scalar::<u32>()
                .unwrap();
        }
        let decode_tps = tokens as f64 / t.elapsed().as_secs_f64();
        println!(
            "| {tiles} | {encode_s:.2} | {prefill_s:.2} ({}) | {:.2} | {decode_tps:.2} |",
            prompt.len(),
            encode_s + prefill_s
        );
    }
    println!("RSS after the runs: {:.0} MiB", rss_mib());
}
