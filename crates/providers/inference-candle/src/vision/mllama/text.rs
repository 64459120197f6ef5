//! The Mllama text decoder: Llama 3 self-attention layers with gated cross-attention layers
//! (reading the projected image features) in place of some of them.

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use super::config::{MllamaTextConfig, RopeScaling};
use super::{attend, tanh_gate as gate};

/// Attention of query heads over key/value heads that each serve `groups` consecutive query
/// heads. The query heads of a group are stacked as extra rows of their key/value head, so the
/// keys and values are read in place: a cross-attention layer's image keys are thousands of
/// rows, and copying them per query head would cost more than the attention itself.
fn grouped_attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    groups: usize,
) -> Result<Tensor> {
    if groups == 1 {
        return attend(q, k, v, bias);
    }
    let (b, heads, len, dim) = q.dims4()?;
    let q = q
        .contiguous()?
        .reshape((b, heads / groups, groups * len, dim))?;
    // Rows are (query head in group, token): the bias repeats once per query head.
    let bias = match bias {
        Some(bias) => Some(Tensor::cat(&vec![bias; groups], bias.rank() - 2)?),
        None => None,
    };
    attend(&q, k, v, bias.as_ref())?.reshape((b, heads, len, dim))
}

/// Rotary frequencies; cos/sin are computed for the positions of each call, so nothing grows
/// with the context length.
struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    fn new(config: &MllamaTextConfig) -> Result<Self> {
        let dim = config.head_dim();
        let theta = config.rope_theta() as f32;
        let mut inv_freq: Vec<f32> = (0..dim / 2)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / dim as f32))
            .collect();
        if let RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } = config.rope_scaling()?
        {
            let (factor, low, high) = (
                factor as f32,
                low_freq_factor as f32,
                high_freq_factor as f32,
            );
            let old_len = original_max_position_embeddings as f32;
            let low_wavelen = old_len / low;
            let high_wavelen = old_len / high;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                if wavelen > low_wavelen {
                    *f /= factor;
                } else if wavelen >= high_wavelen {
                    let smooth = (old_len / wavelen - low) / (high - low);
                    *f = (1.0 - smooth) * *f / factor + smooth * *f;
                }
            }
        }
        Ok(Rope { inv_freq })
    }

    /// cos and sin, each `[len, head_dim / 2]`, for positions `start..start + len`.
    fn cos_sin(
        &self,
        start: usize,
        len: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for pos in start..start + len {
            for &f in &self.inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (len, half), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (len, half), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }
}

/// A decoder projection, kept as loaded or quantized at load time (`quantize:`). Quantized
/// matrices run on the engine's own kernels, as GGUF weights of the same types do.
enum Proj {
    Dense(Linear),
    Quantized(crate::llama::Linear),
}

impl Proj {
    fn new(config: &MllamaTextConfig, weight: Tensor) -> Result<Self> {
        match config.weight_quant {
            None => Ok(Proj::Dense(Linear::new(weight, None))),
            Some(ty) => {
                let quantized = QTensor::quantize(&weight.to_dtype(DType::F32)?, ty)?;
                Ok(Proj::Quantized(crate::llama::Linear::from_qtensor(
                    quantized,
                )?))
            }
        }
    }
}

impl Module for Proj {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Proj::Dense(linear) => linear.forward(x),
            Proj::Quantized(matrix) => {
                // The kernels take rows of f32 activations.
                let (dtype, dims) = (x.dtype(), x.dims().to_vec());
                let cols = dims[dims.len() - 1];
                let rows = x.elem_count() / cols;
                let x = x.to_dtype(DType::F32)?.reshape((rows, cols))?;
                let out = matrix.forward(&x)?;
                let mut shape = dims;
                *shape.last_mut().expect("a matrix input has a last axis") = out.dim(1)?;
                out.reshape(shape)?.to_dtype(dtype)
            }
        }
    }
}

/// The `[out, in]` weight at `vb`, as a [`Proj`].
fn proj(config: &MllamaTextConfig, in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Proj> {
    Proj::new(config, vb.get((out_dim, in_dim), "weight")?)
}

struct Mlp {
    gate_proj: Proj,
    up_proj: Proj,
    down_proj: Proj,
}

impl Mlp {
    fn load(config: &MllamaTextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        Ok(Mlp {
            gate_proj: proj(config, h, i, vb.pp("gate_proj"))?,
            up_proj: proj(config, h, i, vb.pp("up_proj"))?,
            down_proj: proj(config, i, h, vb.pp("down_proj"))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.gate_proj.forward(x)?.silu()?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}

struct Heads {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Heads {
    fn new(config: &MllamaTextConfig) -> Self {
        Heads {
            heads: config.num_attention_heads,
            kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim(),
        }
    }

    /// `[1, len, heads * head_dim]` → `[1, heads, len, head_dim]`.
    fn split(&self, x: &Tensor, heads: usize) -> Result<Tensor> {
        let (b, len, _) = x.dims3()?;
        x.reshape((b, len, heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn merge(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, len, _) = x.dims4()?;
        x.transpose(1, 2)?
            .reshape((b, len, self.heads * self.head_dim))
    }
}

struct SelfAttentionLayer {
    input_layernorm: RmsNorm,
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    heads: Heads,
}

impl SelfAttentionLayer {
    fn load(config: &MllamaTextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd) = (config.hidden_size, config.head_dim());
        let attn = vb.pp("self_attn");
        Ok(SelfAttentionLayer {
            input_layernorm: candle_nn::rms_norm(h, config.rms_norm_eps, vb.pp("input_layernorm"))?,
            q_proj: proj(
                config,
                h,
                config.num_attention_heads * hd,
                attn.pp("q_proj"),
            )?,
            k_proj: proj(
                config,
                h,
                config.num_key_value_heads * hd,
                attn.pp("k_proj"),
            )?,
            v_proj: proj(
                config,
                h,
                config.num_key_value_heads * hd,
                attn.pp("v_proj"),
            )?,
            o_proj: proj(
                config,
                config.num_attention_heads * hd,
                h,
                attn.pp("o_proj"),
            )?,
            post_attention_layernorm: candle_nn::rms_norm(
                h,
                config.rms_norm_eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::load(config, vb.pp("mlp"))?,
            heads: Heads::new(config),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        causal: Option<&Tensor>,
        cache: &mut Option<(Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let q = self
            .heads
            .split(&self.q_proj.forward(&h)?, self.heads.heads)?;
        let k = self
            .heads
            .split(&self.k_proj.forward(&h)?, self.heads.kv_heads)?;
        let v = self
            .heads
            .split(&self.v_proj.forward(&h)?, self.heads.kv_heads)?;
        let (cos, sin) = rope;
        let q = candle_nn::rotary_emb::rope(&q, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k, cos, sin)?;
        let (k, v) = match cache.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(&[&past_k, &k], 2)?,
                Tensor::cat(&[&past_v, &v], 2)?,
            ),
            None => (k, v),
        };
        *cache = Some((k.clone(), v.clone()));
        let groups = self.heads.heads / self.heads.kv_heads;
        let out = grouped_attend(&q, &k, &v, causal, groups)?;
        let x = (x + self.o_proj.forward(&self.heads.merge(&out)?)?)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        x + mlp
    }
}

/// The keys and values one cross-attention layer reads, computed once per image.
#[derive(Clone)]
pub struct CrossKv {
    k: Tensor,
    v: Tensor,
}

/// How the new tokens of one call see the image tokens.
pub struct CrossMask {
    /// `[1, 1, len, vision_tokens]`, added to the attention scores.
    pub bias: Tensor,
    /// `[1, len, 1]`: 0 for tokens that may see no tile at all, whose cross-attention MLP
    /// output is then dropped.
    pub rows: Tensor,
}

struct CrossAttentionLayer {
    input_layernorm: RmsNorm,
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    attn_gate: f64,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
    mlp_gate: f64,
    heads: Heads,
}

impl CrossAttentionLayer {
    fn load(config: &MllamaTextConfig, vb: VarBuilder) -> Result<Self> {
        let (h, hd, eps) = (config.hidden_size, config.head_dim(), config.rms_norm_eps);
        let attn = vb.pp("cross_attn");
        Ok(CrossAttentionLayer {
            input_layernorm: candle_nn::rms_norm(h, eps, vb.pp("input_layernorm"))?,
            q_proj: proj(
                config,
                h,
                config.num_attention_heads * hd,
                attn.pp("q_proj"),
            )?,
            k_proj: proj(
                config,
                h,
                config.num_key_value_heads * hd,
                attn.pp("k_proj"),
            )?,
            v_proj: proj(
                config,
                h,
                config.num_key_value_heads * hd,
                attn.pp("v_proj"),
            )?,
            o_proj: proj(
                config,
                config.num_attention_heads * hd,
                h,
                attn.pp("o_proj"),
            )?,
            q_norm: candle_nn::rms_norm(hd, eps, attn.pp("q_norm"))?,
            k_norm: candle_nn::rms_norm(hd, eps, attn.pp("k_norm"))?,
            attn_gate: gate(&vb, "cross_attn_attn_gate")?,
            post_attention_layernorm: candle_nn::rms_norm(
                h,
                eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::load(config, vb.pp("mlp"))?,
            mlp_gate: gate(&vb, "cross_attn_mlp_gate")?,
            heads: Heads::new(config),
        })
    }

    /// `vision`: `[1, vision_tokens, hidden]`, the projected image features.
    fn kv(&self, vision: &Tensor) -> Result<CrossKv> {
        let k = self
            .heads
            .split(&self.k_proj.forward(vision)?, self.heads.kv_heads)?;
        let v = self
            .heads
            .split(&self.v_proj.forward(vision)?, self.heads.kv_heads)?;
        Ok(CrossKv {
            k: self.k_norm.forward(&k)?,
            v,
        })
    }

    fn forward(&self, x: &Tensor, kv: &CrossKv, mask: Option<&CrossMask>) -> Result<Tensor> {
        let h = self.input_layernorm.forward(x)?;
        let q = self
            .heads
            .split(&self.q_proj.forward(&h)?, self.heads.heads)?;
        let q = self.q_norm.forward(&q)?;
        let groups = self.heads.heads / self.heads.kv_heads;
        let out = grouped_attend(&q, &kv.k, &kv.v, mask.map(|m| &m.bias), groups)?;
        // Tokens that see no tile still get the attention output (spread evenly over all
        // image tokens); only the MLP output is dropped for them, as in the reference.
        let attn = self.o_proj.forward(&self.heads.merge(&out)?)?;
        let x = (x + (attn * self.attn_gate)?)?;
        let mut mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?;
        if let Some(mask) = mask {
            mlp = mlp.broadcast_mul(&mask.rows.to_dtype(mlp.dtype())?)?;
        }
        x + (mlp * self.mlp_gate)?
    }
}

enum Layer {
    SelfAttention(SelfAttentionLayer),
    CrossAttention(CrossAttentionLayer),
}

/// What a sequence has accumulated in the decoder: self-attention keys and values for every
/// token so far, and the image's cross-attention keys and values.
pub struct TextCache {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<Option<CrossKv>>,
    len: usize,
}

impl TextCache {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn has_image(&self) -> bool {
        self.cross_kv.iter().any(Option::is_some)
    }

    /// Forgets every token from `len` on; the image's keys and values stay.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for slot in &mut self.self_kv {
            *slot = match slot.take() {
                Some(_) if len == 0 => None,
                Some((k, v)) => Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?)),
                None => None,
            };
        }
        self.len = len;
        Ok(())
    }
}

pub struct TextModel {
    embed_tokens: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Proj,
    rope: Rope,
    max_positions: usize,
}

impl TextModel {
    /// `vb` at the decoder (`…embed_tokens`, `…layers`, `…norm`); `lm_head` at the output
    /// projection, or `None` when it shares the embedding's weights.
    pub fn load(
        config: &MllamaTextConfig,
        vb: VarBuilder,
        lm_head: Option<VarBuilder>,
    ) -> Result<Self> {
        let h = config.hidden_size;
        // Eight rows past the vocabulary hold the image token and spares.
        let embed_tokens = candle_nn::embedding(config.vocab_size + 8, h, vb.pp("embed_tokens"))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp("layers").pp(i);
                Ok(if config.cross_attention_layers.contains(&i) {
                    Layer::CrossAttention(CrossAttentionLayer::load(config, vb)?)
                } else {
                    Layer::SelfAttention(SelfAttentionLayer::load(config, vb)?)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let lm_head = match lm_head {
            Some(vb) => proj(config, h, config.vocab_size, vb)?,
            None => Proj::new(
                config,
                embed_tokens.embeddings().narrow(0, 0, config.vocab_size)?,
            )?,
        };
        Ok(TextModel {
            embed_tokens,
            layers,
            norm: candle_nn::rms_norm(h, config.rms_norm_eps, vb.pp("norm"))?,
            lm_head,
            rope: Rope::new(config)?,
            max_positions: config.max_position_embeddings,
        })
    }

    pub fn new_cache(&self) -> TextCache {
        TextCache {
            self_kv: vec![None; self.layers.len()],
            cross_kv: vec![None; self.layers.len()],
            len: 0,
        }
    }

    /// Stores each cross-attention layer's keys and values for `vision`
    /// (`[1, vision_tokens, hidden]`), replacing any earlier image's.
    pub fn set_image(&self, cache: &mut TextCache, vision: &Tensor) -> Result<()> {
        for (layer, slot) in self.layers.iter().zip(&mut cache.cross_kv) {
            if let Layer::CrossAttention(layer) = layer {
                *slot = Some(layer.kv(vision)?);
            }
        }
        Ok(())
    }

    /// Runs `ids` (`[1, len]`, u32) after the tokens already in `cache` and returns the logits
    /// at the last `last` of them (all when `None`), `[1, rows, vocab]` in f32. Cross-attention
    /// layers are skipped while the cache holds no image.
    pub fn forward(
        &self,
        ids: &Tensor,
        cache: &mut TextCache,
        cross_mask: Option<&CrossMask>,
        last: Option<usize>,
    ) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let start = cache.len;
        if start + len > self.max_positions {
            candle_core::bail!(
                "mllama: {} tokens exceed the model's {} positions",
                start + len,
                self.max_positions
            );
        }
        let mut x = self.embed_tokens.forward(ids)?;
        let (device, dtype) = (x.device().clone(), x.dtype());
        let rope = self.rope.cos_sin(start, len, dtype, &device)?;
        let causal = causal_bias(start, len, &device)?;
        for ((layer, self_kv), cross_kv) in self
            .layers
            .iter()
            .zip(&mut cache.self_kv)
            .zip(&cache.cross_kv)
        {
            x = match layer {
                Layer::SelfAttention(layer) => {
                    layer.forward(&x, &rope, causal.as_ref(), self_kv)?
                }
                Layer::CrossAttention(layer) => match cross_kv {
                    Some(kv) => layer.forward(&x, kv, cross_mask)?,
                    None => x,
                },
            };
        }
        cache.len += len;
        // A prompt chunk needs only its last rows' logits: the vocabulary projection of the
        // others would cost more than the chunk's whole decoder pass on a small model.
        let x = match last {
            Some(rows) if rows < len => x.narrow(1, len - rows, rows)?,
            _ => x,
        };
        let x = self.norm.forward(&x)?;
        self.lm_head.forward(&x)?.to_dtype(DType::F32)
    }
}

/// `[len, start + len]`: new token `i` sees every cached token and the new ones up to itself.
/// `None` for a single token, which sees everything.
fn causal_bias(start: usize, len: usize, device: &Device) -> Result<Option<Tensor>> {
    if len == 1 {
        return Ok(None);
    }
    let total = start + len;
    let bias: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(bias, (len, total), device).map(Some)
}
