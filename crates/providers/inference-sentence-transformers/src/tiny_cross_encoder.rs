//! Test support: a tiny random-weight BERT cross-encoder folder (config.json, a WordPiece
//! tokenizer.json with BERT's pair template, model.safetensors), written by our own code.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

pub const HIDDEN: usize = 16;
const LAYERS: usize = 2;
const INTERMEDIATE: usize = 32;
const MAX_POSITIONS: usize = 64;

pub const WORDS: &[&str] = &[
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "dog", "runs", "fast",
    "a", "red", "car", "is", "where", "what", "llama", "stack", "##s",
];

/// The classifier head to write: random, or zero weights with this bias (so every score is
/// the activation of the bias).
#[derive(Debug, Clone, Copy)]
pub enum Head {
    Random,
    Constant(f32),
}

pub fn config(extra: serde_json::Value) -> serde_json::Value {
    let mut config = serde_json::json!({
        "architectures": ["BertForSequenceClassification"],
        "model_type": "bert",
        "vocab_size": WORDS.len(),
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": 2,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POSITIONS,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "classifier_dropout": null,
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    config
}

fn tokenizer() -> serde_json::Value {
    let special = |id: usize| {
        serde_json::json!({"id": id, "content": WORDS[id], "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true})
    };
    let piece = |id: &str, type_id: u32| serde_json::json!({"SpecialToken": {"id": id, "type_id": type_id}});
    let sequence =
        |id: &str, type_id: u32| serde_json::json!({"Sequence": {"id": id, "type_id": type_id}});
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i.into()))
        .collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0), special(1), special(2), special(3)],
        "normalizer": {"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [piece("[CLS]", 0), sequence("A", 0), piece("[SEP]", 0)],
            "pair": [piece("[CLS]", 0), sequence("A", 0), piece("[SEP]", 0),
                     sequence("B", 1), piece("[SEP]", 1)],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": vocab},
    })
}

fn random(shape: &[usize], scale: f32) -> Tensor {
    Tensor::randn(0f32, scale, shape, &Device::Cpu).unwrap()
}

fn near_one(size: usize) -> Tensor {
    (random(&[size], 0.1) + 1.0).unwrap()
}

fn weights(head: Head) -> HashMap<String, Tensor> {
    let (h, i) = (HIDDEN, INTERMEDIATE);
    let mut w = HashMap::new();
    let mut put = |name: &str, tensor: Tensor| {
        w.insert(name.to_string(), tensor);
    };
    put(
        "bert.embeddings.word_embeddings.weight",
        random(&[WORDS.len(), h], 1.0),
    );
    put(
        "bert.embeddings.position_embeddings.weight",
        random(&[MAX_POSITIONS, h], 0.5),
    );
    put(
        "bert.embeddings.token_type_embeddings.weight",
        random(&[2, h], 1.0),
    );
    put("bert.embeddings.LayerNorm.weight", near_one(h));
    put("bert.embeddings.LayerNorm.bias", random(&[h], 0.1));
    for layer in 0..LAYERS {
        let p = format!("bert.encoder.layer.{layer}");
        for (name, shape) in [
            ("attention.self.query", [h, h]),
            ("attention.self.key", [h, h]),
            ("attention.self.value", [h, h]),
            ("attention.output.dense", [h, h]),
            ("intermediate.dense", [i, h]),
            ("output.dense", [h, i]),
        ] {
            put(&format!("{p}.{name}.weight"), random(&shape, 0.3));
            put(&format!("{p}.{name}.bias"), random(&shape[..1], 0.1));
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(&format!("{p}.{norm}.weight"), near_one(h));
            put(&format!("{p}.{norm}.bias"), random(&[h], 0.1));
        }
    }
    put("bert.pooler.dense.weight", random(&[h, h], 0.5));
    put("bert.pooler.dense.bias", random(&[h], 0.1));
    match head {
        Head::Random => {
            put("classifier.weight", random(&[1, h], 1.0));
            put("classifier.bias", random(&[1], 0.1));
        }
        Head::Constant(bias) => {
            put(
                "classifier.weight",
                Tensor::zeros((1, h), candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
            put(
                "classifier.bias",
                Tensor::new(&[bias], &Device::Cpu).unwrap(),
            );
        }
    }
    w
}

/// Writes the folder; `extra` is merged into config.json.
pub fn write(dir: &Path, head: Head, extra: serde_json::Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config(extra)).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer().to_string()).unwrap();
    candle_core::safetensors::save(&weights(head), dir.join("model.safetensors")).unwrap();
}
