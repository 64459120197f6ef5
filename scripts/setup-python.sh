#!/usr/bin/env bash
# Creates the Python virtual environment used by the end-to-end tests (tests/e2e) and
# installs the official clients into it, plus `tokenizers` for the NumPy BERT reference of the
# embeddings tests, `selenium` for the playground's browser tests and `moto[server]`, whose
# `moto_server` is the S3-compatible store of the remote::s3 files tests. Safe to run
# repeatedly: an existing `.venv` is reused and pip only installs what is missing.
#
# llama-stack-client 0.2.23 declares Python >= 3.12 but works on 3.11; it is installed with
# --ignore-requires-python after its numpy/pandas dependencies are pinned to versions that
# still support 3.11 (otherwise pip would pick releases that need 3.12).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LLAMA_STACK_VENV:-$repo_root/.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup-python: creating $venv with $("$python" --version 2>&1)"
  "$python" -m venv "$venv"
fi

vpy="$venv/bin/python"
pip_quiet=(--quiet --disable-pip-version-check)

if "$vpy" - <<'PY' 2>/dev/null
import importlib.metadata as md
import anthropic, llama_stack_client, openai, pytest, requests, tokenizers, yaml  # noqa: F401
from mcp.server.fastmcp import FastMCP  # noqa: F401
import jwt, cryptography  # noqa: F401
import prometheus_client.parser  # noqa: F401
import moto.server  # noqa: F401
import kubernetes_validate  # noqa: F401
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2  # noqa: F401
import grpc  # noqa: F401
from grpc_health.v1 import health_pb2  # noqa: F401
import selenium  # noqa: F401
assert md.version("llama-stack-client") == "0.2.23", md.version("llama-stack-client")
PY
then
  echo "setup-python: $venv already has llama-stack-client 0.2.23, openai, anthropic, pytest, requests, tokenizers, mcp and moto"
else
  "$vpy" -m pip install "${pip_quiet[@]}" --upgrade pip
  "$vpy" -m pip install "${pip_quiet[@]}" "numpy<2.3" "pandas<3" pytest requests pyyaml tokenizers
  "$vpy" -m pip install "${pip_quiet[@]}" --ignore-requires-python "llama-stack-client==0.2.23"
  "$vpy" -m pip install "${pip_quiet[@]}" openai
  # The Messages API tests drive the server with the official anthropic SDK.
  "$vpy" -m pip install "${pip_quiet[@]}" anthropic
  # The official MCP SDK serves the MCP tool servers of the agent tests; 1.x keeps FastMCP.
  "$vpy" -m pip install "${pip_quiet[@]}" "mcp>=1.9,<2"
  # The authentication tests sign JWTs for a local JWKS issuer.
  "$vpy" -m pip install "${pip_quiet[@]}" "pyjwt[crypto]"
  # The metrics tests parse /metrics with the Prometheus client's own text parser.
  "$vpy" -m pip install "${pip_quiet[@]}" prometheus_client
  # moto_server is the S3-compatible store the remote::s3 files tests start.
  "$vpy" -m pip install "${pip_quiet[@]}" "moto[server]>=5,<6"
  # The Kubernetes manifests are checked against the API schemas it bundles.
  "$vpy" -m pip install "${pip_quiet[@]}" kubernetes-validate
  # The OTLP export test decodes the server's protobuf trace exports with the official messages.
  "$vpy" -m pip install "${pip_quiet[@]}" opentelemetry-proto
  # The drain test watches the standard gRPC health service with grpcio's own client.
  "$vpy" -m pip install "${pip_quiet[@]}" grpcio grpcio-health-checking
  # The playground tests drive Debian's headless Chromium through Selenium; pinned, so that a
  # new release cannot change how the browser is driven between runs.
  "$vpy" -m pip install "${pip_quiet[@]}" "selenium==4.51.0"
fi

"$vpy" - <<'PY'
import importlib.metadata as md
import llama_stack_client, openai, pytest, requests, tokenizers, yaml  # noqa: F401
print("setup-python: llama-stack-client", md.version("llama-stack-client"),
      "| openai", md.version("openai"), "| pytest", md.version("pytest"),
      "| tokenizers", md.version("tokenizers"))
PY

# The 0.7 generation of the client (OpenAI-style routes) lives in its own venv, since one venv
# holds one version of a package. Same --ignore-requires-python reason as above.
venv07="${LLAMA_STACK_VENV_CLIENT07:-$repo_root/.venv-client07}"
if [ ! -x "$venv07/bin/python" ]; then
  "$python" -m venv "$venv07"
fi
if ! "$venv07/bin/python" -c 'import importlib.metadata as md; assert md.version("llama-stack-client").startswith("0.7.")' 2>/dev/null; then
  "$venv07/bin/python" -m pip install "${pip_quiet[@]}" "numpy<2.3" "pandas<3"
  "$venv07/bin/python" -m pip install "${pip_quiet[@]}" --ignore-requires-python "llama-stack-client>=0.7,<0.8"
fi
"$venv07/bin/python" -c 'import importlib.metadata as md; print("setup-python: client 0.7 venv has llama-stack-client", md.version("llama-stack-client"))'

# The OpenAI Agents SDK drives the Responses API (tests/e2e/test_responses_clients.py); its own
# venv, since it brings its own `openai` (and, from openai 3, httpx2) release.
venvagents="${LLAMA_STACK_VENV_AGENTS:-$repo_root/.venv-agents}"
if [ ! -x "$venvagents/bin/python" ]; then
  "$python" -m venv "$venvagents"
fi
if ! "$venvagents/bin/python" -c 'import importlib.metadata as md; assert md.version("openai-agents").startswith("0.24.")' 2>/dev/null; then
  "$venvagents/bin/python" -m pip install "${pip_quiet[@]}" "openai-agents>=0.24,<0.25"
fi
"$venvagents/bin/python" -c 'import importlib.metadata as md; print("setup-python: agents venv has openai-agents", md.version("openai-agents"), "| openai", md.version("openai"))'

# schemathesis fuzzes the server from docs/openapi.json (tests/e2e/test_fuzz.py); its own venv
# keeps its dependencies (hypothesis, httpx, ...) away from the clients' pins. Exact versions:
# the run's seed is fixed, and a new generator release would change every generated case.
venvfuzz="${LLAMA_STACK_VENV_FUZZ:-$repo_root/.venv-fuzz}"
if [ ! -x "$venvfuzz/bin/python" ]; then
  "$python" -m venv "$venvfuzz"
fi
if ! "$venvfuzz/bin/python" -c 'import importlib.metadata as md; assert md.version("schemathesis") == "4.32.5" and md.version("hypothesis") == "6.170.27"' 2>/dev/null; then
  "$venvfuzz/bin/python" -m pip install "${pip_quiet[@]}" "schemathesis==4.32.5" "hypothesis==6.170.27"
fi
"$venvfuzz/bin/python" -c 'import importlib.metadata as md; print("setup-python: fuzz venv has schemathesis", md.version("schemathesis"))'
