"""Embeddings end to end: the local distribution serving the real all-MiniLM-L6-v2 through
`inline::sentence-transformers`, driven by llama-stack-client (classic route) and the openai SDK
(`/v1/embeddings`, float and base64), checked against an independent NumPy BERT
(bert_reference.py); the start-up warning when the model is absent; and the error cases."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient

from bert_reference import BertReference
from conftest import _run
from e2e_support import (
    HTTP_TIMEOUT_S,
    MODEL_IDENTIFIER,
    OPENAI_PREFIXES,
    REPO_ROOT,
    assert_classic_error,
    assert_openai_error,
)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
# run.yaml registers it with model_id == provider_model_id, so its identifier is prefixed (§1.5).
EMBEDDING_IDENTIFIER = f"sentence-transformers/{EMBEDDING_MODEL}"
MAX_ABS_DIFF = 1e-4

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome and the stock market rose today.",
    "Llama Stack standardizes the building blocks of generative AI applications: inference, "
    "safety, memory, agents and tools, with one API and many providers behind it.",
    "naïve café — 東京 🚀",
]
# 600 words, more than the 512 tokens the model reads.
LONG_TEXT = " ".join(f"word{i % 7}" for i in range(600))
WARNING = "Embedding model left out"


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    proc = _run(["bash", str(REPO_ROOT / "scripts" / "fetch-minilm.sh")], "scripts/fetch-minilm.sh")
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert (path / "model.safetensors").is_file(), f"fetch-minilm.sh ran but {path} has no weights"
    return path


@pytest.fixture(scope="module")
def reference(minilm_dir) -> BertReference:
    return BertReference(minilm_dir)


@pytest.fixture(scope="module")
def embed_server(server_factory, minilm_dir):
    return server_factory("embeddings", extra_env={"EMBEDDING_MODEL_PATH": str(minilm_dir)}).start()


@pytest.fixture(scope="module")
def classic(embed_server) -> LlamaStackClient:
    return LlamaStackClient(base_url=embed_server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)


def sdk(server, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + prefix, api_key="none", timeout=HTTP_TIMEOUT_S, max_retries=0
    )


def assert_matches_reference(vectors, texts, reference: BertReference) -> float:
    worst = 0.0
    for vector, text in zip(vectors, texts, strict=True):
        got = np.asarray(vector, dtype=np.float64)
        want = reference.embed(text)
        assert got.shape == want.shape == (384,)
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= MAX_ABS_DIFF, f"max abs diff {worst:.2e} > {MAX_ABS_DIFF}"
    return worst


# --- the model is served ---------------------------------------------------------------------


def test_embedding_model_is_listed(classic):
    models = {m.identifier: m for m in classic.models.list()}
    assert MODEL_IDENTIFIER in models, sorted(models)
    model = models[EMBEDDING_IDENTIFIER]
    assert model.api_model_type == "embedding"
    assert model.provider_id == "sentence-transformers"
    assert model.provider_resource_id == EMBEDDING_MODEL
    assert model.metadata["embedding_dimension"] == 384


@pytest.mark.parametrize("model_id", [EMBEDDING_MODEL, EMBEDDING_IDENTIFIER])
def test_classic_embeddings_match_the_numpy_reference(classic, reference, model_id):
    response = classic.inference.embeddings(model_id=model_id, contents=TEXTS)
    vectors = response.embeddings
    assert len(vectors) == len(TEXTS)
    worst = assert_matches_reference(vectors, TEXTS, reference)
    v = np.asarray(vectors)
    print(
        f"classic route: max abs diff vs NumPy {worst:.2e}; "
        f"cosine(food, bread) {v[0] @ v[1]:.4f}; cosine(food, unrelated) {v[0] @ v[2]:.4f}"
    )
    assert abs(v[0] @ v[1] - 0.755) < 0.002
    assert v[0] @ v[1] > v[0] @ v[2]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("prefix", OPENAI_PREFIXES)
def test_openai_sdk_float_and_base64(embed_server, reference, prefix):
    client = sdk(embed_server, prefix)
    floats = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS, encoding_format="float")
    assert floats.object == "list"
    assert floats.model == EMBEDDING_MODEL
    assert [d.index for d in floats.data] == list(range(len(TEXTS)))
    assert all(d.object == "embedding" for d in floats.data)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens
    expected_tokens = sum(len(reference.token_ids(t)) for t in TEXTS)
    assert floats.usage.prompt_tokens == expected_tokens
    worst = assert_matches_reference([d.embedding for d in floats.data], TEXTS, reference)
    print(f"openai float ({prefix}): max abs diff vs NumPy {worst:.2e}")

    # Asked for explicitly, base64 comes back as a string of little-endian float32 bytes.
    b64 = client.embeddings.create(model=EMBEDDING_MODEL, input=TEXTS, encoding_format="base64")
    decoded = [np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in b64.data]
    as_floats = np.asarray([d.embedding for d in floats.data], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(decoded), as_floats)

    # Without encoding_format the SDK asks for base64 and decodes it itself.
    default = client.embeddings.create(model=EMBEDDING_IDENTIFIER, input=TEXTS[0])
    assert len(default.data) == 1
    assert_matches_reference([default.data[0].embedding], TEXTS[:1], reference)


def test_openai_wire_shape(embed_server):
    resp = requests.post(
        f"{embed_server.url}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, "input": "hello", "dimensions": 384, "user": "u1"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert set(body["data"][0]) == {"object", "embedding", "index"}
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    assert body["usage"]["prompt_tokens"] == 3  # [CLS] hello [SEP]


def test_truncation_end_and_start_match_the_reference_on_cut_token_ids(classic, reference):
    ids = reference.token_ids(LONG_TEXT)
    assert len(ids) > reference.max_tokens
    keep = reference.max_tokens - 2
    expected = {
        "end": reference.embed_ids(ids[: keep + 1] + ids[-1:]),
        "start": reference.embed_ids(ids[:1] + ids[-(keep + 1) :]),
    }
    for truncation, want in expected.items():
        got = classic.inference.embeddings(
            model_id=EMBEDDING_MODEL, contents=[LONG_TEXT], text_truncation=truncation
        ).embeddings[0]
        diff = float(np.abs(np.asarray(got) - want).max())
        assert diff <= MAX_ABS_DIFF, f"text_truncation={truncation}: {diff:.2e}"


# --- errors ----------------------------------------------------------------------------------


def test_too_long_input_without_truncation_is_a_400(embed_server):
    for body in (
        {"model_id": EMBEDDING_MODEL, "contents": [LONG_TEXT]},
        {"model_id": EMBEDDING_MODEL, "contents": [LONG_TEXT], "text_truncation": "none"},
    ):
        resp = requests.post(
            f"{embed_server.url}/v1/inference/embeddings", json=body, timeout=HTTP_TIMEOUT_S
        )
        detail = assert_classic_error(resp, 400)
        assert "at most 512 tokens" in str(detail), detail
        assert "text_truncation" in str(detail), detail
    resp = requests.post(
        f"{embed_server.url}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, "input": ["short", LONG_TEXT]},
        timeout=HTTP_TIMEOUT_S,
    )
    err = assert_openai_error(resp, 400)
    assert "input 1" in err["message"] and "512" in err["message"], err


def test_unknown_model(embed_server):
    resp = requests.post(
        f"{embed_server.url}/v1/inference/embeddings",
        json={"model_id": "no-such-embedder", "contents": ["x"]},
        timeout=HTTP_TIMEOUT_S,
    )
    assert "no-such-embedder" in str(assert_classic_error(resp, 400))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(embed_server, "/v1").embeddings.create(model="no-such-embedder", input="x")
    assert "no-such-embedder" in str(caught.value)


def test_language_model_cannot_embed(embed_server, classic):
    with pytest.raises(Exception) as caught:
        classic.inference.embeddings(model_id=MODEL_IDENTIFIER, contents=["x"])
    assert "not an embedding model" in str(caught.value)
    resp = requests.post(
        f"{embed_server.url}/v1/embeddings",
        json={"model": MODEL_IDENTIFIER, "input": "x"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert "not an embedding model" in assert_openai_error(resp, 400)["message"]


def test_embedding_model_cannot_chat(embed_server):
    resp = requests.post(
        f"{embed_server.url}/v1/inference/chat-completion",
        json={"model_id": EMBEDDING_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=HTTP_TIMEOUT_S,
    )
    assert "embedding model" in str(assert_classic_error(resp, 400))


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"input": [1, 2, 3]}, "token-id input is not supported"),
        ({"input": "x", "dimensions": 128}, "not a Matryoshka model"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"input": []}, "non-empty"),
    ],
)
def test_openai_request_errors(embed_server, body, needle):
    resp = requests.post(
        f"{embed_server.url}/v1/embeddings",
        json={"model": EMBEDDING_MODEL, **body},
        timeout=HTTP_TIMEOUT_S,
    )
    assert needle in assert_openai_error(resp, 400)["message"]


def test_classic_request_errors(embed_server):
    url = f"{embed_server.url}/v1/inference/embeddings"
    for body, needle in [
        ({"contents": ["x"], "text_truncation": "middle"}, "text_truncation"),
        ({"contents": ["x"], "task_type": "poem"}, "task_type"),
        ({"contents": []}, "at least one"),
        ({"contents": [{"type": "image", "image": {"url": {"uri": "x"}}}]}, "image"),
        ({"contents": ["x"], "output_dimension": 100}, "Matryoshka"),
    ]:
        resp = requests.post(
            url, json={"model_id": EMBEDDING_MODEL, **body}, timeout=HTTP_TIMEOUT_S
        )
        assert needle in str(assert_classic_error(resp, 400)), body


# --- no model files ----------------------------------------------------------------------------


def test_server_starts_without_the_model_and_warns_once(server_factory, tmp_path_factory):
    empty_cache = tmp_path_factory.mktemp("empty-hf-cache")
    srv = server_factory(
        "embeddings-absent",
        extra_env={
            "EMBEDDING_MODEL_PATH": "",
            "HF_HUB_CACHE": str(empty_cache),
            "HF_HOME": str(empty_cache),
        },
    ).start()
    models = requests.get(f"{srv.url}/v1/models", timeout=HTTP_TIMEOUT_S).json()["data"]
    identifiers = {m["identifier"] for m in models}
    assert MODEL_IDENTIFIER in identifiers
    assert not any(m["model_type"] == "embedding" for m in models), identifiers

    log = srv.log_path.read_text(errors="replace")
    warnings = [line for line in log.splitlines() if WARNING in line]
    assert len(warnings) == 1, log[-3000:]
    assert "WARN" in warnings[0]
    assert "scripts/fetch-minilm.sh" in warnings[0] and "EMBEDDING_MODEL_PATH" in warnings[0]

    resp = requests.post(
        f"{srv.url}/v1/inference/embeddings",
        json={"model_id": EMBEDDING_MODEL, "contents": ["x"]},
        timeout=HTTP_TIMEOUT_S,
    )
    assert "not found" in str(assert_classic_error(resp, 400))

    # Still one warning after a restart on the same store.
    assert srv.restart() == 0
    log = srv.log_path.read_text(errors="replace")
    assert sum(WARNING in line for line in log.splitlines()) == 2, log[-3000:]
    assert srv.stop() == 0

