//! The Mllama forward pass against transformers' `MllamaForConditionalGeneration`, on the tiny
//! random model and reference outputs committed under tests/fixtures/mllama by
//! scripts/fixtures/mllama.py.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use llama_stack_provider_inference_candle::vision::mllama::{
    MllamaConfig, MllamaImages, MllamaModel, RopeScaling, cross_attention_mask,
};
use llama_stack_provider_inference_candle::vision::{
    ImageLimits, MllamaImageConfig, decode_image, preprocess_image,
};

/// Largest absolute difference from the reference logits accepted. Both sides compute in f32;
/// what remains is summation order.
const TOLERANCE: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mllama")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(
        fixtures().join("tiny-model.reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn load_model() -> MllamaModel {
    MllamaModel::load(&fixtures().join("tiny-model"), DType::F32, &Device::Cpu).unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn prompt(reference: &HashMap<String, Tensor>) -> Vec<u32> {
    ints(&reference["input_ids"])
        .into_iter()
        .map(|t| t as u32)
        .collect()
}

/// The reference's pixel tensors without their batch-of-one axis.
fn reference_images(reference: &HashMap<String, Tensor>) -> MllamaImages {
    MllamaImages {
        pixel_values: reference["pixel_values"].squeeze(0).unwrap(),
        aspect_ratio_ids: reference["aspect_ratio_ids"]
            .squeeze(0)
            .unwrap()
            .to_dtype(DType::U32)
            .unwrap(),
        aspect_ratio_mask: reference["aspect_ratio_mask"].squeeze(0).unwrap(),
    }
}

fn our_images(model: &MllamaModel) -> MllamaImages {
    let bytes = std::fs::read(fixtures().join("alpha.png")).unwrap();
    let image = decode_image(&bytes, &ImageLimits::default()).unwrap();
    let config = MllamaImageConfig {
        tile_size: model.config().vision_config.image_size as u32,
        max_image_tiles: model.config().vision_config.max_num_tiles,
        ..MllamaImageConfig::default()
    };
    let input = preprocess_image(&image, &config);
    MllamaImages::from_preprocessed(&[input], &Device::Cpu).unwrap()
}

fn reference_mask(reference: &HashMap<String, Tensor>) -> Vec<u8> {
    ints(&reference["cross_attention_mask"])
        .into_iter()
        .map(|m| m as u8)
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `‖a − b‖ / ‖b‖` over all elements.
fn relative_rms(a: &Tensor, b: &Tensor) -> f32 {
    let norm = |t: &Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt()
    };
    norm(&(a - b).unwrap()) / norm(b)
}

fn argmax(row: &Tensor) -> u32 {
    row.argmax(0).unwrap().to_scalar::<u32>().unwrap()
}

#[test]
fn the_cross_attention_mask_matches_the_reference_processor() {
    let reference = reference();
    let model = load_model();
    let ids = prompt(&reference);
    let tiles = ints(&reference["aspect_ratio_mask"]).iter().sum::<i64>() as usize;
    assert_eq!(
        tiles,
        our_images(&model)
            .aspect_ratio_mask
            .sum_all()
            .unwrap()
            .to_scalar::<u32>()
            .unwrap() as usize
    );
    let ours = cross_attention_mask(
        &ids,
        model.config().image_token_index,
        &[tiles],
        model.config().vision_config.max_num_tiles,
    );
    assert_eq!(ours, reference_mask(&reference));
}

#[test]
fn the_cross_attention_mask_follows_image_token_runs() {
    // Two adjacent image tokens are both seen until the span of the one after them ends; the
    // last image is seen from its token to the end, and the earlier ones no longer.
    let ids = [1, 9, 9, 5, 6, 9, 7];
    let mask = cross_attention_mask(&ids, 9, &[1, 2, 1], 2);
    let rows: Vec<&[u8]> = mask.chunks(6).collect();
    assert_eq!(rows[0], [0, 0, 0, 0, 0, 0]);
    assert_eq!(rows[1], [1, 0, 0, 0, 0, 0]);
    assert_eq!(rows[2], [1, 0, 1, 1, 0, 0]);
    assert_eq!(rows[4], [1, 0, 1, 1, 0, 0]);
    assert_eq!(rows[5], [0, 0, 0, 0, 1, 0]);
    assert_eq!(rows[6], [0, 0, 0, 0, 1, 0]);
}

#[test]
fn prompt_logits_match_the_reference() {
    let reference = reference();
    let model = load_model();
    let ids = prompt(&reference);
    let mask = reference_mask(&reference);
    let expected = &reference["logits"];

    let mut sequence = model
        .new_sequence(Some(&reference_images(&reference)))
        .unwrap();
    let logits = model.forward(&mut sequence, &ids, Some(&mask)).unwrap();
    let diff = max_abs_diff(&logits, expected);
    println!("max logit difference, reference pixels: {diff:e}");
    assert!(diff <= TOLERANCE, "max logit difference {diff}");

    let mut sequence = model.new_sequence(Some(&our_images(&model))).unwrap();
    let logits = model.forward(&mut sequence, &ids, Some(&mask)).unwrap();
    let diff = max_abs_diff(&logits, expected);
    println!("max logit difference, our preprocessing: {diff:e}");
    assert!(diff <= TOLERANCE, "max logit difference {diff}");
}

#[test]
fn prefilling_in_pieces_matches_one_pass() {
    let reference = reference();
    let model = load_model();
    let ids = prompt(&reference);
    let mask = reference_mask(&reference);
    let slots = mask.len() / ids.len();
    let mut sequence = model
        .new_sequence(Some(&reference_images(&reference)))
        .unwrap();
    let split = 5;
    let first = model
        .forward(&mut sequence, &ids[..split], Some(&mask[..split * slots]))
        .unwrap();
    let rest = model
        .forward(&mut sequence, &ids[split..], Some(&mask[split * slots..]))
        .unwrap();
    let logits = Tensor::cat(&[&first, &rest], 0).unwrap();
    let diff = max_abs_diff(&logits, &reference["logits"]);
    println!("max logit difference, prefill in two pieces: {diff:e}");
    assert!(diff <= TOLERANCE, "max logit difference {diff}");
    assert_eq!(sequence.len(), ids.len());
}

#[test]
fn greedy_decoding_with_caches_matches_the_reference_tokens() {
    let reference = reference();
    let model = load_model();
    let ids = prompt(&reference);
    let expected: Vec<u32> = ints(&reference["greedy_tokens"])
        .into_iter()
        .map(|t| t as u32)
        .collect();

    // The image is encoded once here; every step below reuses its cross-attention keys and
    // values and the self-attention cache, and inherits the last prompt token's mask row.
    let mut sequence = model
        .new_sequence(Some(&reference_images(&reference)))
        .unwrap();
    let logits = model
        .forward(&mut sequence, &ids, Some(&reference_mask(&reference)))
        .unwrap();
    let mut next = argmax(&logits.get(ids.len() - 1).unwrap());
    let mut tokens = vec![next];
    while tokens.len() < expected.len() {
        let logits = model.forward(&mut sequence, &[next], None).unwrap();
        assert_eq!(logits.dims(), [1, model.config().text_config.vocab_size]);
        next = argmax(&logits.get(0).unwrap());
        tokens.push(next);
    }
    println!("greedy tokens: {tokens:?}");
    assert_eq!(tokens, expected);
    assert_eq!(sequence.len(), ids.len() + expected.len() - 1);
}

#[test]
fn the_image_changes_the_logits() {
    let reference = reference();
    let model = load_model();
    let ids = prompt(&reference);
    let mut blind = model.new_sequence(None).unwrap();
    assert!(!blind.has_image());
    let without = model.forward(&mut blind, &ids, None).unwrap();
    let mut seeing = model
        .new_sequence(Some(&reference_images(&reference)))
        .unwrap();
    let with = model
        .forward(&mut seeing, &ids, Some(&reference_mask(&reference)))
        .unwrap();
    let effect = max_abs_diff(&with, &without);
    println!("largest change the image makes to a logit: {effect}");
    assert!(
        effect > 0.1,
        "the image changed no logit by more than {effect}"
    );
}

#[test]
fn several_images_in_one_prompt_match_the_reference() {
    let reference = candle_core::safetensors::load(
        fixtures().join("tiny-model.three-images.reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let model = load_model();
    let vision = &model.config().vision_config;
    let config = MllamaImageConfig {
        tile_size: vision.image_size as u32,
        max_image_tiles: vision.max_num_tiles,
        ..MllamaImageConfig::default()
    };
    let inputs: Vec<_> = ["alpha.png", "small.png", "wide.gif"]
        .iter()
        .map(|name| {
            let bytes = std::fs::read(fixtures().join(name)).unwrap();
            preprocess_image(
                &decode_image(&bytes, &ImageLimits::default()).unwrap(),
                &config,
            )
        })
        .collect();
    let tiles: Vec<usize> = inputs.iter().map(|i| i.num_tiles).collect();
    assert_eq!(
        tiles,
        ints(&reference["num_tiles"])
            .iter()
            .map(|&t| t as usize)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        inputs
            .iter()
            .map(|i| i64::from(i.aspect_ratio_id))
            .collect::<Vec<_>>(),
        ints(&reference["aspect_ratio_ids"])
    );
    let images = MllamaImages::from_preprocessed(&inputs, &Device::Cpu).unwrap();

    for prompt in ["spread", "adjacent"] {
        let ids: Vec<u32> = ints(&reference[&format!("{prompt}_input_ids")])
            .iter()
            .map(|&t| t as u32)
            .collect();
        let mask: Vec<u8> = ints(&reference[&format!("{prompt}_cross_attention_mask")])
            .iter()
            .map(|&m| m as u8)
            .collect();
        let ours = cross_attention_mask(
            &ids,
            model.config().image_token_index,
            &tiles,
            vision.max_num_tiles,
        );
        assert_eq!(ours, mask, "{prompt}: cross-attention mask");

        let mut sequence = model.new_sequence(Some(&images)).unwrap();
        assert_eq!(sequence.tile_slots(), 3 * vision.max_num_tiles);
        let logits = model.forward(&mut sequence, &ids, Some(&mask)).unwrap();
        let diff = max_abs_diff(&logits, &reference[&format!("{prompt}_logits")]);
        println!("max logit difference, three images, {prompt}: {diff:e}");
        assert!(diff <= TOLERANCE, "{prompt}: max logit difference {diff}");
    }
}

#[tokio::test]
async fn a_vision_checkpoint_without_its_tokenizer_is_a_clear_error() {
    use llama_stack_inference::InferenceProvider;
    use llama_stack_provider_inference_candle::{CandleConfig, CandleProvider};

    let config: CandleConfig = serde_json::from_value(serde_json::json!({
        "model_path": fixtures().join("tiny-model").to_string_lossy(),
    }))
    .unwrap();
    let provider =
        CandleProvider::new(config, llama_stack_stack::ProviderContext::default()).unwrap();
    let model = llama_stack_types::Model {
        identifier: "candle/tiny-mllama".into(),
        provider_resource_id: "tiny-mllama".into(),
        provider_id: "candle".into(),
        resource_type: "model".into(),
        metadata: Default::default(),
        model_type: llama_stack_types::ModelType::Llm,
        owner: None,
    };
    // The fixture holds the weights and config only; a servable checkpoint ships its tokenizer.
    let err = provider.register_model(&model).await.unwrap_err();
    assert_eq!(
        err.kind(),
        llama_stack_core::ErrorKind::InvalidRequest,
        "{err}"
    );
    assert!(err.message().contains("tokenizer.json"), "{err}");
}

#[test]
fn half_precision_runs_close_to_the_reference() {
    // f16 rather than bf16, which candle's CPU matmul lacks; either way the weights and
    // activations are 16-bit while softmax and logits stay f32.
    let reference = reference();
    let model =
        MllamaModel::load(&fixtures().join("tiny-model"), DType::F16, &Device::Cpu).unwrap();
    let ids = prompt(&reference);
    let mut sequence = model
        .new_sequence(Some(&reference_images(&reference)))
        .unwrap();
    let logits = model
        .forward(&mut sequence, &ids, Some(&reference_mask(&reference)))
        .unwrap();
    assert_eq!(logits.dtype(), DType::F32);
    let diff = max_abs_diff(&logits, &reference["logits"]);
    println!("max logit difference in f16: {diff:e}");
    assert!(diff < 0.1, "max logit difference in f16 {diff}");
    let step = model.forward(&mut sequence, &[7], None).unwrap();
    assert_eq!(step.dims(), [1, model.config().text_config.vocab_size]);
}

#[test]
fn the_published_config_layout_parses() {
    // The shape of Llama 3.2 11B Vision's config.json, which predates `rope_parameters`.
    let config = MllamaConfig::from_json(
        r#"{
            "architectures": ["MllamaForConditionalGeneration"],
            "image_token_index": 128256,
            "model_type": "mllama",
            "text_config": {
                "cross_attention_layers": [3, 8, 13, 18, 23, 28, 33, 38],
                "eos_token_id": [128001, 128008, 128009],
                "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 40,
                "num_key_value_heads": 8, "intermediate_size": 14336, "rms_norm_eps": 1e-05,
                "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                 "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                "rope_theta": 500000.0, "vocab_size": 128256, "torch_dtype": "bfloat16"
            },
            "vision_config": {
                "hidden_size": 1280, "image_size": 560, "patch_size": 14,
                "intermediate_layers_indices": [3, 7, 15, 23, 30], "max_num_tiles": 4,
                "num_global_layers": 8, "num_hidden_layers": 32, "vision_output_dim": 7680
            }
        }"#,
    )
    .unwrap();
    assert_eq!(config.vision_config.tokens_per_tile(), 1601);
    assert_eq!(config.vision_config.max_aspect_ratio_id(), 8);
    assert_eq!(config.text_config.rope_theta(), 500_000.0);
    assert_eq!(
        config.text_config.rope_scaling().unwrap(),
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        }
    );
    assert_eq!(config.text_config.eos_token_ids(), [128001, 128008, 128009]);

    let mut wrong = serde_json::json!({
        "model_type": "mllama",
        "text_config": {},
        "vision_config": {"vision_output_dim": 1000}
    });
    let err = MllamaConfig::from_json(&wrong.to_string()).unwrap_err();
    assert!(err.to_string().contains("vision_output_dim"), "{err}");
    wrong["vision_config"] = serde_json::json!({});
    wrong["text_config"] = serde_json::json!({"rope_parameters": {"rope_type": "yarn"}});
    let err = MllamaConfig::from_json(&wrong.to_string()).unwrap_err();
    assert!(err.to_string().contains("yarn"), "{err}");
}

#[test]
fn quantized_decoders_stay_close_to_the_reference() {
    use candle_core::quantized::GgmlDType;
    let reference = reference();
    let ids = prompt(&reference);
    let mask = reference_mask(&reference);
    let expected = &reference["logits"];
    let diffs: Vec<f32> = [GgmlDType::Q8_0, GgmlDType::Q4_0]
        .into_iter()
        .map(|quant| {
            let model = MllamaModel::load_quantized(
                &fixtures().join("tiny-model"),
                DType::F32,
                &Device::Cpu,
                Some(quant),
            )
            .unwrap();
            let mut sequence = model
                .new_sequence(Some(&reference_images(&reference)))
                .unwrap();
            let logits = model.forward(&mut sequence, &ids, Some(&mask)).unwrap();
            relative_rms(&logits, expected)
        })
        .collect();
    println!("relative RMS error q8_0 {}, q4_0 {}", diffs[0], diffs[1]);
    // Quantization moved the logits (so it happened): a little at 8 bits, more at 4 (with
    // 32-wide rows every row is a single block, the worst case for its scale).
    assert!(diffs[0] > 0.0 && diffs[0] < 0.05, "{diffs:?}");
    assert!(diffs[1] > diffs[0] && diffs[1] < 0.5, "{diffs:?}");
}
