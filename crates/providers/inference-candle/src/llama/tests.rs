//! The serving model against candle's reference Llama, across layouts, and against itself
//! under batching, chunked prefill and cache reuse.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};

use super::load::DenseWeights;
use super::{KvDtype, LlamaModel, SeqStep};
use crate::model_files::{self, Weights};
use crate::test_model::{self, GgufType, Preset, TestModelOptions};

/// A tiny model (seed 11) in safetensors and F32 GGUF, written once; None without the tokenizer.
fn models() -> Option<&'static (tempfile::TempDir, PathBuf, PathBuf)> {
    static MODELS: OnceLock<Option<(tempfile::TempDir, PathBuf, PathBuf)>> = OnceLock::new();
    MODELS
        .get_or_init(|| {
            let tiktoken = test_model::default_tokenizer_path();
            if !tiktoken.is_file() {
                eprintln!(
                    "skipped: no Llama 3 tokenizer at {}; run scripts/fetch-tokenizer.sh",
                    tiktoken.display()
                );
                return None;
            }
            let root = tempfile::tempdir().unwrap();
            let options = TestModelOptions {
                preset: Preset::Tiny,
                dtype: DType::F32,
                tiktoken_model: &tiktoken,
                seed: 11,
            };
            let hf = root.path().join("hf");
            test_model::create(&hf, &options).unwrap();
            let gguf = test_model::create_gguf(&root.path().join("gguf"), &options, GgufType::F32)
                .unwrap();
            Some((root, hf, gguf))
        })
        .as_ref()
}

fn load(location: &Path) -> LlamaModel {
    load_with(location, KvDtype::F32, 512)
}

fn load_with(location: &Path, kv_dtype: KvDtype, max_seq_len: usize) -> LlamaModel {
    let files = model_files::inspect(location).unwrap();
    let mut model = crate::engine_load::load_text_model(
        &files,
        &Device::Cpu,
        DenseWeights::F32,
        Some(max_seq_len),
        &mut |_, _| {},
    )
    .unwrap();
    model.kv_dtype = kv_dtype;
    model
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    crate::test_model::max_abs_diff(a, b).unwrap()
}

/// Logits after each prefix of `ids`, decoding one token at a time.
fn stepwise(model: &LlamaModel, ids: &[u32]) -> Vec<Tensor> {
    let mut cache = model.new_cache();
    ids.iter()
        .map(|id| {
            let mut steps = [SeqStep {
                tokens: std::slice::from_ref(id),
                cache: &mut cache,
            }];
            model.forward(&mut steps).unwrap().squeeze(0).unwrap()
        })
        .collect()
}

const PROMPT: [u32; 9] = [128000, 791, 4062, 14198, 39935, 35308, 927, 279, 16053];

#[test]
fn safetensors_logits_match_candles_reference_llama() {
    let Some((_, hf, _)) = models() else { return };
    let ours = load(hf);
    let files = model_files::inspect(hf).unwrap();
    let Weights::Safetensors { config, files } = &files.weights else {
        panic!("not safetensors")
    };
    let config = config.clone().into_config(false);
    let vb =
        unsafe { candle_nn::VarBuilder::from_mmaped_safetensors(files, DType::F32, &Device::Cpu) }
            .unwrap();
    let reference = candle_transformers::models::llama::Llama::load(vb, &config).unwrap();
    let mut cache =
        candle_transformers::models::llama::Cache::new(true, DType::F32, &config, &Device::Cpu)
            .unwrap();
    let input = Tensor::new(&PROMPT[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let expected = reference
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let mut our_cache = ours.new_cache();
    let got = ours
        .forward(&mut [SeqStep {
            tokens: &PROMPT,
            cache: &mut our_cache,
        }])
        .unwrap()
        .squeeze(0)
        .unwrap();
    let diff = max_diff(&got, &expected);
    assert!(diff < 1e-4, "max abs logit difference {diff}");
    // And token by token through the cache.
    let next = Tensor::new(&[PROMPT[0]], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let expected = reference
        .forward(&next, PROMPT.len(), &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let got = ours
        .forward(&mut [SeqStep {
            tokens: &PROMPT[..1],
            cache: &mut our_cache,
        }])
        .unwrap()
        .squeeze(0)
        .unwrap();
    assert!(max_diff(&got, &expected) < 1e-4);
}

#[test]
fn gguf_and_safetensors_of_one_model_agree() {
    let Some((_, hf, gguf)) = models() else {
        return;
    };
    let (a, b) = (load(hf), load(gguf));
    assert!(
        a.hyper.rope != b.hyper.rope,
        "GGUF carries rope_freqs divisors"
    );
    for (x, y) in stepwise(&a, &PROMPT)
        .iter()
        .zip(stepwise(&b, &PROMPT).iter())
    {
        let diff = max_diff(x, y);
        assert!(diff < 1e-3, "max abs logit difference {diff}");
    }
}

#[test]
fn a_batch_gives_each_sequence_its_own_logits() {
    let Some((_, hf, _)) = models() else { return };
    let model = load(hf);
    let other: Vec<u32> = PROMPT.iter().rev().copied().collect();
    let alone_a = stepwise(&model, &PROMPT);
    let alone_b = stepwise(&model, &other);
    // Both prompts prefilled in one pass, then decoded together.
    let (mut ca, mut cb) = (model.new_cache(), model.new_cache());
    let logits = model
        .forward(&mut [
            SeqStep {
                tokens: &PROMPT[..5],
                cache: &mut ca,
            },
            SeqStep {
                tokens: &other[..3],
                cache: &mut cb,
            },
        ])
        .unwrap();
    assert!(max_diff(&logits.get(0).unwrap(), &alone_a[4]) < 1e-4);
    assert!(max_diff(&logits.get(1).unwrap(), &alone_b[2]) < 1e-4);
    let logits = model
        .forward(&mut [
            SeqStep {
                tokens: &PROMPT[5..6],
                cache: &mut ca,
            },
            SeqStep {
                tokens: &other[3..4],
                cache: &mut cb,
            },
        ])
        .unwrap();
    assert!(max_diff(&logits.get(0).unwrap(), &alone_a[5]) < 1e-4);
    assert!(max_diff(&logits.get(1).unwrap(), &alone_b[3]) < 1e-4);
}

#[test]
fn a_truncated_cache_continues_like_a_fresh_one() {
    let Some((_, hf, _)) = models() else { return };
    let model = load(hf);
    let fresh = stepwise(&model, &PROMPT);
    let mut cache = model.new_cache();
    model
        .forward(&mut [SeqStep {
            tokens: &PROMPT,
            cache: &mut cache,
        }])
        .unwrap();
    cache.truncate(4);
    let logits = model
        .forward(&mut [SeqStep {
            tokens: &PROMPT[4..7],
            cache: &mut cache,
        }])
        .unwrap();
    assert!(max_diff(&logits.get(0).unwrap(), &fresh[6]) < 1e-4);
}

#[test]
fn the_gguf_embedded_tokenizer_matches_tokenizer_json() {
    let Some((_, hf, gguf)) = models() else {
        return;
    };
    let json = model_files::tokenizer_json(&model_files::TokenizerSource::Json(
        hf.join("tokenizer.json"),
    ))
    .unwrap();
    let embedded =
        model_files::tokenizer_json(&model_files::TokenizerSource::Gguf(gguf.clone())).unwrap();
    let a: tokenizers::Tokenizer = serde_json::from_value(json).unwrap();
    let b: tokenizers::Tokenizer = serde_json::from_value(embedded).unwrap();
    let text = "<|start_header_id|>user<|end_header_id|>\n\nHello, wörld! 12345 fn main() {}\n\t  spaced   out<|eot_id|>";
    let ids_a = a.encode(text, false).unwrap().get_ids().to_vec();
    let ids_b = b.encode(text, false).unwrap().get_ids().to_vec();
    assert_eq!(ids_a, ids_b);
    assert!(ids_a.contains(&llama_stack_llama3::EOT_ID));
    assert_eq!(b.decode(&ids_b, false).unwrap(), text);
}

/// Where a decode step's time goes, on the GGUF file in `PROFILE_GGUF`.
#[test]
#[ignore]
fn profile_decode_step() {
    let Ok(path) = std::env::var("PROFILE_GGUF") else {
        return;
    };
    let model = load(Path::new(&path));
    let mut cache = model.new_cache();
    model
        .forward(&mut [SeqStep {
            tokens: &PROMPT,
            cache: &mut cache,
        }])
        .unwrap();
    let time = |label: &str, n: usize, f: &mut dyn FnMut()| {
        f();
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        eprintln!(
            "{label}: {:.2} ms",
            t.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    };
    time(
        "decode step",
        std::env::var("PROFILE_STEPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
        &mut || {
            cache.truncate(PROMPT.len());
            model
                .forward(&mut [SeqStep {
                    tokens: &PROMPT[..1],
                    cache: &mut cache,
                }])
                .unwrap();
        },
    );
    let mut caches: Vec<_> = (0..4).map(|_| model.new_cache()).collect();
    for c in caches.iter_mut() {
        model
            .forward(&mut [SeqStep {
                tokens: &PROMPT,
                cache: c,
            }])
            .unwrap();
    }
    time("decode step, 4 sequences", 10, &mut || {
        let mut steps: Vec<SeqStep<'_>> = caches
            .iter_mut()
            .map(|c| {
                c.truncate(PROMPT.len());
                SeqStep {
                    tokens: &PROMPT[..1],
                    cache: c,
                }
            })
            .collect();
        model.forward(&mut steps).unwrap();
    });
    let x = Tensor::ones((1, model.hyper.dim), DType::F32, &Device::Cpu).unwrap();
    let l = &model.layers[0];
    time("layer matmuls x16", 5, &mut || {
        for _ in 0..16 {
            let _ = l.qkv.forward(&x).unwrap();
            let _ = l.wo.forward(&x).unwrap();
            let g = l.gate_up.forward_swiglu(&x).unwrap();
            let _ = l.w_down.forward(&g).unwrap();
        }
    });
    time("output", 5, &mut || {
        let _ = model.output.forward(&x).unwrap();
    });
    time("embedding", 5, &mut || {
        let _ = model
            .embed
            .embedding(&Tensor::new(&[5u32], &Device::Cpu).unwrap())
            .unwrap();
    });
}

/// Greedy decoding of `n` tokens after `prompt`, and the logits each was picked from.
fn greedy(model: &LlamaModel, prompt: &[u32], n: usize) -> (Vec<u32>, Vec<Tensor>) {
    let mut cache = model.new_cache();
    let (mut tokens, mut all_logits) = (Vec::new(), Vec::new());
    let mut input = prompt.to_vec();
    for _ in 0..n {
        let logits = model
            .forward(&mut [SeqStep {
                tokens: &input,
                cache: &mut cache,
            }])
            .unwrap()
            .squeeze(0)
            .unwrap();
        let next = logits.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        tokens.push(next);
        all_logits.push(logits);
        input = vec![next];
    }
    (tokens, all_logits)
}

#[test]
fn half_and_8_bit_caches_decode_like_f32() {
    let Some((_, hf, _)) = models() else { return };
    let (want, want_logits) = greedy(&load(hf), &PROMPT, 32);
    let spread = want_logits
        .iter()
        .map(|l| {
            let v: Vec<f32> = l.to_vec1().unwrap();
            v.iter().fold(0f32, |m, x| m.max(x.abs()))
        })
        .fold(0f32, f32::max);
    // Relative to the largest logit. f16 rounds each key and value by at most 2^-11 of itself
    // and q8_0 by half a step, 1/254 of its block's largest; attention averages those errors
    // and the residual stream dilutes them, so logits move by less than that fraction of
    // their size (measured: 1.4e-4 and 3.6e-3). Greedy choices then agree unless two logits
    // are closer than that, which the seeded model's 32 tokens here are not.
    for (dtype, tolerance) in [(KvDtype::F16, 1e-3), (KvDtype::Q8_0, 1e-2)] {
        let (got, logits) = greedy(&load_with(hf, dtype, 512), &PROMPT, 32);
        let diff = logits
            .iter()
            .zip(&want_logits)
            .map(|(a, b)| max_diff(a, b))
            .fold(0f32, f32::max);
        eprintln!("{dtype:?}: max logit diff {diff}, max |logit| {spread}");
        assert!(
            diff < tolerance * spread,
            "{dtype:?}: max logit diff {diff}"
        );
        assert_eq!(got, want, "{dtype:?}");
    }
}

/// Decode steps and a three-row step attend through the in-place kernel as through the tensor
/// path, for every cache type: the same sums in another order, so logits agree to f32
/// rounding and greedy tokens exactly.
#[test]
fn the_small_step_attention_kernel_matches_the_tensor_path() {
    let Some((_, hf, _)) = models() else { return };
    for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Q8_0] {
        let mut tensor_path = load_with(hf, dtype, 512);
        tensor_path.small_step_kernel = false;
        let kernel = load_with(hf, dtype, 512);
        let (want, want_logits) = greedy(&tensor_path, &PROMPT, 24);
        let (got, logits) = greedy(&kernel, &PROMPT, 24);
        assert_eq!(got, want, "{dtype:?}");
        for (a, b) in logits.iter().zip(&want_logits) {
            assert!(max_diff(a, b) < 1e-4, "{dtype:?}: {}", max_diff(a, b));
        }
        // Three rows at once, each seeing only the positions before it.
        let rows = |model: &LlamaModel| {
            let mut cache = model.new_cache();
            model
                .forward_rows(
                    &mut [SeqStep {
                        tokens: &PROMPT[..6],
                        cache: &mut cache,
                    }],
                    &[1],
                )
                .unwrap();
            model
                .forward_rows(
                    &mut [SeqStep {
                        tokens: &PROMPT[6..],
                        cache: &mut cache,
                    }],
                    &[3],
                )
                .unwrap()
        };
        let diff = max_diff(&rows(&kernel), &rows(&tensor_path));
        assert!(diff < 1e-4, "{dtype:?}: three rows differ by {diff}");
    }
}

#[test]
fn an_8_bit_cache_batches_reuses_and_verifies_drafts_like_fresh_sequences() {
    let Some((_, hf, _)) = models() else { return };
    let model = load_with(hf, KvDtype::Q8_0, 512);
    let fresh = stepwise(&model, &PROMPT);
    let other: Vec<u32> = PROMPT.iter().rev().copied().collect();
    let fresh_other = stepwise(&model, &other);
    // Prefilled together.
    let (mut ca, mut cb) = (model.new_cache(), model.new_cache());
    let logits = model
        .forward(&mut [
            SeqStep {
                tokens: &PROMPT,
                cache: &mut ca,
            },
            SeqStep {
                tokens: &other[..6],
                cache: &mut cb,
            },
        ])
        .unwrap();
    assert!(max_diff(&logits.get(0).unwrap(), &fresh[8]) < 1e-4);
    assert!(max_diff(&logits.get(1).unwrap(), &fresh_other[5]) < 1e-4);
    // A kept cache cut back to a shared prefix, then three tokens read as one drafted step
    // with the logits after each, beside a one-token decode of the other sequence.
    ca.truncate(4);
    let logits = model
        .forward_rows(
            &mut [
                SeqStep {
                    tokens: &PROMPT[4..7],
                    cache: &mut ca,
                },
                SeqStep {
                    tokens: &other[6..7],
                    cache: &mut cb,
                },
            ],
            &[3, 1],
        )
        .unwrap();
    for (row, position) in [(0, 4), (1, 5), (2, 6)] {
        assert!(max_diff(&logits.get(row).unwrap(), &fresh[position]) < 1e-4);
    }
    assert!(max_diff(&logits.get(3).unwrap(), &fresh_other[6]) < 1e-4);
}

#[test]
fn a_128k_context_allocates_only_what_it_holds() {
    let Some((_, hf, _)) = models() else { return };
    for dtype in [KvDtype::F32, KvDtype::Q8_0] {
        let model = load_with(hf, dtype, 131_072);
        assert_eq!(model.max_seq_len, 131_072);
        let mut cache = model.new_cache();
        assert_eq!(cache.allocated_bytes(), 0);
        model
            .forward(&mut [SeqStep {
                tokens: &PROMPT,
                cache: &mut cache,
            }])
            .unwrap();
        assert_eq!(cache.capacity(), 256);
        assert_eq!(cache.allocated_bytes(), 256 * model.kv_bytes_per_token());
        // The last positions of the context: the history is zeros, the rope is at 131071.
        let mut cache = model.new_cache();
        cache.reserve(131_070).unwrap();
        cache.advance(131_070);
        assert_eq!(cache.capacity(), 131_072);
        let logits = model
            .forward(&mut [SeqStep {
                tokens: &PROMPT[..2],
                cache: &mut cache,
            }])
            .unwrap();
        let values: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
        let past = model.forward(&mut [SeqStep {
            tokens: &PROMPT[..1],
            cache: &mut cache,
        }]);
        assert!(
            past.unwrap_err()
                .to_string()
                .contains("exceeds the served context")
        );
    }
}

/// Memory and speed of each KV cache dtype at long context, on the Llama 3.2 1B shape: a
/// Q4_0 GGUF written (about a minute) to `KV_BENCH_DIR` unless there already, else to a
/// temporary directory.
/// `KV_BENCH_PROMPT` (2048) tokens are read in engine-sized chunks, then
/// `KV_BENCH_DECODE` (16) decoded.
#[test]
#[ignore]
fn kv_cache_dtype_memory_and_speed_at_long_context() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (prompt_len, decode) = (env("KV_BENCH_PROMPT", 2048), env("KV_BENCH_DECODE", 16));
    let temporary = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("KV_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| temporary.path().to_path_buf());
    let mut path = dir.join("model.gguf");
    if !path.is_file() {
        let options = TestModelOptions {
            preset: Preset::OneB,
            dtype: DType::F32,
            tiktoken_model: &test_model::default_tokenizer_path(),
            seed: 5,
        };
        path = test_model::create_gguf(&dir, &options, GgufType::Q4_0).unwrap();
    }
    let prompt: Vec<u32> = (0..prompt_len as u32)
        .map(|i| 1000 + i * 7 % 50_000)
        .collect();
    for dtype in [KvDtype::F32, KvDtype::F16, KvDtype::Q8_0] {
        let mut model = load_with(&path, dtype, prompt_len + decode + 1);
        let mut cache = model.new_cache();
        let start = std::time::Instant::now();
        let mut logits = None;
        for chunk in prompt.chunks(256) {
            logits = Some(
                model
                    .forward(&mut [SeqStep {
                        tokens: chunk,
                        cache: &mut cache,
                    }])
                    .unwrap(),
            );
        }
        let prefill = start.elapsed().as_secs_f64();
        let first = logits.unwrap().argmax(1).unwrap().to_vec1::<u32>().unwrap();
        // The same decode through the in-place attention kernel and through the tensor path,
        // from the same prefilled cache.
        for kernel in [true, false] {
            model.small_step_kernel = kernel;
            cache.truncate(prompt_len);
            let mut next = first.clone();
            let start = std::time::Instant::now();
            for _ in 0..decode {
                let logits = model
                    .forward(&mut [SeqStep {
                        tokens: &next,
                        cache: &mut cache,
                    }])
                    .unwrap();
                next = logits.argmax(1).unwrap().to_vec1::<u32>().unwrap();
            }
            let per_token = start.elapsed().as_secs_f64() / decode as f64;
            eprintln!(
                "kv {} ({}): {:.1} MiB per 1k tokens, {:.0} MiB allocated at {} tokens; prefill \
                 {prompt_len} tokens {prefill:.1} s; decode {:.1} ms/token ({:.2} tok/s)",
                dtype.name(),
                if kernel {
                    "attention kernel"
                } else {
                    "tensor ops"
                },
                (model.kv_bytes_per_token() * 1024) as f64 / (1 << 20) as f64,
                cache.allocated_bytes() as f64 / (1 << 20) as f64,
                cache.len(),
                per_token * 1000.0,
                1.0 / per_token
            );
        }
    }
}

/// `dtype: auto` keeps a checkpoint's own precision: a bf16 checkpoint runs on the half kernels
/// exactly as with `dtype: bf16`, an f32 one exactly as with `dtype: f32`.
#[test]
fn auto_precision_is_the_checkpoints_own() {
    let Some((_root, hf, _)) = models() else {
        return;
    };
    let tiktoken = test_model::default_tokenizer_path();
    let bf16_dir = tempfile::tempdir().unwrap();
    let options = TestModelOptions {
        preset: Preset::Tiny,
        dtype: DType::BF16,
        tiktoken_model: &tiktoken,
        seed: 11,
    };
    test_model::create(bf16_dir.path(), &options).unwrap();
    let ids = [128000u32, 791, 4062, 14198];
    let run = |location: &Path, precision| {
        let files = model_files::inspect(location).unwrap();
        let model = crate::engine_load::load_text_model(
            &files,
            &Device::Cpu,
            precision,
            Some(64),
            &mut |_, _| {},
        )
        .unwrap();
        let half = matches!(model.layers[0].wo, super::linear::Linear::Half(_));
        (stepwise(&model, &ids), half)
    };
    for (location, explicit, half) in [
        (bf16_dir.path(), DenseWeights::Bf16, true),
        (hf.as_path(), DenseWeights::F32, false),
    ] {
        let (auto, auto_half) = run(location, DenseWeights::Stored);
        let (chosen, _) = run(location, explicit);
        assert_eq!(auto_half, half, "{explicit:?}");
        for (a, c) in auto.iter().zip(&chosen) {
            assert_eq!(max_diff(a, c), 0.0, "{explicit:?}");
        }
    }
}
