"""Several models served by one `inline::candle` provider, found in a Hugging Face cache by
their repository ids and loaded lazily (`preload: false`): each loads on its first request,
once, with its progress and load time in the log.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from llama_stack_client import LlamaStackClient

from e2e_support import HTTP_TIMEOUT_S

SAFETENSORS_ID = "test-org/tiny-llama3-hf"
GGUF_ID = "test-org/tiny-llama3-gguf"

RUN_YAML = """\
version: 2
image_name: two-models
apis:
- inference
providers:
  inference:
  - provider_id: candle
    provider_type: inline::candle
    config:
      model_path: ""
      hf_cache_dir: {cache}
      preload: false
metadata_store:
  type: sqlite
  db_path: {store}/registry.db
models:
- model_id: {safetensors}
  provider_id: candle
  model_type: llm
- model_id: {gguf}
  provider_id: candle
  model_type: llm
"""


def put_in_hf_cache(cache: Path, repo_id: str, files: Path) -> None:
    """Lays `files` out as the Hugging Face hub client does: a snapshot named by `refs/main`."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(files, repo / "snapshots" / commit)


@pytest.fixture(scope="module")
def two_model_server(server_factory, llama_stack_bin, tiny_model_dir, tokenizer_model,
                     tmp_path_factory):
    root = tmp_path_factory.mktemp("two-models")
    gguf = root / "gguf"
    proc = subprocess.run(
        [str(llama_stack_bin), "model", "create-test", str(gguf), "--preset", "tiny",
         "--format", "gguf", "--quant", "q8_0", "--tokenizer", str(tokenizer_model)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    (gguf / "tokenizer.json").unlink()
    cache = root / "hf-cache"
    put_in_hf_cache(cache, SAFETENSORS_ID, tiny_model_dir)
    put_in_hf_cache(cache, GGUF_ID, gguf)
    store = root / "store"
    store.mkdir()
    run_yaml = root / "run.yaml"
    run_yaml.write_text(RUN_YAML.format(cache=cache, store=store, safetensors=SAFETENSORS_ID,
                                        gguf=GGUF_ID))
    return server_factory("two-models", run_config=str(run_yaml)).start()


def loaded_lines(server) -> list[str]:
    return [line for line in server.log_tail(200_000).splitlines() if "Loaded model" in line]


def test_models_load_on_first_request_once_each(two_model_server):
    server = two_model_server
    client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    served = {m.identifier for m in client.models.list() if m.model_type == "llm"}
    assert {SAFETENSORS_ID, GGUF_ID} <= {i.split("/", 1)[-1] if i.startswith("candle/") else i
                                         for i in served}, served
    # Registered but not loaded: preload is off.
    assert loaded_lines(server) == []

    for model_id in (SAFETENSORS_ID, GGUF_ID, SAFETENSORS_ID, GGUF_ID):
        response = client.inference.completion(
            model_id=model_id,
            content="The quick brown fox",
            sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 4},
        )
        assert response.stop_reason in {"end_of_turn", "end_of_message", "out_of_tokens"}

    # Let the log flush, then: one load per location, each with its format and time.
    time.sleep(0.5)
    lines = loaded_lines(server)
    assert len(lines) == 2, lines
    formats = sorted(re.search(r'format="?(\w+)', line).group(1) for line in lines)
    assert formats == ["gguf", "safetensors"], lines
    assert all(re.search(r"elapsed_ms=\d+", line) for line in lines), lines
    # Progress is logged while loading when there is no terminal.
    assert "Loading model" in server.log_tail(200_000)
