"""`server.limits` against the real binary: each limit answers a 4xx that names it, and a
prompt far larger than the model's context is refused before it is tokenized.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import requests
import yaml

from e2e_support import LOCAL_RUN_YAML, SERVED_MODEL


@pytest.fixture(scope="module")
def limited(server_factory, tmp_path_factory):
    config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
    config["server"] = {**(config.get("server") or {}), "limits": {
        "max_body_bytes": 4_000_000, "max_json_depth": 8, "max_tokens": 50,
        "max_embedding_inputs": 3, "max_upload_bytes": 2000}}
    path = tmp_path_factory.mktemp("limits") / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    server = server_factory("limits", run_config=str(path)).start()
    yield server
    server.stop()


def chat(url: str, **extra) -> requests.Response:
    body = {"model": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    return requests.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_each_limit_names_itself(limited):
    url = limited.url
    deep = chat(url, metadata={"a": [[[[[[[[[["x"]]]]]]]]]]})
    assert deep.status_code == 400 and "max_json_depth" in deep.json()["error"]["message"]
    tokens = chat(url, max_tokens=51)
    assert tokens.status_code == 400
    assert tokens.json()["error"]["param"] == "max_tokens"
    assert "server.limits.max_tokens" in tokens.json()["error"]["message"]
    assert chat(url, max_tokens=2).status_code == 200
    classic = requests.post(f"{url}/v1/inference/chat-completion", json={
        "model_id": SERVED_MODEL, "messages": [{"role": "user", "content": "hi"}],
        "sampling_params": {"max_tokens": 500}})
    assert classic.status_code == 400 and "max_tokens" in classic.text
    response = requests.post(f"{url}/v1/responses", json={
        "model": SERVED_MODEL, "input": "hi", "max_output_tokens": 51})
    assert response.status_code == 400 and "max_output_tokens" in response.text
    big = requests.post(f"{url}/v1/chat/completions", data=b" " * 4_100_000,
                        headers={"content-type": "application/json"})
    assert big.status_code == 413 and "max_body_bytes" in big.text
    upload = requests.post(f"{url}/v1/files", data={"purpose": "assistants"},
                           files={"file": ("a.txt", b"x" * 5000)})
    assert upload.status_code == 413 and "max_upload_bytes" in upload.text


def test_embedding_inputs_are_limited(limited):
    oa = openai.OpenAI(base_url=f"{limited.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        oa.embeddings.create(model="all-MiniLM-L6-v2", input=["a", "b", "c", "d"])
    assert "max_embedding_inputs" in caught.value.body["message"]
    classic = requests.post(f"{limited.url}/v1/inference/embeddings", json={
        "model_id": "all-MiniLM-L6-v2", "contents": ["a", "b", "c", "d"]})
    assert classic.status_code == 400 and "max_embedding_inputs" in classic.text


def test_a_prompt_beyond_any_context_is_refused_by_its_size(limited):
    # About 3.5 MB of text: more than the generated model's context could hold at any
    # tokenization, so it is refused without being tokenized.
    text = "lorem ipsum dolor " * 200_000
    resp = chat(limited.url, messages=[{"role": "user", "content": text}], max_tokens=2)
    assert resp.status_code == 400, resp.text[:300]
    assert "bytes" in resp.json()["error"]["message"]
    assert "context" in resp.json()["error"]["message"]
