//! Rotary position tables, with Llama 3's long-context frequency scaling.

use candle_core::{Device, Result, Tensor};

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
///
/// In f64: an angle is a position times one of these, and at position 131071 an f32 product
/// would be off by up to 1e-2 radians.
pub(crate) fn inverse_frequencies(
    head_dim: usize,
    theta: f32,
    freqs: &RopeFrequencies,
) -> Vec<f64> {
    let theta = theta as f64;
    let base: Vec<f64> = (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect();
    match freqs {
        RopeFrequencies::Plain => base,
        RopeFrequencies::Divisors(d) => base.iter().zip(d).map(|(f, &d)| f / d as f64).collect(),
        RopeFrequencies::Llama3(s) => {
            let (factor, low, high) = (
                s.factor as f64,
                s.low_freq_factor as f64,
                s.high_freq_factor as f64,
            );
            let old = s.original_max_position as f64;
            let low_wavelen = old / low;
            let high_wavelen = old / high;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
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
    plain
        .iter()
        .zip(&scaled)
        .map(|(p, s)| (p / s) as f32)
        .collect()
}

/// `(cos, sin)` of positions `start..start + n`, `(n, inv.len())`, for the inverse
/// frequencies `inv`.
///
/// Built per step rather than kept as tables: a step needs a few rows, and tables for a
/// 128k-token context would cost tens of MiB whether or not any request gets that long.
pub(crate) fn rotation(
    inv: &[f64],
    start: usize,
    n: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let mut cos = Vec::with_capacity(n * inv.len());
    let mut sin = Vec::with_capacity(n * inv.len());
    for pos in start..start + n {
        for f in inv {
            let (s, c) = (pos as f64 * f).sin_cos();
            cos.push(c as f32);
            sin.push(s as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, inv.len()), device)?,
        Tensor::from_vec(sin, (n, inv.len()), device)?,
    ))
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
        assert!((plain[last] / scaled[last] - 32.0).abs() < 1e-9);
    }

    #[test]
    fn divisors_reproduce_the_llama3_scaling() {
        let divisors = llama3_divisors(64, 500_000.0, &llama32());
        let via_divisors = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Divisors(divisors));
        let direct = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Llama3(llama32()));
        for (a, b) in via_divisors.iter().zip(&direct) {
            // The divisors are stored in f32.
            assert!((a - b).abs() <= 1e-7 * b.abs(), "{a} vs {b}");
        }
    }

    /// Hugging Face's `_compute_llama3_parameters`, in f64 and in its own (masking) form.
    fn reference_inverse_frequencies(head_dim: usize, theta: f64, s: &Llama3Scaling) -> Vec<f64> {
        let (factor, low, high, old) = (
            s.factor as f64,
            s.low_freq_factor as f64,
            s.high_freq_factor as f64,
            s.original_max_position as f64,
        );
        (0..head_dim)
            .step_by(2)
            .map(|i| {
                let f = 1.0 / theta.powf(i as f64 / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / f;
                let scaled = if wavelen > old / low { f / factor } else { f };
                let smooth = (old / wavelen - low) / (high - low);
                let medium = wavelen >= old / high && wavelen <= old / low;
                if medium {
                    (1.0 - smooth) * scaled / factor + smooth * scaled
                } else {
                    scaled
                }
            })
            .collect()
    }

    /// Positions across the whole 128k context, its ends and the original 8k boundary included.
    fn far_positions() -> Vec<usize> {
        let mut positions: Vec<usize> = (0..131_072).step_by(4099).collect();
        positions.extend([1, 8191, 8192, 65_535, 131_070, 131_071]);
        positions
    }

    #[test]
    fn scaled_rotation_up_to_128k_matches_an_f64_reference() {
        let (head_dim, theta) = (64, 500_000.0);
        let inv = inverse_frequencies(head_dim, theta as f32, &RopeFrequencies::Llama3(llama32()));
        let reference = reference_inverse_frequencies(head_dim, theta, &llama32());
        // A 64-dim head and one drawn vector per position, rotated in both pair layouts.
        let x: Vec<f32> = (0..head_dim)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let xt = Tensor::from_vec(x.clone(), (1, 1, 1, head_dim), &Device::Cpu).unwrap();
        for pos in far_positions() {
            let (cos, sin) = rotation(&inv, pos, 1, &Device::Cpu).unwrap();
            let (c, s): (Vec<f32>, Vec<f32>) = (
                cos.flatten_all().unwrap().to_vec1().unwrap(),
                sin.flatten_all().unwrap().to_vec1().unwrap(),
            );
            for (j, f) in reference.iter().enumerate() {
                let angle = pos as f64 * f;
                // The tables are the f64 values rounded to f32: half an ulp below 1 is 2^-25,
                // and the two formulas' f64 angles differ by ~1e-11 even at 131071.
                assert!(
                    (c[j] as f64 - angle.cos()).abs() < 1e-7,
                    "cos at {pos}, pair {j}"
                );
                assert!(
                    (s[j] as f64 - angle.sin()).abs() < 1e-7,
                    "sin at {pos}, pair {j}"
                );
            }
            let interleaved = candle_nn::rotary_emb::rope_i(&xt, &cos, &sin).unwrap();
            let halves = candle_nn::rotary_emb::rope(&xt, &cos, &sin).unwrap();
            let interleaved: Vec<f32> = interleaved.flatten_all().unwrap().to_vec1().unwrap();
            let halves: Vec<f32> = halves.flatten_all().unwrap().to_vec1().unwrap();
            for (j, f) in reference.iter().enumerate() {
                let (sin, cos) = (pos as f64 * f).sin_cos();
                let rotate = |a: f32, b: f32| {
                    let (a, b) = (a as f64, b as f64);
                    (a * cos - b * sin, a * sin + b * cos)
                };
                // f32 products and a sum of |x| <= 1.6 each: a few ulp at 2, well under 1e-6.
                let close = |got: f32, want: f64| (got as f64 - want).abs() < 1e-6;
                let (a, b) = rotate(x[2 * j], x[2 * j + 1]);
                assert!(close(interleaved[2 * j], a) && close(interleaved[2 * j + 1], b));
                let half = head_dim / 2;
                let (a, b) = rotate(x[j], x[j + half]);
                assert!(
                    close(halves[j], a) && close(halves[j + half], b),
                    "at {pos}"
                );
            }
        }
    }

    #[test]
    fn an_f32_angle_would_miss_the_tolerance_at_the_far_end() {
        let inv = inverse_frequencies(64, 500_000.0, &RopeFrequencies::Llama3(llama32()));
        let worst = inv
            .iter()
            .map(|&f| ((131_071f32 * f as f32).cos() as f64 - (131_071.0 * f).cos()).abs())
            .fold(0.0, f64::max);
        assert!(worst > 1e-4, "{worst}");
    }
}
