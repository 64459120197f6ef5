//! Sentence-transformers pooling (`1_Pooling/config.json`): how token states become one vector.

use std::path::Path;

use candle_core::{D, Tensor};
use llama_stack_core::{Error, Result};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The average of the token states, padding excluded (sentence-transformers' default).
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

#[derive(Debug, Default, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

impl Pooling {
    /// Reads the pooling config at `path`; a model without one is mean-pooled, as
    /// sentence-transformers does for a plain Hugging Face model.
    pub fn read(path: &Path, hidden_size: usize) -> Result<Pooling> {
        if !path.is_file() {
            return Ok(Pooling::Mean);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
        let config: PoolingConfig = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "{} is not a sentence-transformers pooling config: {e}",
                path.display()
            ))
        })?;
        if let Some(dim) = config.word_embedding_dimension
            && dim != hidden_size
        {
            return Err(Error::invalid(format!(
                "{}: word_embedding_dimension {dim} differs from the encoder's hidden_size {hidden_size}",
                path.display()
            )));
        }
        let unsupported = [
            (config.pooling_mode_max_tokens, "max"),
            (config.pooling_mode_mean_sqrt_len_tokens, "mean_sqrt_len"),
            (config.pooling_mode_weightedmean_tokens, "weightedmean"),
            (config.pooling_mode_lasttoken, "lasttoken"),
        ];
        if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
            return Err(Error::unsupported(format!(
                "{}: {name} pooling is not supported; inline::sentence-transformers pools with mean or cls",
                path.display()
            )));
        }
        match (
            config.pooling_mode_mean_tokens,
            config.pooling_mode_cls_token,
        ) {
            (true, false) => Ok(Pooling::Mean),
            (false, true) => Ok(Pooling::Cls),
            (true, true) => Err(Error::unsupported(format!(
                "{}: combined mean and cls pooling is not supported; enable one of them",
                path.display()
            ))),
            (false, false) => Err(Error::invalid(format!(
                "{}: no pooling mode is enabled; set pooling_mode_mean_tokens or pooling_mode_cls_token",
                path.display()
            ))),
        }
    }

    /// Pools `states` (batch, tokens, hidden) under `mask` (batch, tokens; 1 for real tokens,
    /// 0 for padding) into (batch, hidden).
    pub fn pool(self, states: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1),
            Pooling::Mean => {
                let mask = mask.to_dtype(states.dtype())?.unsqueeze(D::Minus1)?;
                let summed = states.broadcast_mul(&mask)?.sum(1)?;
                // sentence-transformers clamps the count the same way.
                let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
                summed.broadcast_div(&counts)
            }
        }
    }
}

/// Scales each row of (batch, hidden) to unit L2 norm (zero rows stay zero).
pub fn l2_normalize(rows: &Tensor) -> candle_core::Result<Tensor> {
    let norms = rows
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    rows.broadcast_div(&norms)
}

/// Scales a vector to unit L2 norm in place.
pub fn normalize_in_place(vector: &mut [f32]) {
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    vector.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn write(dir: &Path, json: &str) -> std::path::PathBuf {
        let path = dir.join("config.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn reads_pooling_modes() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Pooling::read(&dir.path().join("absent.json"), 4).unwrap(),
            Pooling::Mean
        );
        let cls = write(
            dir.path(),
            r#"{"word_embedding_dimension": 4, "pooling_mode_cls_token": true}"#,
        );
        assert_eq!(Pooling::read(&cls, 4).unwrap(), Pooling::Cls);
        let err = Pooling::read(&cls, 8).unwrap_err();
        assert!(err.message().contains("hidden_size 8"), "{err}");
        let max = write(dir.path(), r#"{"pooling_mode_max_tokens": true}"#);
        let err = Pooling::read(&max, 4).unwrap_err();
        assert!(err.message().contains("max pooling"), "{err}");
        let none = write(dir.path(), r#"{}"#);
        assert!(Pooling::read(&none, 4).is_err());
        let broken = write(dir.path(), "not json");
        assert!(Pooling::read(&broken, 4).is_err());
    }

    #[test]
    fn mean_ignores_padding_and_cls_takes_the_first_token() {
        let states = Tensor::new(&[[[1f32, 2.], [3., 4.], [100., 100.]]], &Device::Cpu).unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        let mean = Pooling::Mean.pool(&states, &mask).unwrap();
        assert_eq!(mean.to_vec2::<f32>().unwrap(), [[2., 3.]]);
        let cls = Pooling::Cls.pool(&states, &mask).unwrap();
        assert_eq!(cls.to_vec2::<f32>().unwrap(), [[1., 2.]]);
    }

    #[test]
    fn normalization() {
        let rows = Tensor::new(&[[3f32, 4.], [0., 0.]], &Device::Cpu).unwrap();
        let out = l2_normalize(&rows).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(out, [[0.6, 0.8], [0., 0.]]);
        let mut v = [3f32, 4.];
        normalize_in_place(&mut v);
        assert_eq!(v, [0.6, 0.8]);
    }
}
