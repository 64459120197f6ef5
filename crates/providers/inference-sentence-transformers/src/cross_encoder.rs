//! The cross-encoder: BERT for sequence classification scoring (query, item) pairs for
//! reranking, as sentence-transformers' `CrossEncoder` does.
//!
//! Each pair is tokenized as one input, `[CLS] query [SEP] item [SEP]`, with token type 0 for
//! the query part and 1 for the item part. The `[CLS]` state goes through BERT's pooler (a dense
//! layer and tanh) and the classifier head, a dense layer to the model's one label. The score is
//! that logit passed through the model's activation: the sigmoid unless the model names another
//! (see [`Activation`]).
//!
//! Everything here blocks; it runs on the engine thread, never on the async runtime.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use candle_transformers::models::bert::BertModel;
use llama_stack_core::{Error, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::model_files::CrossEncoderFiles;

/// What turns the classifier's logit into the relevance score.
///
/// sentence-transformers' `CrossEncoder` applies the sigmoid to a one-label model unless the
/// model's config names its activation (`sentence_transformers.activation_fn` from v4,
/// `sbert_ce_default_activation_function` before); the sigmoid keeps scores in (0, 1) like
/// upstream's reranker's probabilities, and orders items as the logit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Sigmoid,
    /// The raw logit (`torch.nn.Identity`).
    Identity,
}

impl Activation {
    /// The activation a config.json declares, `None` when it declares none. An activation this
    /// provider does not implement is an error naming it.
    pub fn declared(config: &serde_json::Value) -> Result<Option<Activation>> {
        let name = config
            .pointer("/sentence_transformers/activation_fn")
            .or_else(|| config.get("sbert_ce_default_activation_function"))
            .and_then(|v| v.as_str());
        let Some(name) = name else {
            return Ok(None);
        };
        match name.rsplit('.').next().unwrap_or(name) {
            "Sigmoid" => Ok(Some(Activation::Sigmoid)),
            "Identity" => Ok(Some(Activation::Identity)),
            _ => Err(Error::unsupported(format!(
                "the cross-encoder's activation '{name}' is not supported; inline::sentence-transformers applies Sigmoid or Identity"
            ))),
        }
    }

    pub fn apply(self, logit: f32) -> f32 {
        match self {
            Activation::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
            Activation::Identity => logit,
        }
    }
}

pub struct CrossEncoder {
    model: BertModel,
    pooler: Linear,
    classifier: Linear,
    /// Pairs longer than the model reads lose tokens from the longer text first, as
    /// `CrossEncoder` tokenizes with `truncation=True`.
    tokenizer: Tokenizer,
    activation: Activation,
    device: Device,
    pad_id: u32,
    max_batch_size: usize,
}

impl CrossEncoder {
    /// Loads the tokenizer and the weights. Blocking.
    pub fn load(
        files: &CrossEncoderFiles,
        device: &Device,
        max_batch_size: usize,
    ) -> Result<CrossEncoder> {
        let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
            Error::invalid(format!("cannot load {}: {e}", files.tokenizer.display()))
        })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: files.config.max_position_embeddings,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::invalid(format!("cannot configure the tokenizer: {e}")))?;
        // SAFETY: see model_files::check_tensors; the file was checked just before.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(
                std::slice::from_ref(&files.weights),
                DType::F32,
                device,
            )
        }
        .map_err(|e| Error::invalid(format!("cannot map {}: {e}", files.weights.display())))?;
        let loading = |e: candle_core::Error| {
            Error::invalid(format!(
                "cannot load the cross-encoder from {}: {e}",
                files.dir.display()
            ))
        };
        let hidden = files.config.hidden_size;
        let model = BertModel::load(vb.pp("bert"), &files.config).map_err(loading)?;
        let pooler =
            candle_nn::linear(hidden, hidden, vb.pp("bert.pooler.dense")).map_err(loading)?;
        let classifier = candle_nn::linear(hidden, 1, vb.pp("classifier")).map_err(loading)?;
        Ok(CrossEncoder {
            model,
            pooler,
            classifier,
            tokenizer,
            activation: files.activation,
            device: device.clone(),
            pad_id: files.config.pad_token_id as u32,
            max_batch_size: max_batch_size.max(1),
        })
    }

    /// Token ids and token type ids of each (query, item) pair.
    pub fn tokenize(&self, query: &str, items: &[String]) -> Result<Vec<(Vec<u32>, Vec<u32>)>> {
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let encoding = self
                    .tokenizer
                    .encode((query, item.as_str()), true)
                    .map_err(|e| Error::invalid(format!("item {i} cannot be tokenized: {e}")))?;
                Ok((
                    encoding.get_ids().to_vec(),
                    encoding.get_type_ids().to_vec(),
                ))
            })
            .collect()
    }

    /// One score per item, in item order: batches of up to `max_batch_size` pairs of similar
    /// length, each padded to its longest and masked.
    pub fn score(&self, query: &str, items: &[String]) -> Result<Vec<f32>> {
        let pairs = self.tokenize(query, items)?;
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        order.sort_by_key(|&i| pairs[i].0.len());
        let mut scores = vec![0.0; pairs.len()];
        for chunk in order.chunks(self.max_batch_size) {
            let batch: Vec<&(Vec<u32>, Vec<u32>)> = chunk.iter().map(|&i| &pairs[i]).collect();
            let logits = self
                .forward(&batch)
                .map_err(|e| Error::internal(format!("the reranking forward pass failed: {e}")))?;
            for (&i, logit) in chunk.iter().zip(logits) {
                scores[i] = self.activation.apply(logit);
            }
        }
        Ok(scores)
    }

    /// The classifier's logit for each pair.
    fn forward(&self, batch: &[&(Vec<u32>, Vec<u32>)]) -> candle_core::Result<Vec<f32>> {
        let longest = batch.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let size = batch.len() * longest;
        let (mut input, mut types, mut mask) = (
            Vec::with_capacity(size),
            Vec::with_capacity(size),
            Vec::with_capacity(size),
        );
        for (ids, type_ids) in batch {
            let pad = longest - ids.len();
            input.extend_from_slice(ids);
            input.extend(std::iter::repeat_n(self.pad_id, pad));
            types.extend_from_slice(type_ids);
            types.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(1u32, ids.len()));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let shape = (batch.len(), longest);
        let input = Tensor::from_vec(input, shape, &self.device)?;
        let types = Tensor::from_vec(types, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let states = self.model.forward(&input, &types, Some(&mask))?;
        let first = states.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&first)?.tanh()?;
        self.classifier
            .forward(&pooled)?
            .squeeze(1)?
            .to_vec1::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_files::inspect_cross_encoder;
    use crate::tiny_cross_encoder::{self, Head, WORDS};

    fn load(
        head: Head,
        extra: serde_json::Value,
        batch: usize,
    ) -> (tempfile::TempDir, CrossEncoder) {
        let dir = tempfile::tempdir().unwrap();
        tiny_cross_encoder::write(dir.path(), head, extra);
        let files = inspect_cross_encoder(dir.path()).unwrap();
        let encoder = CrossEncoder::load(&files, &Device::Cpu, batch).unwrap();
        (dir, encoder)
    }

    fn items() -> Vec<String> {
        [
            "the cat sat on the mat",
            "a red car",
            "dog runs fast",
            "where is the llama stack",
            "cats",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn pairs_carry_the_item_as_token_type_one() {
        let (_dir, encoder) = load(Head::Random, serde_json::json!({}), 4);
        let pairs = encoder
            .tokenize("what is a llama", &["red cars".to_string()])
            .unwrap();
        let (ids, types) = &pairs[0];
        let id = |w: &str| WORDS.iter().position(|x| *x == w).unwrap() as u32;
        assert_eq!(
            ids,
            &[
                id("[CLS]"),
                id("what"),
                id("is"),
                id("a"),
                id("llama"),
                id("[SEP]"),
                id("red"),
                id("car"),
                id("##s"),
                id("[SEP]")
            ]
        );
        assert_eq!(types, &[0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    }

    #[test]
    fn scores_do_not_depend_on_batching_or_padding() {
        let (dir, together) = load(Head::Random, serde_json::json!({}), 8);
        let files = inspect_cross_encoder(dir.path()).unwrap();
        let alone = CrossEncoder::load(&files, &Device::Cpu, 1).unwrap();
        let batched = together.score("where is the cat", &items()).unwrap();
        let single = alone.score("where is the cat", &items()).unwrap();
        assert_eq!(batched.len(), items().len());
        for (a, b) in batched.iter().zip(&single) {
            assert!((a - b).abs() < 1e-5, "{batched:?} vs {single:?}");
            assert!(*a > 0.0 && *a < 1.0, "sigmoid scores lie in (0, 1): {a}");
        }
        // The item decides the score: not every item scores alike.
        assert!(
            batched.iter().any(|s| (s - batched[0]).abs() > 1e-4),
            "{batched:?}"
        );
        // So does the order of the pair: the query is segment 0, the item segment 1.
        let swapped = together
            .score("the cat sat on the mat", &["where is the cat".to_string()])
            .unwrap();
        assert!((swapped[0] - batched[0]).abs() > 1e-6);
    }

    #[test]
    fn the_head_maps_the_pooled_state_through_the_activation() {
        let (_dir, sigmoid) = load(Head::Constant(0.7), serde_json::json!({}), 4);
        let expected = 1.0 / (1.0 + (-0.7f32).exp());
        for score in sigmoid.score("a dog", &items()).unwrap() {
            assert!((score - expected).abs() < 1e-6, "{score}");
        }
        let identity = serde_json::json!({"sentence_transformers":
            {"activation_fn": "torch.nn.modules.linear.Identity"}});
        let (_dir, raw) = load(Head::Constant(-1.25), identity, 4);
        for score in raw.score("a dog", &items()).unwrap() {
            assert!((score + 1.25).abs() < 1e-6, "{score}");
        }
    }

    #[test]
    fn activations() {
        let declared = |v: serde_json::Value| Activation::declared(&v);
        assert_eq!(declared(serde_json::json!({})).unwrap(), None);
        assert_eq!(
            declared(serde_json::json!({"sentence_transformers": {
                "activation_fn": "torch.nn.modules.linear.Identity"}}))
            .unwrap(),
            Some(Activation::Identity)
        );
        assert_eq!(
            declared(serde_json::json!({
                "sbert_ce_default_activation_function": "torch.nn.modules.activation.Sigmoid"}))
            .unwrap(),
            Some(Activation::Sigmoid)
        );
        let err = declared(serde_json::json!({"sentence_transformers": {
            "activation_fn": "torch.nn.modules.activation.Tanh"}}))
        .unwrap_err();
        assert!(err.message().contains("Tanh"), "{err}");
        assert_eq!(Activation::Sigmoid.apply(0.0), 0.5);
        assert_eq!(Activation::Identity.apply(-2.5), -2.5);
    }
}
