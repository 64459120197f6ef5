//! `llama-stack model ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use llama_stack_provider_inference_candle::hub;
use llama_stack_provider_inference_candle::test_model::{self, GgufType, Preset, TestModelOptions};

use crate::model_hub;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a random-weight Llama 3 model, for tests and trials.
    ///
    /// `--format safetensors` writes the Hugging Face layout: config.json, model.safetensors,
    /// tokenizer.json, tokenizer_config.json, generation_config.json. `--format gguf` writes
    /// model.gguf (llama.cpp's Llama 3 layout, with the full tokenizer and rope scaling in its
    /// metadata; llama.cpp and candle load it) plus tokenizer.json and tokenizer_config.json.
    /// One seed gives the same weights in both formats.
    CreateTest {
        /// Directory to write (created if needed).
        dir: PathBuf,
        /// Model size: `tiny` (2 layers, loads instantly), `small` (2 layers, hidden 256: rows
        /// long enough for llama.cpp's K-quants), `1b` or `3b` (the Llama 3.2 1B and 3B shapes),
        /// or `vision-tiny` (a Llama 3.2 Vision checkpoint on 112-pixel tiles; safetensors).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// File format of the weights.
        #[arg(long, value_enum, default_value_t = Format::Safetensors)]
        format: Format,
        /// Stored weight precision (safetensors).
        #[arg(long, value_enum, default_value_t = WeightType::F32)]
        dtype: WeightType,
        /// Storage of the weight matrices (gguf; default f32). Norms stay f32.
        #[arg(long, value_enum)]
        quant: Option<Quant>,
        /// Meta's Llama 3 `tokenizer.model` (tiktoken format); see scripts/fetch-tokenizer.sh.
        #[arg(long, env = "LLAMA3_TOKENIZER_MODEL")]
        tokenizer: Option<PathBuf>,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Download a model from the Hugging Face Hub into the Hugging Face cache, where the
    /// server finds it by repository id (leave model_path empty).
    ///
    /// Without --include it fetches the files of the layout the repository offers: config,
    /// tokenizer and *.safetensors (Hugging Face), the one .gguf file, or Meta's params.json,
    /// consolidated.*.pth and tokenizer.model. HF_TOKEN authenticates (gated models), and
    /// HF_ENDPOINT replaces https://huggingface.co. Run it again after an interruption:
    /// complete files are kept and a partial one resumes.
    Download {
        /// Repository id, e.g. meta-llama/Llama-3.2-1B-Instruct.
        repo_id: String,
        /// Branch, tag or commit to fetch.
        #[arg(long, default_value = "main")]
        revision: String,
        /// Fetch only files matching these globs (`*` also matches `/`), e.g.
        /// --include '*Q4_K_M.gguf' or --include 'original/*'.
        #[arg(long, value_name = "GLOB", num_args = 1..)]
        include: Vec<String>,
        /// Hugging Face cache to fill; defaults to $HF_HUB_CACHE, then $HF_HOME/hub, then
        /// ~/.cache/huggingface/hub (the server's default too).
        #[arg(long, value_name = "DIR")]
        hf_cache_dir: Option<String>,
    },
    /// List the models on this machine: the Hugging Face cache and ~/.llama/checkpoints.
    List {
        /// Hugging Face cache to list (default as for `download`).
        #[arg(long, value_name = "DIR")]
        hf_cache_dir: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Safetensors,
    Gguf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum WeightType {
    F32,
    Bf16,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Quant {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

impl From<Quant> for GgufType {
    fn from(q: Quant) -> GgufType {
        match q {
            Quant::F32 => GgufType::F32,
            Quant::F16 => GgufType::F16,
            Quant::Q8_0 => GgufType::Q8_0,
            Quant::Q4_0 => GgufType::Q4_0,
        }
    }
}

pub fn execute(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Download {
            repo_id,
            revision,
            include,
            hf_cache_dir,
        } => model_hub::download(hub::DownloadOptions {
            repo_id,
            revision,
            include,
            hf_cache_dir,
        }),
        ModelCommand::List { hf_cache_dir, json } => model_hub::list(hf_cache_dir.as_deref(), json),
        ModelCommand::CreateTest {
            dir,
            preset,
            format,
            dtype,
            quant,
            tokenizer,
            seed,
        } => {
            let preset: Preset = preset.parse().map_err(anyhow::Error::msg)?;
            match format {
                Format::Gguf if dtype == WeightType::Bf16 => {
                    anyhow::bail!(
                        "--dtype is for safetensors; GGUF takes --quant f32|f16|q8_0|q4_0"
                    )
                }
                Format::Safetensors if quant.is_some() => {
                    anyhow::bail!(
                        "--quant is for --format gguf; safetensors takes --dtype f32|bf16"
                    )
                }
                _ => {}
            }
            let tokenizer = tokenizer.unwrap_or_else(test_model::default_tokenizer_path);
            let options = TestModelOptions {
                preset,
                dtype: match dtype {
                    WeightType::F32 => candle_core::DType::F32,
                    WeightType::Bf16 => candle_core::DType::BF16,
                },
                tiktoken_model: &tokenizer,
                seed,
            };
            let written = match format {
                Format::Safetensors => test_model::create(&dir, &options).map(|()| dir.clone()),
                Format::Gguf => {
                    let ty = quant.map_or(GgufType::F32, GgufType::from);
                    test_model::create_gguf(&dir, &options, ty)
                }
            };
            let written = written
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("writing a test model to {}", dir.display()))?;
            println!("{}", written.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
