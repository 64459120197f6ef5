//! `llama-stack model ...`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use llama_stack_provider_inference_candle::test_model::{self, Preset, TestModelOptions};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Write a random-weight Llama 3 model in Hugging Face layout, for tests and trials.
    CreateTest {
        /// Directory to write (created if needed).
        dir: PathBuf,
        /// Model size: `tiny` (2 layers, loads instantly) or `1b` (the Llama 3.2 1B shape).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// File format of the weights.
        #[arg(long, value_enum, default_value_t = Format::Safetensors)]
        format: Format,
        /// Stored weight precision.
        #[arg(long, value_enum, default_value_t = WeightType::F32)]
        dtype: WeightType,
        /// Meta's Llama 3 `tokenizer.model` (tiktoken format); see scripts/fetch-tokenizer.sh.
        #[arg(long, env = "LLAMA3_TOKENIZER_MODEL")]
        tokenizer: Option<PathBuf>,
        /// Seed of the random weights.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    Safetensors,
    Gguf,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum WeightType {
    F32,
    Bf16,
}

fn default_tokenizer() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".llama/tokenizer/llama3/tokenizer.model")
}

pub fn execute(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::CreateTest {
            dir,
            preset,
            format,
            dtype,
            tokenizer,
            seed,
        } => {
            let preset: Preset = preset.parse().map_err(anyhow::Error::msg)?;
            if format == Format::Gguf {
                anyhow::bail!(
                    "--format gguf is not built yet; write safetensors (the default) instead"
                );
            }
            let tokenizer = tokenizer.unwrap_or_else(default_tokenizer);
            let options = TestModelOptions {
                preset,
                dtype: match dtype {
                    WeightType::F32 => candle_core::DType::F32,
                    WeightType::Bf16 => candle_core::DType::BF16,
                },
                tiktoken_model: &tokenizer,
                seed,
            };
            test_model::create(&dir, &options)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("writing a test model to {}", dir.display()))?;
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
