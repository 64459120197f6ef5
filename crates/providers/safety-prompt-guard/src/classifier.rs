//! The Prompt Guard classifier: checking the model folder, loading the DeBERTa-v2 sequence
//! classifier with its tokenizer, and scoring one text.
//!
//! Everything here blocks; it runs on the engine thread (or inside `spawn_blocking` while the
//! provider is built), never on the async runtime.

use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{
    Config as DebertaConfig, DebertaV2SeqClassificationModel,
};
use llama_stack_core::{Error, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::PROMPT_GUARD_MODEL;
use crate::verdict::Scores;

/// The labels Prompt-Guard-86M was trained with, in output order.
pub const LABELS: [&str; 3] = ["BENIGN", "INJECTION", "JAILBREAK"];

/// Upstream divides the logits by this before the softmax; 1.0 leaves them as they are.
const TEMPERATURE: f64 = 1.0;

/// The checked files of one model folder.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub dir: PathBuf,
    pub config: DebertaConfig,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
}

/// How to get the weights; ends every "not found" error.
fn how_to_get(dir: &Path) -> String {
    format!(
        "Download the model with `huggingface-cli download meta-llama/{PROMPT_GUARD_MODEL} \
         --local-dir {}` (the repository is gated: accept its licence on Hugging Face and run \
         `huggingface-cli login` first), or point this provider's model_local_dir at a folder \
         holding its config.json, tokenizer.json and model.safetensors.",
        dir.display()
    )
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))
}

/// Finds the three files in `dir` and checks that `config.json` describes a model this
/// provider can run, before candle sees any of it.
pub fn inspect(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        let what = if dir.exists() {
            "is not a folder"
        } else {
            "does not exist"
        };
        return Err(Error::not_found(format!(
            "the {PROMPT_GUARD_MODEL} model folder {} {what}. {}",
            dir.display(),
            how_to_get(dir)
        )));
    }
    let config_path = dir.join("config.json");
    let tokenizer = dir.join("tokenizer.json");
    let weights = dir.join("model.safetensors");
    for file in [&config_path, &tokenizer, &weights] {
        if !file.is_file() {
            let hint = if file == &weights && dir.join("pytorch_model.bin").is_file() {
                " (the folder has pytorch_model.bin only: convert it to safetensors)"
            } else {
                ""
            };
            return Err(Error::not_found(format!(
                "{} is missing{hint}. {}",
                file.display(),
                how_to_get(dir)
            )));
        }
    }
    let raw = read_json(&config_path)?;
    let model_type = raw.get("model_type").and_then(|t| t.as_str());
    if let Some(other) = model_type.filter(|t| *t != "deberta-v2") {
        return Err(Error::unsupported(format!(
            "{}: model_type '{other}' is not supported; {PROMPT_GUARD_MODEL} is a DeBERTa-v2 \
             classifier (model_type 'deberta-v2')",
            config_path.display()
        )));
    }
    let config: DebertaConfig = serde_json::from_value(raw).map_err(|e| {
        Error::invalid(format!(
            "{} is not a DeBERTa-v2 config this provider can run: {e}",
            config_path.display()
        ))
    })?;
    check_config(&config)
        .map_err(|problem| Error::invalid(format!("{}: {problem}", config_path.display())))?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        config,
        weights,
        tokenizer,
    })
}

/// What candle's DeBERTa-v2 loader needs beyond what serde checks, so that a config it cannot
/// run is refused with a reason instead of failing (or panicking) mid-forward.
fn check_config(config: &DebertaConfig) -> std::result::Result<(), String> {
    let labels = config.id2label.as_ref().map_or(0, |labels| labels.len());
    if labels != LABELS.len() {
        return Err(format!(
            "id2label has {labels} labels; a Prompt Guard classifier has 3 ({})",
            LABELS.join(", ")
        ));
    }
    if config.num_attention_heads == 0
        || !config
            .hidden_size
            .is_multiple_of(config.num_attention_heads)
    {
        return Err(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            config.hidden_size, config.num_attention_heads
        ));
    }
    if config.pooler_hidden_size.is_none()
        || config.pooler_dropout.is_none()
        || config.pooler_hidden_act.is_none()
    {
        return Err(
            "pooler_hidden_size, pooler_dropout and pooler_hidden_act are all required".into(),
        );
    }
    if config.conv_kernel_size.unwrap_or(0) > 0 {
        return Err(
            "conv_kernel_size > 0 (a convolution layer) is not implemented by the DeBERTa-v2 \
             runtime"
                .into(),
        );
    }
    if config.max_position_embeddings < 3 {
        return Err(format!(
            "max_position_embeddings {} leaves no room for text between [CLS] and [SEP]",
            config.max_position_embeddings
        ));
    }
    Ok(())
}

/// A loaded model and tokenizer.
pub struct Classifier {
    model: DebertaV2SeqClassificationModel,
    tokenizer: Tokenizer,
    device: Device,
    vocab_size: usize,
}

impl Classifier {
    /// Loads the tokenizer and the weights of checked files. Blocking.
    pub fn load(files: &ModelFiles, device: &Device) -> Result<Classifier> {
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            Error::invalid(format!("cannot load {}: {e}", files.tokenizer.display()))
        })?;
        tokenizer.with_padding(None);
        // The model reads at most max_position_embeddings tokens (candle's embeddings index
        // positions up to that length); longer texts keep their start, special tokens included.
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: files.config.max_position_embeddings,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::invalid(format!("cannot set up truncation: {e}")))?;
        // SAFETY: the file is only read; a concurrent writer would corrupt the mapping, which is
        // the same contract every safetensors loader has.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&files.weights),
                DType::F32,
                device,
            )
        }
        .map_err(|e| Error::invalid(format!("cannot map {}: {e}", files.weights.display())))?;
        let model = DebertaV2SeqClassificationModel::load(vb.pp("deberta"), &files.config, None)
            .map_err(|e| {
                Error::invalid(format!(
                    "cannot load {PROMPT_GUARD_MODEL} from {}: {e}",
                    files.weights.display()
                ))
            })?;
        Ok(Classifier {
            model,
            tokenizer,
            device: device.clone(),
            vocab_size: files.config.vocab_size,
        })
    }

    /// Token ids of `text` as the model reads it: special tokens added, truncated.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::invalid(format!("the text cannot be tokenized: {e}")))?;
        let ids = encoding.get_ids().to_vec();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::internal(format!(
                "the tokenizer produced id {id}, beyond the model's vocabulary of {}; \
                 tokenizer.json does not belong to this model",
                self.vocab_size
            )));
        }
        if ids.is_empty() {
            return Err(Error::internal(
                "the tokenizer produced no tokens; tokenizer.json has no [CLS]/[SEP] template",
            ));
        }
        Ok(ids)
    }

    /// The label probabilities for one text.
    pub fn scores(&self, text: &str) -> Result<Scores> {
        let ids = self.tokenize(text)?;
        let probabilities = self
            .forward(ids)
            .map_err(|e| Error::internal(format!("the Prompt Guard forward pass failed: {e}")))?;
        let p: [f32; 3] = probabilities.try_into().map_err(|p: Vec<f32>| {
            Error::internal(format!(
                "the classifier returned {} probabilities instead of 3",
                p.len()
            ))
        })?;
        Ok(Scores::from_probabilities(p))
    }

    fn forward(&self, ids: Vec<u32>) -> candle_core::Result<Vec<f32>> {
        let length = ids.len();
        let input = Tensor::from_vec(ids, (1, length), &self.device)?;
        let logits = self.model.forward(&input, None, None)?;
        let logits = (logits / TEMPERATURE)?;
        candle_nn::ops::softmax(&logits, D::Minus1)?
            .squeeze(0)?
            .to_vec1::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llama_stack_core::ErrorKind;

    #[test]
    fn a_missing_folder_says_how_to_get_the_model() {
        let err = inspect(Path::new("/nonexistent/Prompt-Guard-86M")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        let message = err.message();
        assert!(
            message.contains("/nonexistent/Prompt-Guard-86M"),
            "{message}"
        );
        assert!(
            message.contains(
                "huggingface-cli download meta-llama/Prompt-Guard-86M --local-dir \
                 /nonexistent/Prompt-Guard-86M"
            ),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), "").unwrap();
        let err = inspect(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(
            err.message().contains("model.safetensors is missing"),
            "{err}"
        );
        assert!(err.message().contains("convert it to safetensors"), "{err}");
        assert!(err.message().contains("huggingface-cli download"), "{err}");
    }

    #[test]
    fn configs_candle_cannot_run_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let write = |config: serde_json::Value| {
            std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        };
        write(serde_json::json!({"model_type": "bert"}));
        let err = inspect(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("'bert'"), "{err}");

        write(serde_json::json!({"model_type": "deberta-v2", "hidden_size": 8}));
        let err = inspect(dir.path()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        assert!(err.message().contains("missing field"), "{err}");
    }
}
