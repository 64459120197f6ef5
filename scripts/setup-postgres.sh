#!/usr/bin/env bash
# Installs PostgreSQL 15 and the pgvector extension, once, and prints PostgreSQL's bin folder
# (initdb, pg_ctl, postgres, psql). The PostgreSQL-backed tests start private clusters from it.
#
# Usage: bin_dir="$(scripts/setup-postgres.sh)"
# Env:   PGVECTOR_HOME  where pgvector's source is fetched and built
#                       (default ~/.cache/llama-stack-rs/pgvector)
#
# Steps, each skipped when already done:
#   1. apt installs `postgresql` (and `postgresql-server-dev-15` when pgvector must be built),
#      through `sudo -n` when not root.
#   2. pgvector is not packaged for Debian bookworm, but Debian trixie's source package builds
#      against bookworm's PostgreSQL 15. It is fetched with a private apt state folder whose
#      only source is trixie's deb-src line; the system's apt sources are never touched.
#   3. It is built without -march=native (pgvector picks its SIMD code at run time; a native
#      build can trap on VMs that advertise instructions they do not allow) and installed.
# Everything but the final path goes to stderr.
set -euo pipefail

pg_major=15
bin_dir="/usr/lib/postgresql/$pg_major/bin"
vector_control="/usr/share/postgresql/$pg_major/extension/vector.control"
home="${PGVECTOR_HOME:-$HOME/.cache/llama-stack-rs/pgvector}"

log() { echo "setup-postgres: $*" >&2; }

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo -n)

packages=()
[ -x "$bin_dir/pg_ctl" ] && [ -x "$bin_dir/initdb" ] || packages+=("postgresql")
if [ ! -f "$vector_control" ] \
    && { [ ! -x "$bin_dir/pg_config" ] \
         || [ ! -f "/usr/include/postgresql/$pg_major/server/postgres.h" ] \
         || [ ! -f "/usr/lib/postgresql/$pg_major/lib/pgxs/src/makefiles/pgxs.mk" ]; }; then
    packages+=("postgresql-server-dev-$pg_major")
fi
if [ "${#packages[@]}" -gt 0 ]; then
    log "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -q </dev/null >&2
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" </dev/null >&2
fi

if [ ! -f "$vector_control" ]; then
    # A private apt configuration: its own sources list, no sources.list.d, its own lists and
    # cache, so nothing trixie-related reaches the system's apt state.
    apt_dir="$home/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts" "$home/src"
    echo "deb-src http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=$apt_dir/parts"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Debug::NoLocking=1"
    )
    # apt drops to the _apt user for downloads, which cannot write into a root-owned cache.
    [ "$(id -u)" -ne 0 ] || apt_opts+=(-o "APT::Sandbox::User=root")
    log "fetching pgvector's source package from Debian trixie"
    apt-get "${apt_opts[@]}" -q update </dev/null >&2
    rm -rf "$home/src" && mkdir -p "$home/src"
    (cd "$home/src" && apt-get "${apt_opts[@]}" -q source --download-only pgvector </dev/null >&2)
    tarball="$(find "$home/src" -maxdepth 1 -name 'pgvector_*.orig.tar.*' | head -n 1)"
    [ -n "$tarball" ] || { log "no pgvector source tarball was downloaded"; exit 1; }
    tar -xf "$tarball" -C "$home/src"
    src="$(find "$home/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector*' | head -n 1)"
    log "building pgvector in $src"
    make -C "$src" -s PG_CONFIG="$bin_dir/pg_config" OPTFLAGS="" -j"$(nproc)" >&2
    "${as_root[@]}" make -C "$src" -s PG_CONFIG="$bin_dir/pg_config" OPTFLAGS="" install >&2
    [ -f "$vector_control" ] || { log "pgvector installed, but $vector_control is missing"; exit 1; }
    log "pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$vector_control") installed"
fi

echo "$bin_dir"
