"""Shipped distributions started as a user starts them: `llama-stack run <name>`.

* `starter` with only LLAMA_MODEL_PATH set serves exactly the local `candle` provider and its
  model; every other provider stays off.
* Swap by YAML: the unchanged client script `examples/python/swap.py` prints the same greedy
  text against `local` and against `remote-vllm` pointed (VLLM_URL) at that `local` server.
"""

from __future__ import annotations

import subprocess
import sys

import requests

from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT, SERVED_MODEL, Server

DISTRIBUTIONS = REPO_ROOT / "distributions"
SWAP_SCRIPT = REPO_ROOT / "examples" / "python" / "swap.py"

# Every variable that switches a starter provider on besides LLAMA_MODEL_PATH, blanked so the
# test does not depend on what the machine running it has exported.
OTHER_STARTER_SWITCHES = [
    "EMBEDDING_MODEL_PATH", "VLLM_URL", "OLLAMA_URL", "LLAMA_CPP_URL", "OPENAI_API_KEY",
    "TOGETHER_API_KEY", "FIREWORKS_API_KEY", "GROQ_API_KEY", "LLAMA_API_KEY", "SAFETY_MODEL",
    "TAVILY_SEARCH_API_KEY", "BRAVE_SEARCH_API_KEY", "WOLFRAM_ALPHA_API_KEY",
]


def run_config(name: str) -> str:
    return str(DISTRIBUTIONS / name / "run.yaml")


def get(server: Server, path: str) -> list[dict]:
    resp = requests.get(f"{server.url}{path}", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"]


def run_swap_script(server: Server) -> str:
    proc = subprocess.run(
        [sys.executable, str(SWAP_SCRIPT), server.url, SERVED_MODEL],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"against {server.name}:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_starter_with_only_a_local_model(server_factory):
    server = server_factory(
        "starter-local",
        run_config=run_config("starter"),
        extra_env={name: "" for name in OTHER_STARTER_SWITCHES},
    ).start()

    providers = get(server, "/v1/providers")
    assert [(p["api"], p["provider_id"], p["provider_type"]) for p in providers] == [
        ("inference", "candle", "inline::candle"),
        ("vector_io", "sqlite-vec", "inline::sqlite-vec"),
        ("tool_runtime", "rag-runtime", "inline::rag-runtime"),
        ("tool_runtime", "model-context-protocol", "remote::model-context-protocol"),
        ("files", "localfs", "inline::localfs"),
        ("safety", "llama-guard", "inline::llama-guard"),
        ("safety", "code-scanner", "inline::code-scanner"),
        ("agents", "meta-reference", "inline::meta-reference"),
        ("responses", "builtin", "inline::builtin"),
        ("batches", "reference", "inline::reference"),
    ]
    models = get(server, "/v1/models")
    assert [(m["identifier"], m["provider_id"], m["model_type"]) for m in models] == [
        (f"candle/{SERVED_MODEL}", "candle", "llm")
    ]
    assert "No provider is enabled" not in server.log_tail(200)
    # The code scanner's shield is always on; the Llama Guard one waits for SAFETY_MODEL.
    assert [s["identifier"] for s in get(server, "/v1/shields")] == ["CodeScanner"]

    # It answers, under the short id too.
    resp = requests.post(
        f"{server.url}/v1/chat/completions",
        json={"model": SERVED_MODEL, "messages": [{"role": "user", "content": "Hi"}],
              "max_tokens": 4},
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] >= 1


def test_same_script_against_local_and_remote_vllm(server_factory):
    local = server_factory("swap-local", run_config=run_config("local")).start()
    remote = server_factory(
        "swap-remote-vllm",
        run_config=run_config("remote-vllm"),
        extra_env={
            # The local server's OpenAI-compatible routes stand in for a vLLM server.
            "VLLM_URL": f"{local.url}/v1",
            "INFERENCE_MODEL": SERVED_MODEL,
            "EMBEDDING_MODEL_PATH": "",
        },
    ).start()

    providers = {p["provider_id"]: p["provider_type"] for p in get(remote, "/v1/providers")}
    assert providers["vllm"] == "remote::vllm", providers
    identifiers = [m["identifier"] for m in get(remote, "/v1/models")]
    assert f"vllm/{SERVED_MODEL}" in identifiers, identifiers

    on_local = run_swap_script(local)
    on_remote = run_swap_script(remote)
    assert on_remote == on_local
    lines = on_local.splitlines()
    assert lines[0] == f'model: "{SERVED_MODEL}"'
    assert [line.split(":")[0] for line in lines] == [
        "model", "classic", "classic stream", "openai"
    ]
