#!/usr/bin/env bash
# Builds the server and serves the `local` distribution. Without LLAMA_MODEL_PATH it writes a
# random-weight test model to ~/.llama/test-models/tiny first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-tokenizer.sh >/dev/null
cargo build --bin llama-stack
if [ -z "${LLAMA_MODEL_PATH:-}" ]; then
  LLAMA_MODEL_PATH="$HOME/.llama/test-models/tiny"
  if [ ! -f "$LLAMA_MODEL_PATH/config.json" ]; then
    target/debug/llama-stack model create-test "$LLAMA_MODEL_PATH" --preset tiny
  fi
  export LLAMA_MODEL_PATH
fi
exec target/debug/llama-stack run local "$@"
