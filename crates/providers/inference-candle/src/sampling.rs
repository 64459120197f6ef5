//! From request sampling parameters to a candle logits processor.

use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use llama_stack_types::SamplingStrategy;

/// Sampling settings of one generation, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SamplingSettings {
    pub sampling: SamplingKind,
    pub repetition_penalty: f32,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SamplingKind {
    Greedy,
    TopP { temperature: f64, top_p: f64 },
    TopK { k: usize, temperature: f64 },
}

/// How many recent tokens the repetition penalty looks at.
const PENALTY_WINDOW: usize = 64;

impl SamplingSettings {
    /// Maps a classic strategy; a temperature of zero (or none) means greedy, as upstream does.
    pub fn from_strategy(
        strategy: &SamplingStrategy,
        repetition_penalty: Option<f64>,
        seed: Option<u64>,
    ) -> Result<Self, String> {
        let sampling = match strategy {
            SamplingStrategy::Greedy => SamplingKind::Greedy,
            SamplingStrategy::TopP { temperature, top_p } => {
                if !(0.0..=1.0).contains(top_p) || *top_p == 0.0 {
                    return Err(format!(
                        "sampling_params.strategy.top_p must be in (0, 1], got {top_p}"
                    ));
                }
                match temperature {
                    Some(t) if *t < 0.0 => {
                        return Err(format!(
                            "sampling_params.strategy.temperature must be >= 0, got {t}"
                        ));
                    }
                    Some(t) if *t > 0.0 => SamplingKind::TopP {
                        temperature: *t,
                        top_p: *top_p,
                    },
                    _ => SamplingKind::Greedy,
                }
            }
            SamplingStrategy::TopK { top_k } => {
                if *top_k == 0 {
                    return Err("sampling_params.strategy.top_k must be >= 1".into());
                }
                SamplingKind::TopK {
                    k: *top_k as usize,
                    temperature: 1.0,
                }
            }
        };
        let penalty = repetition_penalty.unwrap_or(1.0);
        if penalty <= 0.0 {
            return Err(format!(
                "sampling_params.repetition_penalty must be > 0, got {penalty}"
            ));
        }
        Ok(SamplingSettings {
            sampling,
            repetition_penalty: penalty as f32,
            seed: seed.unwrap_or_else(rand::random),
        })
    }

    pub fn processor(&self) -> LogitsProcessor {
        let sampling = match self.sampling {
            SamplingKind::Greedy => Sampling::ArgMax,
            SamplingKind::TopP { temperature, top_p } => Sampling::TopP {
                p: top_p,
                temperature,
            },
            SamplingKind::TopK { k, temperature } => Sampling::TopK { k, temperature },
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }

    /// Applies the repetition penalty over the recent context.
    pub fn penalize(&self, logits: Tensor, context: &[u32]) -> candle_core::Result<Tensor> {
        if self.repetition_penalty == 1.0 || context.is_empty() {
            return Ok(logits);
        }
        let start = context.len().saturating_sub(PENALTY_WINDOW);
        candle_transformers::utils::apply_repeat_penalty(
            &logits,
            self.repetition_penalty,
            &context[start..],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn logits() -> Tensor {
        Tensor::new(&[0.1f32, 2.0, 0.5, 1.9, -1.0], &Device::Cpu).unwrap()
    }

    #[test]
    fn greedy_picks_the_largest_logit() {
        let s = SamplingSettings::from_strategy(&SamplingStrategy::Greedy, None, Some(1)).unwrap();
        assert_eq!(s.processor().sample(&logits()).unwrap(), 1);
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let strategy = SamplingStrategy::TopP {
            temperature: Some(0.0),
            top_p: 0.9,
        };
        let s = SamplingSettings::from_strategy(&strategy, None, None).unwrap();
        assert_eq!(s.sampling, SamplingKind::Greedy);
    }

    #[test]
    fn same_seed_same_samples() {
        let strategy = SamplingStrategy::TopP {
            temperature: Some(1.5),
            top_p: 1.0,
        };
        let draw = |seed| {
            let s = SamplingSettings::from_strategy(&strategy, None, Some(seed)).unwrap();
            let mut p = s.processor();
            (0..32)
                .map(|_| p.sample(&logits()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(
            draw(7),
            draw(8),
            "different seeds should differ over 32 draws"
        );
    }

    #[test]
    fn top_k_one_is_deterministic() {
        let s = SamplingSettings::from_strategy(&SamplingStrategy::TopK { top_k: 1 }, None, None)
            .unwrap();
        let mut p = s.processor();
        assert!((0..10).all(|_| p.sample(&logits()).unwrap() == 1));
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let s = SamplingSettings::from_strategy(&SamplingStrategy::Greedy, Some(10.0), Some(1))
            .unwrap();
        let penalized = s.penalize(logits(), &[1]).unwrap();
        assert_eq!(s.processor().sample(&penalized).unwrap(), 3);
    }

    #[test]
    fn invalid_parameters_are_rejected_with_the_field_name() {
        let err = SamplingSettings::from_strategy(&SamplingStrategy::TopK { top_k: 0 }, None, None)
            .unwrap_err();
        assert!(err.contains("top_k"));
        let err = SamplingSettings::from_strategy(&SamplingStrategy::Greedy, Some(-1.0), None)
            .unwrap_err();
        assert!(err.contains("repetition_penalty"));
    }
}
