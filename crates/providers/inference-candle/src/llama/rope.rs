//! Rotary position tables, with Llama 3's long-context frequency scaling.

use candle_core::{DType, Device, Result, Tensor};

/// Llama 3.1+ frequency scaling as the Hugging Face config spells it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position: usize,
}

/// How the per-dimension rotation frequencies are obtained.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RopeFrequencies {
    Plain,
    Llama3(Llama3Scaling),
    /// Per-frequency divisors, as GGUF stores them in `rope_freqs.weight`.
    Divisors(Vec<f32>),
}

/// The inverse frequencies `theta^(-2i/d)`, scaled.
pub(crate) fn inverse_frequencies(
    head_dim: usize,
    theta: f32,
    freqs: &RopeFrequencies,
) -> Vec<f32> {
    let base: Vec<f32> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32))
        .collect();
    match freqs {
        RopeFrequencies::Plain => base,
        RopeFrequencies::Divisors(d) => base.iter().zip(d).map(|(f, d)| f / d).collect(),
        RopeFrequencies::Llama3(s) => {
            let old = s.original_max_position as f32;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / s.factor
                    } else {
                        let smooth = (old / wavelen - s.low_freq_factor)
                            / (s.high_freq_factor - s.low_freq_factor);
                        (1.0 - smooth) * f / s.factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
/// The divisors llama.cpp writes to `rope_freqs.weight` for a Llama 3 scaling: the ratio of
/// the plain to the scaled frequency of each dimension pair.
pub(crate) fn llama3_divisors(head_dim: usize, theta: f32, s: &Llama3Scaling) -> Vec<f32> {
    let plain = inverse_frequencies(head_dim, theta, &RopeFrequencies::Plain);
    let scaled = inverse_frequencies(head_dim, theta, &RopeFrequencies::Llama3(s.clone()));
    plain.iter().zip(&scaled).map(|(p, s)| p / s).collect()
}

/// `(cos, sin)` tables of shape `(max_len, head_dim / 2)`.
pub(crate) fn tables(
    head_dim: usize,
    theta: f32,
    freqs: &RopeFrequencies,
    max_len: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv = inverse_frequencies(head_dim, theta, freqs);
    let inv = Tensor::from_vec(inv, (1, head_dim / 2), device)?;
    let positions = Tensor::arange(0u32, max_len as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((max_len, 1))?;
    let angles = positions.broadcast_mul(&inv)?;
    Ok((angles.cos()?, angles.sin()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama32() -> Llama3Scaling {
        Llama3Scaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position: 8192,
        }
    }

    #[test]
    fn high_frequencies_are_untouched_and_low_ones_divided_by_the_factor() {
        let plain = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Plain);
        let scaled = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Llama3(llama32()));
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((plain[last] / scaled[last] - 32.0).abs() < 1e-3);
    }

    #[test]
    fn divisors_reproduce_the_llama3_scaling() {
        let divisors = llama3_divisors(64, 500_000.0, &llama32());
        let via_divisors = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Divisors(divisors));
        let direct = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Llama3(llama32()));
        for (a, b) in via_divisors.iter().zip(&direct) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-12), "{a} vs {b}");
        }
    }
}
