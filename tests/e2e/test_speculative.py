"""Prompt-lookup speculative decoding (`speculative: {type: ngram}` on `inline::candle`) through
the server: greedy answers are the same as the shared server's, and /metrics shows drafts the
model kept."""

from __future__ import annotations

import requests
import yaml

from e2e_support import HTTP_TIMEOUT_S, LOCAL_RUN_YAML, MODEL_IDENTIFIER
from test_metrics import scrape, total

PROMPTS = [
    "the cat sat on the mat. the cat sat on the mat. the cat sat on the",
    "Repeat after me: red green blue red green blue red green blue",
    "Once upon a time",
]


def completion(url: str, prompt: str) -> str:
    resp = requests.post(f"{url}/v1/completions", timeout=HTTP_TIMEOUT_S, json={
        "model": MODEL_IDENTIFIER, "prompt": prompt, "max_tokens": 48, "temperature": 0})
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["text"]


def test_drafts_are_kept_and_greedy_answers_do_not_change(server, server_factory,
                                                          tmp_path_factory):
    config = yaml.safe_load(LOCAL_RUN_YAML.read_text())
    candle = next(p for p in config["providers"]["inference"]
                  if p["provider_type"] == "inline::candle")
    candle["config"]["speculative"] = {"type": "ngram", "max_draft_tokens": 6}
    path = tmp_path_factory.mktemp("speculative") / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    drafting = server_factory("speculative", run_config=str(path)).start()
    try:
        for prompt in PROMPTS:
            assert completion(drafting.url, prompt) == completion(server.url, prompt), prompt
        families = scrape(drafting)
        drafted = total(families, "llama_stack_engine_speculative_tokens_total",
                        outcome="drafted")
        accepted = total(families, "llama_stack_engine_speculative_tokens_total",
                         outcome="accepted")
        assert drafted > 0 and 0 < accepted <= drafted, (drafted, accepted)
    finally:
        drafting.stop()


def test_a_bad_speculative_block_stops_the_start(llama_stack_bin, tiny_model_dir, tmp_path):
    import subprocess

    config = yaml.safe_load(LOCAL_RUN_YAML.read_text())
    candle = next(p for p in config["providers"]["inference"]
                  if p["provider_type"] == "inline::candle")
    candle["config"]["speculative"] = {"type": "ngram", "max_draft_tokens": 99}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = subprocess.run([str(llama_stack_bin), "run", str(path), "--port", "0"],
                          capture_output=True, text=True, timeout=60,
                          env={"LLAMA_MODEL_PATH": str(tiny_model_dir), "PATH": "/usr/bin:/bin",
                               "SQLITE_STORE_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert "speculative.max_draft_tokens" in proc.stderr + proc.stdout
