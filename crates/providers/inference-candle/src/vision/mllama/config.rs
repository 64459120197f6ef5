//! The parts of a Hugging Face `MllamaConfig` (config.json with `model_type: mllama`) the
//! forward pass needs. Defaults are those of Llama 3.2 11B Vision, which is also what the
//! reference fills in for fields a config leaves out.

use std::path::Path;

use candle_core::{Result, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct MllamaConfig {
    #[serde(default)]
    pub model_type: String,
    pub vision_config: MllamaVisionConfig,
    pub text_config: MllamaTextConfig,
    #[serde(default = "default_image_token_index")]
    pub image_token_index: u32,
}

fn default_image_token_index() -> u32 {
    128_256
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MllamaVisionConfig {
    pub hidden_size: usize,
    pub hidden_act: String,
    pub num_hidden_layers: usize,
    pub num_global_layers: usize,
    pub attention_heads: usize,
    pub num_channels: usize,
    pub intermediate_size: usize,
    pub vision_output_dim: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub norm_eps: f64,
    pub max_num_tiles: usize,
    pub intermediate_layers_indices: Vec<usize>,
    pub supported_aspect_ratios: Vec<[usize; 2]>,
}

impl Default for MllamaVisionConfig {
    fn default() -> Self {
        MllamaVisionConfig {
            hidden_size: 1280,
            hidden_act: "gelu".into(),
            num_hidden_layers: 32,
            num_global_layers: 8,
            attention_heads: 16,
            num_channels: 3,
            intermediate_size: 5120,
            vision_output_dim: 7680,
            image_size: 448,
            patch_size: 14,
            norm_eps: 1e-5,
            max_num_tiles: 4,
            intermediate_layers_indices: vec![3, 7, 15, 23, 30],
            supported_aspect_ratios: vec![
                [1, 1],
                [1, 2],
                [1, 3],
                [1, 4],
                [2, 1],
                [2, 2],
                [3, 1],
                [4, 1],
            ],
        }
    }
}

impl MllamaVisionConfig {
    /// Patches per tile along one side.
    pub fn patches_per_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Tokens one tile becomes: its patches and the class token.
    pub fn tokens_per_tile(&self) -> usize {
        self.patches_per_side() * self.patches_per_side() + 1
    }

    /// Rows of the aspect-ratio embedding tables; id 0 stands for "no image".
    pub fn max_aspect_ratio_id(&self) -> usize {
        self.supported_aspect_ratios.len()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.attention_heads
    }
}

/// How rotary position frequencies are derived.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    None,
    /// Llama 3.1's long-context rescaling of the low frequencies.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct MllamaTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub hidden_act: String,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub intermediate_size: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub cross_attention_layers: Vec<usize>,
    pub tie_word_embeddings: bool,
    /// Newer configs keep theta and scaling together here.
    pub rope_parameters: Option<RopeParameters>,
    /// Older configs (as published with Llama 3.2 Vision) split them into these two.
    pub rope_theta: Option<f64>,
    pub rope_scaling: Option<RopeParameters>,
    pub eos_token_id: Option<serde_json::Value>,
    /// Quantization the decoder's projections get at load (not part of the checkpoint).
    #[serde(skip)]
    pub weight_quant: Option<candle_core::quantized::GgmlDType>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RopeParameters {
    pub rope_type: Option<String>,
    /// Older spelling of `rope_type`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<usize>,
}

impl Default for MllamaTextConfig {
    fn default() -> Self {
        MllamaTextConfig {
            vocab_size: 128_256,
            hidden_size: 4096,
            hidden_act: "silu".into(),
            num_hidden_layers: 40,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            intermediate_size: 14_336,
            rms_norm_eps: 1e-5,
            max_position_embeddings: 131_072,
            cross_attention_layers: vec![3, 8, 13, 18, 23, 28, 33, 38],
            tie_word_embeddings: false,
            rope_parameters: None,
            rope_theta: None,
            rope_scaling: None,
            eos_token_id: None,
            weight_quant: None,
        }
    }
}

impl MllamaTextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters
            .as_ref()
            .and_then(|p| p.rope_theta)
            .or(self.rope_theta)
            .unwrap_or(500_000.0)
    }

    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let Some(params) = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref()) else {
            return Ok(RopeScaling::None);
        };
        let kind = params
            .rope_type
            .as_deref()
            .or(params.kind.as_deref())
            .unwrap_or("default");
        match kind {
            "default" => Ok(RopeScaling::None),
            "llama3" => {
                let need = |value: Option<f64>, name: &str| match value {
                    Some(v) => Ok(v),
                    None => Err(candle_core::Error::Msg(format!(
                        "mllama text_config: llama3 rope scaling needs `{name}`"
                    ))),
                };
                Ok(RopeScaling::Llama3 {
                    factor: need(params.factor, "factor")?,
                    low_freq_factor: need(params.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: need(params.high_freq_factor, "high_freq_factor")?,
                    original_max_position_embeddings: params
                        .original_max_position_embeddings
                        .unwrap_or(self.max_position_embeddings),
                })
            }
            other => bail!("mllama text_config: rope type `{other}` is not supported"),
        }
    }

    /// Token ids that end generation.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|n| n as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .filter_map(|v| v.as_u64().map(|n| n as u32))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl MllamaConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let config: MllamaConfig = serde_json::from_str(text)
            .map_err(|e| candle_core::Error::Msg(format!("mllama config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {e}", path.display())))?;
        Self::from_json(&text)
    }

    /// Refuses shapes the forward pass would otherwise fail on deep inside a matmul.
    pub fn validate(&self) -> Result<()> {
        if !self.model_type.is_empty() && self.model_type != "mllama" {
            bail!(
                "config.json has model_type `{}`, not mllama",
                self.model_type
            );
        }
        let v = &self.vision_config;
        if v.attention_heads == 0 || !v.hidden_size.is_multiple_of(v.attention_heads) {
            bail!("mllama vision_config: hidden_size is not a multiple of attention_heads");
        }
        if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) {
            bail!("mllama vision_config: image_size is not a multiple of patch_size");
        }
        if let Some(&i) = v
            .intermediate_layers_indices
            .iter()
            .find(|&&i| i >= v.num_hidden_layers)
        {
            bail!("mllama vision_config: intermediate layer {i} is past the last layer");
        }
        let expected = v.hidden_size * (1 + v.intermediate_layers_indices.len());
        if v.vision_output_dim != expected {
            bail!(
                "mllama vision_config: vision_output_dim is {}, but the final and {} \
                 intermediate layer outputs make {expected}",
                v.vision_output_dim,
                v.intermediate_layers_indices.len()
            );
        }
        if v.hidden_act != "gelu" {
            bail!(
                "mllama vision_config: activation `{}` is not supported",
                v.hidden_act
            );
        }
        let t = &self.text_config;
        if t.num_attention_heads == 0
            || t.num_key_value_heads == 0
            || !t.hidden_size.is_multiple_of(t.num_attention_heads)
            || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
        {
            bail!("mllama text_config: inconsistent head counts");
        }
        if t.hidden_act != "silu" {
            bail!(
                "mllama text_config: activation `{}` is not supported",
                t.hidden_act
            );
        }
        t.rope_scaling()?;
        Ok(())
    }
}
