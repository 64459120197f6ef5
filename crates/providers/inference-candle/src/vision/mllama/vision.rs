//! The Mllama vision encoder: image tiles in, one feature vector per patch (and class token)
//! per tile out, for the text decoder's cross-attention layers to read.
//!
//! Every tile of an image is encoded in one sequence, so patches attend across tiles. Each
//! tile's tokens are padded to a multiple of 8 after the first layer norm, as in the reference;
//! the padding takes part in attention (see [`attention_bias`]) and is dropped at the end.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Embedding, LayerNorm, Linear, VarBuilder};

use super::config::MllamaVisionConfig;
use super::{attend, tanh_gate as gate};

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn load(config: &MllamaVisionConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.hidden_size;
        Ok(Attention {
            q_proj: candle_nn::linear_no_bias(d, d, vb.pp("q_proj"))?,
            k_proj: candle_nn::linear_no_bias(d, d, vb.pp("k_proj"))?,
            v_proj: candle_nn::linear_no_bias(d, d, vb.pp("v_proj"))?,
            o_proj: candle_nn::linear_no_bias(d, d, vb.pp("o_proj"))?,
            heads: config.attention_heads,
            head_dim: config.head_dim(),
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, len, d) = x.dims3()?;
        let split = |t: Tensor| -> Result<Tensor> {
            t.reshape((b, len, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.q_proj.forward(x)?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let out = attend(&q, &k, &v, Some(bias))?
            .transpose(1, 2)?
            .reshape((b, len, d))?;
        self.o_proj.forward(&out)
    }
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(config: &MllamaVisionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp {
            fc1: candle_nn::linear(config.hidden_size, config.intermediate_size, vb.pp("fc1"))?,
            fc2: candle_nn::linear(config.intermediate_size, config.hidden_size, vb.pp("fc2"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.gelu_erf()?)
    }
}

/// A pre-norm transformer block; the global encoder's blocks scale both branches by a gate.
struct EncoderLayer {
    input_layernorm: LayerNorm,
    self_attn: Attention,
    post_attention_layernorm: LayerNorm,
    mlp: Mlp,
    gates: Option<(f64, f64)>,
}

impl EncoderLayer {
    fn load(config: &MllamaVisionConfig, gated: bool, vb: VarBuilder) -> Result<Self> {
        let norm =
            |name: &str| candle_nn::layer_norm(config.hidden_size, config.norm_eps, vb.pp(name));
        let gates = if gated {
            Some((gate(&vb, "gate_attn")?, gate(&vb, "gate_ffn")?))
        } else {
            None
        };
        Ok(EncoderLayer {
            input_layernorm: norm("input_layernorm")?,
            self_attn: Attention::load(config, vb.pp("self_attn"))?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            mlp: Mlp::load(config, vb.pp("mlp"))?,
            gates,
        })
    }

    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let mut attn = self
            .self_attn
            .forward(&self.input_layernorm.forward(x)?, bias)?;
        if let Some((g, _)) = self.gates {
            attn = (attn * g)?;
        }
        let x = (x + attn)?;
        let mut mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        if let Some((_, g)) = self.gates {
            mlp = (mlp * g)?;
        }
        x + mlp
    }
}

/// A per-aspect-ratio vector added to every token of each tile slot, so the encoder knows
/// where in the arrangement a tile sits.
struct TileEmbedding {
    embedding: Embedding,
    gate: f64,
}

impl TileEmbedding {
    fn load(config: &MllamaVisionConfig, vb: VarBuilder) -> Result<Self> {
        Ok(TileEmbedding {
            embedding: candle_nn::embedding(
                config.max_aspect_ratio_id() + 1,
                config.max_num_tiles * config.hidden_size,
                vb.pp("embedding"),
            )?,
            gate: gate(&vb, "gate")?,
        })
    }

    /// `x`: `[images, tiles, tokens, hidden]`.
    fn forward(&self, x: &Tensor, aspect_ratio_ids: &Tensor) -> Result<Tensor> {
        let (images, tiles, _, hidden) = x.dims4()?;
        let emb = self.embedding.forward(aspect_ratio_ids)?;
        let emb = (emb.reshape((images, tiles, 1, hidden))? * self.gate)?;
        x.broadcast_add(&emb)
    }
}

pub struct VisionModel {
    patch_embedding: Conv2d,
    class_embedding: Tensor,
    position_embedding: Tensor,
    position_gate: f64,
    tile_position_embedding: Embedding,
    pre_tile_positional_embedding: TileEmbedding,
    post_tile_positional_embedding: TileEmbedding,
    layernorm_pre: LayerNorm,
    layernorm_post: LayerNorm,
    transformer: Vec<EncoderLayer>,
    global_transformer: Vec<EncoderLayer>,
    intermediate_layers: Vec<usize>,
    hidden: usize,
    tokens_per_tile: usize,
    max_tiles: usize,
}

/// The reference's top-level layer norms use PyTorch's default epsilon rather than the
/// config's `norm_eps`.
const OUTER_NORM_EPS: f64 = 1e-5;

impl VisionModel {
    pub fn load(config: &MllamaVisionConfig, vb: VarBuilder) -> Result<Self> {
        let hidden = config.hidden_size;
        let tokens = config.tokens_per_tile();
        let conv = Conv2dConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let gated_pos = vb.pp("gated_positional_embedding");
        let layers = |count: usize, gated: bool, vb: VarBuilder| -> Result<Vec<EncoderLayer>> {
            (0..count)
                .map(|i| EncoderLayer::load(config, gated, vb.pp("layers").pp(i)))
                .collect()
        };
        Ok(VisionModel {
            patch_embedding: candle_nn::conv2d_no_bias(
                config.num_channels,
                hidden,
                config.patch_size,
                conv,
                vb.pp("patch_embedding"),
            )?,
            class_embedding: vb.get(hidden, "class_embedding")?,
            position_embedding: gated_pos.get((tokens, hidden), "embedding")?,
            position_gate: gate(&gated_pos, "gate")?,
            tile_position_embedding: candle_nn::embedding(
                config.max_aspect_ratio_id() + 1,
                config.max_num_tiles * tokens * hidden,
                gated_pos.pp("tile_embedding"),
            )?,
            pre_tile_positional_embedding: TileEmbedding::load(
                config,
                vb.pp("pre_tile_positional_embedding"),
            )?,
            post_tile_positional_embedding: TileEmbedding::load(
                config,
                vb.pp("post_tile_positional_embedding"),
            )?,
            layernorm_pre: candle_nn::layer_norm(hidden, OUTER_NORM_EPS, vb.pp("layernorm_pre"))?,
            layernorm_post: candle_nn::layer_norm(hidden, OUTER_NORM_EPS, vb.pp("layernorm_post"))?,
            transformer: layers(config.num_hidden_layers, false, vb.pp("transformer"))?,
            global_transformer: layers(
                config.num_global_layers,
                true,
                vb.pp("global_transformer"),
            )?,
            intermediate_layers: config.intermediate_layers_indices.clone(),
            hidden,
            tokens_per_tile: tokens,
            max_tiles: config.max_num_tiles,
        })
    }

    /// `pixel_values`: `[images, tiles, channels, height, width]`; `aspect_ratio_ids`:
    /// `[images]` (u32); `aspect_ratio_mask`: `[images, tiles]`, nonzero for real tiles.
    ///
    /// Returns `[images, tiles, tokens_per_tile, vision_output_dim]`: the final hidden state
    /// followed by the configured intermediate layers' outputs, interleaved per channel.
    pub fn forward(
        &self,
        pixel_values: &Tensor,
        aspect_ratio_ids: &Tensor,
        aspect_ratio_mask: &Tensor,
    ) -> Result<Tensor> {
        let (images, tiles, channels, height, width) = pixel_values.dims5()?;
        if tiles != self.max_tiles {
            candle_core::bail!(
                "mllama vision: {tiles} tile slots given, the model takes {}",
                self.max_tiles
            );
        }
        if aspect_ratio_mask.dims() != [images, tiles] {
            candle_core::bail!(
                "mllama vision: aspect ratio mask has shape {:?}, expected [{images}, {tiles}]",
                aspect_ratio_mask.dims()
            );
        }
        let hidden = self.hidden;
        let dtype = self.class_embedding.dtype();
        let aspect_ratio_ids = aspect_ratio_ids
            .to_dtype(DType::U32)?
            .reshape((images, 1))?;

        let pixels =
            pixel_values
                .to_dtype(dtype)?
                .reshape((images * tiles, channels, height, width))?;
        let patches = self
            .patch_embedding
            .forward(&pixels)?
            .flatten_from(2)?
            .transpose(1, 2)?;
        let num_patches = patches.dim(1)?;
        let x = patches.reshape((images, tiles, num_patches, hidden))?;
        let x = self
            .pre_tile_positional_embedding
            .forward(&x, &aspect_ratio_ids)?;

        let x = x.reshape((images * tiles, num_patches, hidden))?;
        let class = self
            .class_embedding
            .reshape((1, 1, hidden))?
            .broadcast_as((images * tiles, 1, hidden))?;
        let x = Tensor::cat(&[&class, &x], 1)?;
        let tokens = num_patches + 1;
        if tokens != self.tokens_per_tile {
            candle_core::bail!(
                "mllama vision: tiles of {height}x{width} pixels make {tokens} tokens, the \
                 position embedding has {}",
                self.tokens_per_tile
            );
        }

        let x = x.reshape((images, tiles, tokens, hidden))?;
        let position = (&self.position_embedding * (1.0 - self.position_gate))?
            .reshape((1, 1, tokens, hidden))?;
        let x = x.broadcast_add(&position)?;
        let tile_position = (self
            .tile_position_embedding
            .forward(&aspect_ratio_ids)?
            .reshape((images, tiles, tokens, hidden))?
            * self.position_gate)?;
        let x = (x + tile_position)?;
        let x = self.layernorm_pre.forward(&x)?;

        let padded = tokens.div_ceil(8) * 8;
        let x = x.pad_with_zeros(2, 0, padded - tokens)?;
        let bias = attention_bias(aspect_ratio_mask, tokens, padded)?.to_device(x.device())?;

        let mut x = x.reshape((images, tiles * padded, hidden))?;
        let mut kept: Vec<Option<Tensor>> = vec![None; self.transformer.len()];
        for (i, layer) in self.transformer.iter().enumerate() {
            x = layer.forward(&x, &bias)?;
            if self.intermediate_layers.contains(&i) {
                kept[i] = Some(x.clone());
            }
        }
        let x = self.layernorm_post.forward(&x)?;

        let x = x.reshape((images, tiles, padded, hidden))?;
        let x = self
            .post_tile_positional_embedding
            .forward(&x, &aspect_ratio_ids)?;
        let mut x = x.reshape((images, tiles * padded, hidden))?;
        for layer in &self.global_transformer {
            x = layer.forward(&x, &bias)?;
        }
        let x = x
            .reshape((images, tiles, padded, hidden))?
            .narrow(2, 0, tokens)?;

        // Stacked on a new last axis, so for each hidden channel there is one value per listed
        // layer, in the order the config lists them.
        let intermediate = self
            .intermediate_layers
            .iter()
            .map(|&i| kept[i].clone())
            .collect::<Option<Vec<Tensor>>>()
            .ok_or_else(|| {
                candle_core::Error::Msg("mllama vision: intermediate layer missing".into())
            })?;
        if intermediate.is_empty() {
            return x.contiguous();
        }
        let stacked = Tensor::stack(&intermediate, D::Minus1)?
            .reshape((images, tiles, padded, hidden * intermediate.len()))?
            .narrow(2, 0, tokens)?;
        Tensor::cat(&[&x, &stacked], D::Minus1)?.contiguous()
    }
}

/// The additive attention bias over one image's `tiles × padded` tokens, `[images, 1, len,
/// len]`, as the reference builds it: a token counts as padding when its tile slot is empty
/// or it lies past the real tokens of its tile, and only padding-to-padding pairs are masked.
/// Real tokens therefore do attend to padding; matching that keeps the outputs equal to the
/// reference.
fn attention_bias(aspect_ratio_mask: &Tensor, tokens: usize, padded: usize) -> Result<Tensor> {
    let (images, tiles) = aspect_ratio_mask.dims2()?;
    let mask = aspect_ratio_mask
        .to_dtype(DType::F32)?
        .to_device(&candle_core::Device::Cpu)?
        .to_vec2::<f32>()?;
    let len = tiles * padded;
    let mut bias = vec![0f32; images * len * len];
    for (image, slots) in mask.iter().enumerate() {
        let is_pad: Vec<bool> = (0..len)
            .map(|i| slots[i / padded] == 0.0 || i % padded >= tokens)
            .collect();
        let block = &mut bias[image * len * len..(image + 1) * len * len];
        for (i, row) in block.chunks_mut(len).enumerate() {
            if is_pad[i] {
                for (b, &pad) in row.iter_mut().zip(&is_pad) {
                    if pad {
                        *b = f32::MIN;
                    }
                }
            }
        }
    }
    Tensor::from_vec(bias, (images, 1, len, len), &candle_core::Device::Cpu)
}
