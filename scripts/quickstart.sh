#!/usr/bin/env bash
# Builds the server and serves the `local` distribution with a real Llama 3.2 1B Instruct: a
# Q4_K_M GGUF fetched from the Hugging Face Hub into the Hugging Face cache (progress shown; an
# interrupted download resumes on the next run). Only where the Hub cannot be reached and the
# GGUF is not cached yet does it serve a random-weight test model instead, registered as
# test/random-llama3-tiny, under a banner saying its answers are noise. It ends by printing the
# playground URL. Arguments go to `llama-stack run local` (e.g. --port 8400).
#
# Env:
#   LLAMA_MODEL_PATH      serve this model folder or GGUF file as it is (INFERENCE_MODEL names it)
#   LLAMA_STACK_BIN       an already built llama-stack binary; skips `cargo build`
#   QUICKSTART_GGUF_REPO  Hub repository of the GGUF (default bartowski/Llama-3.2-1B-Instruct-GGUF)
#   QUICKSTART_GGUF_FILE  the file in it (default Llama-3.2-1B-Instruct-Q4_K_M.gguf)
#   QUICKSTART_MODEL_ID   the id it registers under (default meta-llama/Llama-3.2-1B-Instruct)
#   QUICKSTART_PROBE_TIMEOUT  seconds to wait for the Hub to answer (default 5)
#   HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE: as for `llama-stack model download`
set -euo pipefail
# A relative LLAMA_STACK_BIN means one under the caller's folder, which the cd below leaves.
if [[ "${LLAMA_STACK_BIN:-}" == */* && "$LLAMA_STACK_BIN" != /* ]]; then
    LLAMA_STACK_BIN="$PWD/$LLAMA_STACK_BIN"
fi
cd "$(dirname "$0")/.."

gguf_repo="${QUICKSTART_GGUF_REPO:-bartowski/Llama-3.2-1B-Instruct-GGUF}"
gguf_file="${QUICKSTART_GGUF_FILE:-Llama-3.2-1B-Instruct-Q4_K_M.gguf}"
model_id="${QUICKSTART_MODEL_ID:-meta-llama/Llama-3.2-1B-Instruct}"
test_model_id="test/random-llama3-tiny"
endpoint="${HF_ENDPOINT:-https://huggingface.co}"
endpoint="${endpoint%/}"
probe_timeout="${QUICKSTART_PROBE_TIMEOUT:-5}"

# The port the server will listen on, by the server's own precedence: --port, then the
# LLAMA_STACK_PORT environment variable, then --env LLAMA_STACK_PORT=N (which fills
# server.port in run.yaml), then run.yaml's default.
flag_port="" env_flag_port="" user_model_path="${LLAMA_MODEL_PATH:-}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    arg="${args[i]}"
    value=""
    case "$arg" in
        --port) flag_port="${args[i + 1]:-}" ;;
        --port=*) flag_port="${arg#--port=}" ;;
        --env) value="${args[i + 1]:-}" ;;
        --env=*) value="${arg#--env=}" ;;
    esac
    case "$value" in
        LLAMA_STACK_PORT=*) env_flag_port="${value#LLAMA_STACK_PORT=}" ;;
        # `--env` beats the process environment, so a model given that way is the user's too.
        LLAMA_MODEL_PATH=?*) user_model_path="${value#LLAMA_MODEL_PATH=}" ;;
    esac
done
port="${flag_port:-${LLAMA_STACK_PORT:-${env_flag_port:-8321}}}"
playground="http://localhost:${port}/playground"

# GET a URL within a timeout. `any`: succeeds on any HTTP answer (the server is there);
# `ok`: only on a 2xx. curl where installed, else the python3 the tokenizer fetch needs anyway.
http_get() {
    local url="$1" timeout="$2" want="$3"
    if command -v curl >/dev/null 2>&1; then
        local fail=()
        [[ "$want" == ok ]] && fail=(--fail)
        curl --silent --output /dev/null --max-time "$timeout" "${fail[@]}" "$url"
        return
    fi
    python3 - "$url" "$timeout" "$want" <<'PY'
import sys, urllib.error, urllib.request
url, timeout, want = sys.argv[1], float(sys.argv[2]), sys.argv[3]
try:
    urllib.request.urlopen(url, timeout=timeout).close()
except urllib.error.HTTPError:
    sys.exit(0 if want == "any" else 1)
except Exception:
    sys.exit(1)
PY
}

# Sets `unreachable` to why the Hub is out of reach, for the messages below.
unreachable=""
hub_reachable() {
    if [[ -n "${HF_HUB_OFFLINE:-}" && "${HF_HUB_OFFLINE}" != 0 ]]; then
        unreachable="HF_HUB_OFFLINE is set, so the Hugging Face Hub is not contacted"
        return 1
    fi
    if ! http_get "$endpoint/api/models/$gguf_repo/revision/main" "$probe_timeout" any; then
        unreachable="the Hugging Face Hub at $endpoint could not be reached"
        return 1
    fi
}

# Where the GGUF sits in the Hugging Face cache once downloaded (the cache `model download`
# fills by default), or nothing when it is not there.
cached_gguf() {
    local cache="${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}"
    local folder="$cache/models--${gguf_repo//\//--}" commit
    commit="$(cat "$folder/refs/main" 2>/dev/null)" || return 0
    local path="$folder/snapshots/$commit/$gguf_file"
    if [[ -f "$path" ]]; then echo "$path"; fi
}

banner() {
    local line="================================================================================"
    printf '\n%s\n' "$line"
    printf '  %s\n' "$@"
    printf '%s\n\n' "$line"
}

if [[ -n "${LLAMA_STACK_BIN:-}" ]]; then
    bin="$LLAMA_STACK_BIN"
else
    cargo build --bin llama-stack
    bin="target/debug/llama-stack"
fi

noise=false
if [[ -n "$user_model_path" ]]; then
    served="candle/${INFERENCE_MODEL:-meta-llama/Llama-3.2-1B-Instruct} from $user_model_path"
else
    if [[ -n "${INFERENCE_MODEL:-}" ]]; then
        # The id must name the weights actually served, which are chosen below.
        echo "Note: ignoring INFERENCE_MODEL=$INFERENCE_MODEL, which names a model only together with LLAMA_MODEL_PATH"
    fi
    gguf=""
    if hub_reachable; then
        echo "Fetching $gguf_file from $endpoint/$gguf_repo into the Hugging Face cache"
        # No fallback after a failure here: with the Hub answering, serving noise would hide
        # the real problem, and rerunning resumes the transfer.
        "$bin" model download "$gguf_repo" --include "$gguf_file"
        gguf="$(cached_gguf)"
        if [[ -z "$gguf" ]]; then
            echo "error: the download finished but $gguf_file is not in the Hugging Face cache" >&2
            exit 1
        fi
    else
        gguf="$(cached_gguf)"
        if [[ -n "$gguf" ]]; then
            echo "Note: $unreachable; serving the copy already cached"
        fi
    fi
    if [[ -n "$gguf" ]]; then
        export LLAMA_MODEL_PATH="$gguf" INFERENCE_MODEL="$model_id"
        served="candle/$model_id from $gguf"
    else
        noise=true
        tokenizer="$(scripts/fetch-tokenizer.sh)"
        export LLAMA_MODEL_PATH="$HOME/.llama/test-models/tiny"
        if [[ ! -f "$LLAMA_MODEL_PATH/config.json" ]]; then
            echo "Writing a random-weight test model to $LLAMA_MODEL_PATH"
            "$bin" model create-test "$LLAMA_MODEL_PATH" --preset tiny --tokenizer "$tokenizer" \
                >/dev/null
        fi
        export INFERENCE_MODEL="$test_model_id"
        served="candle/$test_model_id from $LLAMA_MODEL_PATH"
    fi
fi

noise_banner() {
    banner "NOT A REAL MODEL: $unreachable," \
        "so this server runs $test_model_id, a tiny model with RANDOM weights." \
        "Every API works, but its answers are random noise." \
        "For real answers, run this again where the Hub is reachable (or with HF_ENDPOINT" \
        "set to a mirror), or set LLAMA_MODEL_PATH to a Llama 3.x folder or GGUF file."
}

if $noise; then noise_banner; fi
echo "Model: $served"
echo "Playground (once the server is up): $playground"

# The server logs a good deal while it starts; say where to go again once it answers, so the
# URL is the last thing on the screen. `$$` is the server itself after the exec below.
(
    for _ in $(seq 1 1200); do
        kill -0 $$ 2>/dev/null || exit 0
        if http_get "http://localhost:${port}/v1/health" 2 ok; then
            if $noise; then noise_banner; fi
            banner "Ready. Model: $served" "Open the playground: $playground"
            exit 0
        fi
        sleep 0.5
    done
) &

exec "$bin" run local "$@"
