#!/usr/bin/env bash
# The local engine's aarch64 NEON matmul kernels, checked on an x86-64 machine: the engine
# crate's kernel unit tests, cross-built for aarch64-unknown-linux-gnu and run under qemu-user.
# The NEON tests compare each kernel with the portable one; the existing kernel tests reach the
# NEON code through the dispatch. This checks results only: emulation says nothing about speed
# on real ARM hardware.
#
#   scripts/test-neon.sh
#
# Missing Debian packages (the C/C++ cross compilers that the -sys crates need, the aarch64 libc,
# qemu-user) are installed with apt-get, and the Rust target with rustup. Where they cannot be
# had (no root, no network), it says why in one line and exits 0; NEON_CHECK_REQUIRED=1 makes
# that a failure. The build goes to its own target/cross, so it never waits on the lock of the
# native build; the first one compiles every dependency for aarch64 (tens of minutes on two
# cores), later ones only the engine crate.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

target=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu

skip() {
  if [ "${NEON_CHECK_REQUIRED:-}" = 1 ]; then
    echo "NEON kernel check FAILED (NEON_CHECK_REQUIRED=1): $*" >&2
    exit 1
  fi
  echo "NEON kernel check skipped: $*"
  exit 0
}

# Each entry is "<file that shows it is there>:<apt package>".
required=(
  "aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu"
  "aarch64-linux-gnu-g++:g++-aarch64-linux-gnu"
  "$sysroot/include/stdio.h:libc6-dev-arm64-cross"
  "qemu-aarch64:qemu-user"
)
missing=()
for entry in "${required[@]}"; do
  what="${entry%%:*}"
  if [[ "$what" == /* ]]; then
    [ -e "$what" ] || missing+=("${entry#*:}")
  else
    command -v "$what" >/dev/null 2>&1 || missing+=("${entry#*:}")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "${missing[*]} missing and no apt-get"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo -n true >/dev/null 2>&1 || skip "${missing[*]} missing and no root or sudo -n"
    sudo_cmd=(sudo -n)
  fi
  echo "test-neon: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q </dev/null || skip "apt-get update failed"
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
    || skip "apt-get install ${missing[*]} failed"
fi

if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
  command -v rustup >/dev/null 2>&1 || skip "no rustup to add the $target target"
  echo "test-neon: adding the $target Rust target"
  rustup target add "$target" </dev/null \
    || skip "rustup target add $target failed (static.rust-lang.org unreachable?)"
fi

export CARGO_TARGET_DIR="${NEON_TARGET_DIR:-target/cross}"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $sysroot"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

# The kernel tests: linear's (Q8_0, Q4_0, and the NEON tests under linear::neon) and kquants'
# (Q4_K, Q6_K, and kquants::neon).
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
# qemu-user's default CPU has the dot-product extension: the sdot kernels must be checked too.
export NEON_CHECK_SDOT=1
cargo test --profile neon-check --target "$target" -p llama-stack-provider-inference-candle --lib -- \
  llama::linear:: llama::kquants:: 2>&1 | tee "$log" || status=$?

passed="$(awk '/^test result:/ {for (i = 1; i < NF; i++) if ($(i + 1) ~ /^passed/) n += $i} END {print n + 0}' "$log")"
neon="$(grep -cE '^test .*::neon::tests::.* \.\.\. ok$' "$log" || true)"
if [ "$status" -ne 0 ]; then
  echo "NEON kernel check FAILED after $((SECONDS - start))s ($passed tests passed)" >&2
  exit "$status"
fi
if [ "$neon" -eq 0 ]; then
  echo "NEON kernel check FAILED: no NEON tests ran ($passed tests passed)" >&2
  exit 1
fi
echo "NEON kernel check: $passed kernel tests passed under qemu-aarch64, $neon of them NEON against portable, in $((SECONDS - start))s"
