//! The GGUF test model (`test_model::create_gguf`): llama.cpp's Llama 3 metadata and tensor
//! layout, loadable by candle's GGUF Llama, and the same model as the safetensors one.
//!
//! Needs the Llama 3 tokenizer: scripts/fetch-tokenizer.sh.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, DType, Device, IndexOp, Tensor};
use candle_transformers::models::{llama, quantized_llama};
use llama_stack_provider_inference_candle::test_model::{self, GgufType, Preset, TestModelOptions};

const VOCAB: usize = 128_256;
// The tiny preset.
const HIDDEN: usize = 64;
const INTERMEDIATE: usize = 128;
const LAYERS: usize = 2;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;

fn tokenizer() -> PathBuf {
    let path = test_model::default_tokenizer_path();
    assert!(
        path.is_file(),
        "the Llama 3 tokenizer is missing at {}: run scripts/fetch-tokenizer.sh",
        path.display()
    );
    path
}

fn options(tiktoken_model: &Path) -> TestModelOptions<'_> {
    TestModelOptions {
        preset: Preset::Tiny,
        dtype: DType::F32,
        tiktoken_model,
        seed: 7,
    }
}

/// A tiny model, seed 7, written once per test binary in each format: `model.gguf` as `ty`
/// under `<ty>/`, and the safetensors layout under `safetensors/`.
fn model(ty: Option<GgufType>) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let root = DIR.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tiktoken = tokenizer();
    match ty {
        None => {
            let dir = root.join("safetensors");
            if !dir.join("model.safetensors").is_file() {
                test_model::create(&dir, &options(&tiktoken)).unwrap();
            }
            dir
        }
        Some(ty) => {
            let dir = root.join(ty.name());
            let path = dir.join("model.gguf");
            if !path.is_file() {
                let written = test_model::create_gguf(&dir, &options(&tiktoken), ty).unwrap();
                assert_eq!(written, path);
            }
            path
        }
    }
}

fn read(path: &Path) -> (Content, BufReader<File>) {
    let mut reader = BufReader::new(File::open(path).unwrap());
    let content = Content::read(&mut reader).unwrap();
    (content, reader)
}

fn meta<'a>(content: &'a Content, key: &str) -> &'a Value {
    content
        .metadata
        .get(key)
        .unwrap_or_else(|| panic!("metadata {key} is missing"))
}

fn u32_of(content: &Content, key: &str) -> u32 {
    meta(content, key).to_u32().unwrap()
}

fn string_of<'a>(content: &'a Content, key: &str) -> &'a str {
    meta(content, key).to_string().unwrap()
}

/// Every tensor llama.cpp's Llama loader reads, with its torch-order shape.
fn expected_tensors() -> Vec<(String, Vec<usize>)> {
    let kv = KV_HEADS * HEAD_DIM;
    let mut out = vec![
        ("token_embd.weight".to_string(), vec![VOCAB, HIDDEN]),
        ("output_norm.weight".to_string(), vec![HIDDEN]),
        ("rope_freqs.weight".to_string(), vec![HEAD_DIM / 2]),
    ];
    for i in 0..LAYERS {
        let p = format!("blk.{i}");
        out.extend([
            (format!("{p}.attn_norm.weight"), vec![HIDDEN]),
            (format!("{p}.attn_q.weight"), vec![HIDDEN, HIDDEN]),
            (format!("{p}.attn_k.weight"), vec![kv, HIDDEN]),
            (format!("{p}.attn_v.weight"), vec![kv, HIDDEN]),
            (format!("{p}.attn_output.weight"), vec![HIDDEN, HIDDEN]),
            (format!("{p}.ffn_norm.weight"), vec![HIDDEN]),
            (format!("{p}.ffn_gate.weight"), vec![INTERMEDIATE, HIDDEN]),
            (format!("{p}.ffn_up.weight"), vec![INTERMEDIATE, HIDDEN]),
            (format!("{p}.ffn_down.weight"), vec![HIDDEN, INTERMEDIATE]),
        ]);
    }
    out
}

#[test]
fn gguf_carries_llama3_hyper_parameters() {
    let (content, _) = read(&model(Some(GgufType::F32)));
    assert_eq!(string_of(&content, "general.architecture"), "llama");
    assert!(string_of(&content, "general.name").contains("tiny"));
    assert_eq!(u32_of(&content, "general.file_type"), 0);
    assert_eq!(u32_of(&content, "llama.context_length"), 131_072);
    assert_eq!(u32_of(&content, "llama.embedding_length"), HIDDEN as u32);
    assert_eq!(u32_of(&content, "llama.block_count"), LAYERS as u32);
    assert_eq!(
        u32_of(&content, "llama.feed_forward_length"),
        INTERMEDIATE as u32
    );
    assert_eq!(u32_of(&content, "llama.attention.head_count"), HEADS as u32);
    assert_eq!(
        u32_of(&content, "llama.attention.head_count_kv"),
        KV_HEADS as u32
    );
    assert_eq!(
        u32_of(&content, "llama.rope.dimension_count"),
        HEAD_DIM as u32
    );
    assert_eq!(u32_of(&content, "llama.vocab_size"), VOCAB as u32);
    let eps = meta(&content, "llama.attention.layer_norm_rms_epsilon");
    assert_eq!(eps.to_f32().unwrap(), 1e-5);
    let theta = meta(&content, "llama.rope.freq_base");
    assert_eq!(theta.to_f32().unwrap(), 500_000.0);
}

#[test]
fn gguf_carries_the_full_llama3_tokenizer() {
    let (content, _) = read(&model(Some(GgufType::F32)));
    assert_eq!(string_of(&content, "tokenizer.ggml.model"), "gpt2");
    assert_eq!(string_of(&content, "tokenizer.ggml.pre"), "llama-bpe");
    assert_eq!(u32_of(&content, "tokenizer.ggml.bos_token_id"), 128_000);
    assert_eq!(u32_of(&content, "tokenizer.ggml.eos_token_id"), 128_009);
    let template = string_of(&content, "tokenizer.chat_template");
    assert!(template.contains("<|start_header_id|>") && template.contains("<|eot_id|>"));

    let tokens = meta(&content, "tokenizer.ggml.tokens").to_vec().unwrap();
    let types = meta(&content, "tokenizer.ggml.token_type")
        .to_vec()
        .unwrap();
    assert_eq!(tokens.len(), VOCAB);
    assert_eq!(types.len(), VOCAB);
    let token = |id: usize| tokens[id].to_string().unwrap().as_str();
    let kind = |id: usize| types[id].to_i32().unwrap();
    assert_eq!(token(128_000), "<|begin_of_text|>");
    assert_eq!(token(128_009), "<|eot_id|>");
    // Numbered as in Meta's tokenizer.py: the named specials take reserved slots 0..=1 only.
    assert_eq!(token(128_255), "<|reserved_special_token_245|>");
    assert_eq!(kind(128_009), 3, "special tokens are control tokens");
    assert!((128_000..VOCAB).all(|id| kind(id) == 3));
    assert!((0..128_000).all(|id| kind(id) == 1));
    // GPT-2 byte-to-character form: "!" is itself, a space is "Ġ", byte 0 is "Ā".
    assert_eq!(token(0), "!");
    assert_eq!(token(220), "Ġ");
    assert!(tokens.iter().any(|t| t.to_string().unwrap() == "Ā"));
    assert!(tokens.iter().any(|t| t.to_string().unwrap() == "Ġthe"));

    let merges = meta(&content, "tokenizer.ggml.merges").to_vec().unwrap();
    assert!(merges.len() > 100_000, "{} merges", merges.len());
    assert!(merges.iter().all(|m| {
        let m = m.to_string().unwrap();
        matches!(m.split_once(' '), Some((l, r)) if !l.is_empty() && !r.is_empty() && !r.contains(' '))
    }));
    assert!(merges.iter().any(|m| m.to_string().unwrap() == "Ġ t"));
}

#[test]
fn gguf_has_every_llama_tensor_in_llama_cpp_naming() {
    let (content, mut reader) = read(&model(Some(GgufType::F32)));
    let expected = expected_tensors();
    for (name, shape) in &expected {
        let info = content
            .tensor_infos
            .get(name)
            .unwrap_or_else(|| panic!("tensor {name} is missing"));
        assert_eq!(info.shape.dims(), shape.as_slice(), "{name}");
        assert_eq!(info.ggml_dtype, GgmlDType::F32, "{name}");
    }
    assert_eq!(
        content.tensor_infos.len(),
        expected.len(),
        "no extra tensors"
    );
    assert!(
        !content.tensor_infos.contains_key("output.weight"),
        "tied embeddings"
    );

    // Llama 3 rope scaling for head_dim 16, theta 500000: the four fastest frequencies keep
    // their wavelength (< 2048 positions), the three slowest are slowed by the factor 32
    // (> 8192 positions) and the one between is smoothed.
    let factors: Vec<f32> = content
        .tensor(&mut reader, "rope_freqs.weight", &Device::Cpu)
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(factors.len(), HEAD_DIM / 2);
    assert_eq!(&factors[..4], &[1.0; 4]);
    assert!(factors[4] > 1.0 && factors[4] < 32.0, "{factors:?}");
    assert_eq!(&factors[5..], &[32.0; 3]);
}

fn forward_gguf(path: &Path, ids: &[u32]) -> Vec<f32> {
    let (content, mut reader) = read(path);
    let mut model =
        quantized_llama::ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
    let input = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let logits = model.forward(&input, 0).unwrap();
    assert_eq!(logits.dims(), &[1, VOCAB]);
    logits.squeeze(0).unwrap().to_vec1().unwrap()
}

#[test]
fn candle_runs_every_gguf_type() {
    for (ty, file_type, stored) in [
        (GgufType::F32, 0, GgmlDType::F32),
        (GgufType::F16, 1, GgmlDType::F16),
        (GgufType::Q8_0, 7, GgmlDType::Q8_0),
        (GgufType::Q4_0, 2, GgmlDType::Q4_0),
    ] {
        let path = model(Some(ty));
        let (content, _) = read(&path);
        assert_eq!(u32_of(&content, "general.file_type"), file_type, "{ty:?}");
        for (name, shape) in expected_tensors() {
            let info = &content.tensor_infos[&name];
            let want = if shape.len() == 1 {
                GgmlDType::F32
            } else {
                stored
            };
            assert_eq!(info.ggml_dtype, want, "{ty:?} {name}");
        }
        // <|begin_of_text|> "Hello" "," " world"
        let logits = forward_gguf(&path, &[128_000, 9906, 11, 1917]);
        assert!(logits.iter().all(|x| x.is_finite()), "{ty:?}");
        assert!(logits.iter().any(|&x| x != 0.0), "{ty:?}");
    }
}

fn gguf_matrix(path: &Path, name: &str) -> Tensor {
    let (content, mut reader) = read(path);
    let q: QTensor = content.tensor(&mut reader, name, &Device::Cpu).unwrap();
    q.dequantize(&Device::Cpu).unwrap()
}

fn safetensors_matrix(dir: &Path, name: &str) -> Tensor {
    let mut all =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    all.remove(name).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    test_model::max_abs_diff(a, b).unwrap()
}

#[test]
fn gguf_holds_the_safetensors_weights_of_the_same_seed() {
    let (gguf, hf) = (model(Some(GgufType::F32)), model(None));
    for (g, h) in [
        ("token_embd.weight", "model.embed_tokens.weight"),
        (
            "blk.1.attn_v.weight",
            "model.layers.1.self_attn.v_proj.weight",
        ),
        (
            "blk.1.ffn_gate.weight",
            "model.layers.1.mlp.gate_proj.weight",
        ),
        (
            "blk.1.ffn_down.weight",
            "model.layers.1.mlp.down_proj.weight",
        ),
    ] {
        let diff = max_abs_diff(&gguf_matrix(&gguf, g), &safetensors_matrix(&hf, h));
        assert_eq!(diff, 0.0, "{g}");
    }
}

/// Rope over `positions` for a `(1, heads, positions, head_dim)` tensor, interleaved pairs
/// (llama.cpp, GGUF) or halves (Hugging Face).
fn rope(x: &Tensor, interleaved: bool) -> Tensor {
    let positions = x.dim(2).unwrap();
    let inv: Vec<f32> = (0..HEAD_DIM / 2)
        .map(|i| 500_000f32.powf(-2.0 * i as f32 / HEAD_DIM as f32))
        .collect();
    let inv = Tensor::new(inv.as_slice(), &Device::Cpu).unwrap();
    let t = Tensor::arange(0u32, positions as u32, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let angles = t
        .unsqueeze(1)
        .unwrap()
        .broadcast_mul(&inv.unsqueeze(0).unwrap())
        .unwrap();
    let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
    if interleaved {
        candle_nn::rotary_emb::rope_i(x, &cos, &sin).unwrap()
    } else {
        candle_nn::rotary_emb::rope(x, &cos, &sin).unwrap()
    }
}

/// Attention scores of every position against every other, per head, after rope.
fn rope_scores(weight: &Tensor, x: &Tensor, heads: usize, interleaved: bool) -> Tensor {
    let positions = x.dim(0).unwrap();
    let projected = x.matmul(&weight.t().unwrap()).unwrap();
    let per_head = projected
        .reshape((1, positions, heads, HEAD_DIM))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    let rotated = rope(&per_head, interleaved);
    rotated.matmul(&rotated.t().unwrap()).unwrap()
}

#[test]
fn gguf_query_and_key_rows_are_in_llama_cpp_rope_order() {
    let (gguf, hf) = (model(Some(GgufType::F32)), model(None));
    let x = Tensor::randn(0f32, 1.0, (6, HIDDEN), &Device::Cpu).unwrap();
    for (g, h, heads) in [
        (
            "blk.0.attn_q.weight",
            "model.layers.0.self_attn.q_proj.weight",
            HEADS,
        ),
        (
            "blk.0.attn_k.weight",
            "model.layers.0.self_attn.k_proj.weight",
            KV_HEADS,
        ),
    ] {
        let (wg, wh) = (gguf_matrix(&gguf, g), safetensors_matrix(&hf, h));
        // Row `half * 8 + j` of a Hugging Face head is row `2j + half` of the GGUF head.
        for head in 0..heads {
            for j in 0..HEAD_DIM / 2 {
                for half in 0..2 {
                    let hf_row = wh.i(head * HEAD_DIM + half * HEAD_DIM / 2 + j).unwrap();
                    let gguf_row = wg.i(head * HEAD_DIM + 2 * j + half).unwrap();
                    assert_eq!(max_abs_diff(&hf_row, &gguf_row), 0.0, "{g} {head} {j}");
                }
            }
        }
        // So each format's own rope gives the same attention scores.
        let scores_hf = rope_scores(&wh, &x, heads, false);
        let scores_gguf = rope_scores(&wg, &x, heads, true);
        let scale = scores_hf
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(D::Minus1);
        let scale: f32 = scale.unwrap().to_scalar().unwrap();
        assert!(scale > 0.0);
        assert!(
            max_abs_diff(&scores_hf, &scores_gguf) <= 1e-5 * scale.max(1.0),
            "{g}"
        );
    }
}

#[test]
fn one_token_logits_match_the_safetensors_model() {
    // One position: rope is the identity there, so candle's GGUF Llama (which ignores
    // rope_freqs.weight) and its safetensors Llama (which applies Llama 3 rope scaling) must
    // agree exactly up to float error if every tensor is named and laid out right.
    let (gguf, hf) = (model(Some(GgufType::F32)), model(None));
    let gguf_logits = forward_gguf(&gguf, &[9906]);

    let config: llama::LlamaConfig =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    let config = config.into_config(false);
    let weights = [hf.join("model.safetensors")];
    // SAFETY: the file was written by this test and is not modified while mapped.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &Device::Cpu)
    }
    .unwrap();
    let model = llama::Llama::load(vb, &config).unwrap();
    let mut cache = llama::Cache::new(true, DType::F32, &config, &Device::Cpu).unwrap();
    let input = Tensor::new(&[9906u32], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let hf_logits: Vec<f32> = model
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(hf_logits.len(), gguf_logits.len());
    let worst = hf_logits
        .iter()
        .zip(&gguf_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let largest = hf_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(largest > 0.0);
    assert!(
        worst <= 1e-4 * largest.max(1.0),
        "worst {worst}, largest {largest}"
    );
}
