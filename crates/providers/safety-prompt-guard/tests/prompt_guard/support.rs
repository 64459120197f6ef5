//! A tiny Prompt Guard written by the tests: the real model's config layout (mDeBERTa-v3 with
//! bucketed relative attention, shared attention keys, a layer-normed relative embedding table,
//! no absolute positions, no token types, three labels) at a fraction of its size, a SentencePiece
//! style Unigram tokenizer with DeBERTa's `[CLS] … [SEP]` template, and seeded random weights
//! under the Hugging Face checkpoint's tensor names. The classifier bias can force a label, so
//! verdicts through the real forward pass are deterministic.

use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use candle_core::{Device, Tensor};
use llama_stack_core::{Error, Result};
use llama_stack_provider_safety_prompt_guard::{GuardType, PromptGuardConfig, PromptGuardSafety};
use llama_stack_safety::provider::GuardInference;
use llama_stack_types::{InterleavedContent, Model, Shield};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokenizers::models::unigram::Unigram;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

pub const HIDDEN: usize = 32;
const LAYERS: usize = 2;
const HEADS: usize = 2;
const INTERMEDIATE: usize = 64;
/// As in Prompt-Guard-86M: the relative embedding table has 2 × 256 rows.
const POSITION_BUCKETS: usize = 256;
pub const MAX_POSITIONS: usize = 512;

/// Logit offsets that make one label win by e^20.
pub const BENIGN: [f32; 3] = [20.0, 0.0, 0.0];
pub const INJECTION: [f32; 3] = [0.0, 20.0, 0.0];
pub const JAILBREAK: [f32; 3] = [0.0, 0.0, 20.0];

/// How to make the model.
#[derive(Debug, Clone)]
pub struct TinyModel {
    pub classifier_bias: [f32; 3],
    /// Spread of the classifier weights: large values make the output depend strongly on the
    /// text.
    pub classifier_scale: f32,
    pub labels: usize,
    pub seed: u64,
}

impl TinyModel {
    pub fn forcing(bias: [f32; 3]) -> TinyModel {
        TinyModel {
            classifier_bias: bias,
            classifier_scale: 0.1,
            labels: 3,
            seed: 7,
        }
    }

    /// A model whose verdict follows the text rather than the bias.
    pub fn text_sensitive() -> TinyModel {
        TinyModel {
            classifier_bias: [0.0; 3],
            classifier_scale: 4.0,
            labels: 3,
            seed: 11,
        }
    }

    /// Writes config.json, tokenizer.json and model.safetensors into a new folder.
    pub fn write(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.write_into(dir.path());
        dir
    }

    pub fn write_into(&self, dir: &Path) {
        let vocab = vocabulary();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config_json(vocab.len(), self.labels)).unwrap(),
        )
        .unwrap();
        tokenizer(&vocab)
            .save(dir.join("tokenizer.json"), true)
            .unwrap();
        candle_core::safetensors::save(&self.weights(vocab.len()), dir.join("model.safetensors"))
            .unwrap();
    }

    fn weights(&self, vocab_size: usize) -> HashMap<String, Tensor> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut out = HashMap::new();
        let mut random = |name: &str, shape: &[usize], scale: f32| {
            let n = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-scale..scale)).collect();
            let tensor = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
            out.insert(name.to_string(), tensor);
        };
        let (h, i) = (HIDDEN, INTERMEDIATE);
        let dense = 1.0 / (h as f32).sqrt();
        random(
            "deberta.embeddings.word_embeddings.weight",
            &[vocab_size, h],
            1.0,
        );
        for layer in 0..LAYERS {
            let p = format!("deberta.encoder.layer.{layer}");
            for proj in ["query_proj", "key_proj", "value_proj"] {
                random(&format!("{p}.attention.self.{proj}.weight"), &[h, h], dense);
                random(&format!("{p}.attention.self.{proj}.bias"), &[h], 0.05);
            }
            random(
                &format!("{p}.attention.output.dense.weight"),
                &[h, h],
                dense,
            );
            random(&format!("{p}.attention.output.dense.bias"), &[h], 0.05);
            random(&format!("{p}.intermediate.dense.weight"), &[i, h], dense);
            random(&format!("{p}.intermediate.dense.bias"), &[i], 0.05);
            random(
                &format!("{p}.output.dense.weight"),
                &[h, i],
                1.0 / (i as f32).sqrt(),
            );
            random(&format!("{p}.output.dense.bias"), &[h], 0.05);
        }
        random(
            "deberta.encoder.rel_embeddings.weight",
            &[2 * POSITION_BUCKETS, h],
            1.0,
        );
        random("pooler.dense.weight", &[h, h], dense);
        random("pooler.dense.bias", &[h], 0.05);
        random(
            "classifier.weight",
            &[self.labels, h],
            self.classifier_scale,
        );
        let mut norms = vec!["deberta.embeddings.LayerNorm".to_string()];
        norms.push("deberta.encoder.LayerNorm".into());
        for layer in 0..LAYERS {
            let p = format!("deberta.encoder.layer.{layer}");
            norms.push(format!("{p}.attention.output.LayerNorm"));
            norms.push(format!("{p}.output.LayerNorm"));
        }
        for norm in norms {
            out.insert(
                format!("{norm}.weight"),
                Tensor::ones(h, candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
            out.insert(
                format!("{norm}.bias"),
                Tensor::zeros(h, candle_core::DType::F32, &Device::Cpu).unwrap(),
            );
        }
        let bias: Vec<f32> = self
            .classifier_bias
            .iter()
            .copied()
            .chain(std::iter::repeat(0.0))
            .take(self.labels)
            .collect();
        out.insert(
            "classifier.bias".into(),
            Tensor::from_vec(bias, self.labels, &Device::Cpu).unwrap(),
        );
        out
    }
}

/// Prompt-Guard-86M's config.json with the sizes scaled down.
fn config_json(vocab_size: usize, labels: usize) -> serde_json::Value {
    let names = ["BENIGN", "INJECTION", "JAILBREAK", "OTHER"];
    let id2label: serde_json::Map<String, serde_json::Value> = (0..labels)
        .map(|i| (i.to_string(), names[i].into()))
        .collect();
    let label2id: serde_json::Map<String, serde_json::Value> = (0..labels)
        .map(|i| (names[i].to_string(), i.into()))
        .collect();
    serde_json::json!({
        "_name_or_path": "microsoft/mdeberta-v3-base",
        "architectures": ["DebertaV2ForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "id2label": id2label,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "label2id": label2id,
        "layer_norm_eps": 1e-07,
        "max_position_embeddings": MAX_POSITIONS,
        "max_relative_positions": -1,
        "model_type": "deberta-v2",
        "norm_rel_ebd": "layer_norm",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "pooler_dropout": 0,
        "pooler_hidden_act": "gelu",
        "pooler_hidden_size": HIDDEN,
        "pos_att_type": ["p2c", "c2p"],
        "position_biased_input": false,
        "position_buckets": POSITION_BUCKETS,
        "relative_attention": true,
        "share_att_key": true,
        "torch_dtype": "float32",
        "transformers_version": "4.40.2",
        "type_vocab_size": 0,
        "vocab_size": vocab_size
    })
}

/// DeBERTa-v3's special tokens first, then whole words and single letters so that any
/// lowercase text tokenizes.
fn vocabulary() -> Vec<(String, f64)> {
    let mut vocab: Vec<(String, f64)> = ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
        .iter()
        .map(|t| (t.to_string(), 0.0))
        .collect();
    for word in [
        "hello",
        "world",
        "ignore",
        "all",
        "previous",
        "instructions",
        "and",
        "tell",
        "me",
        "the",
        "password",
        "what",
        "is",
        "weather",
        "today",
        "please",
        "summarize",
        "this",
    ] {
        vocab.push((format!("\u{2581}{word}"), -2.0));
    }
    vocab.push(("\u{2581}".into(), -4.0));
    for letter in 'a'..='z' {
        vocab.push((letter.to_string(), -6.0));
    }
    vocab
}

fn tokenizer(vocab: &[(String, f64)]) -> Tokenizer {
    let model = Unigram::from(vocab.to_vec(), Some(3), false).unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Metaspace::new(
        '\u{2581}',
        PrependScheme::Always,
        true,
    )));
    tokenizer.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single("[CLS] $A [SEP]")
            .unwrap()
            .try_pair("[CLS] $A [SEP] $B:1 [SEP]:1")
            .unwrap()
            .special_tokens(vec![("[CLS]", 1), ("[SEP]", 2)])
            .build()
            .unwrap(),
    ));
    tokenizer
        .add_special_tokens(
            ["[PAD]", "[CLS]", "[SEP]", "[UNK]"]
                .into_iter()
                .map(|t| AddedToken::from(t, true)),
        )
        .unwrap();
    tokenizer
}

pub fn config(dir: &Path, guard_type: GuardType) -> PromptGuardConfig {
    PromptGuardConfig {
        guard_type,
        model_local_dir: Some(dir.to_string_lossy().into_owned()),
        ..PromptGuardConfig::default()
    }
}

/// A provider over a freshly written model; the folder lives as long as the provider is used.
pub async fn open_tiny(
    model: &TinyModel,
    guard_type: GuardType,
) -> (PromptGuardSafety, tempfile::TempDir) {
    let dir = model.write();
    let provider = PromptGuardSafety::open(config(dir.path(), guard_type))
        .await
        .unwrap();
    (provider, dir)
}

pub fn shield(provider_resource_id: &str) -> Shield {
    Shield {
        identifier: "prompt-guard".into(),
        provider_resource_id: provider_resource_id.into(),
        provider_id: "prompt-guard".into(),
        resource_type: "shield".into(),
        params: None,
        owner: None,
    }
}

/// Prompt Guard never calls the inference API.
pub struct NoInference;

#[async_trait]
impl GuardInference for NoInference {
    async fn find_model(&self, model_id: &str) -> Result<Model> {
        Err(Error::internal(format!(
            "unexpected model lookup: {model_id}"
        )))
    }

    async fn guard_chat(&self, model_id: &str, _content: InterleavedContent) -> Result<String> {
        Err(Error::internal(format!(
            "unexpected guard chat: {model_id}"
        )))
    }
}

/// The probabilities printed in a `violation_type`, by name.
pub fn printed_scores(violation_type: &str) -> HashMap<String, f64> {
    let (_, values) = violation_type.split_once(':').unwrap();
    values
        .split(',')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}
