"""Reranking end to end (`POST /v1alpha/inference/rerank`): a tiny random-weight BERT
cross-encoder generated here, served by `inline::sentence-transformers` and checked against an
independent NumPy forward pass; `remote::vllm` against a canned upstream `/rerank`; the 0.7
client's `alpha.inference.rerank`; and the error cases."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

from bert_reference import _gelu, _layer_norm, read_safetensors
from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT, assert_openai_error
from remote_support import write_run_yaml

ROUTE = "/v1alpha/inference/rerank"
RANKER = "tiny-cross-encoder"
RANKER_ID = f"sentence-transformers/{RANKER}"
VLLM_RANKER = "vllm/BAAI/bge-reranker-base"
CHAT_MODEL = "vllm/chat-model"

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", "dog", "runs",
         "fast", "a", "red", "car", "is", "where", "what", "llama", "stack", "##s"]
HIDDEN, LAYERS, HEADS, INTERMEDIATE, POSITIONS = 16, 2, 2, 32, 64

QUERY = "where is the cat"
ITEMS = ["the cat sat on the mat", "a red car", "dog runs fast", "where is the llama stack",
         "cats", "what is a mat"]


# --- a tiny cross-encoder and its NumPy reference --------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(chunks))


def write_cross_encoder(folder: Path, seed: int = 7) -> Path:
    """config.json (BertForSequenceClassification, one label), a WordPiece tokenizer.json
    with BERT's pair template, and random float32 weights."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": len(WORDS), "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": POSITIONS, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "classifier_dropout": None,
        "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.save(str(folder / "tokenizer.json"))

    rng = np.random.default_rng(seed)
    h, i = HIDDEN, INTERMEDIATE
    w = {
        "bert.embeddings.word_embeddings.weight": rng.normal(0, 1.0, (len(WORDS), h)),
        "bert.embeddings.position_embeddings.weight": rng.normal(0, 0.5, (POSITIONS, h)),
        "bert.embeddings.token_type_embeddings.weight": rng.normal(0, 1.0, (2, h)),
        "bert.embeddings.LayerNorm.weight": 1 + rng.normal(0, 0.1, h),
        "bert.embeddings.LayerNorm.bias": rng.normal(0, 0.1, h),
        "bert.pooler.dense.weight": rng.normal(0, 0.5, (h, h)),
        "bert.pooler.dense.bias": rng.normal(0, 0.1, h),
        "classifier.weight": rng.normal(0, 1.0, (1, h)),
        "classifier.bias": rng.normal(0, 0.1, 1),
    }
    for layer in range(LAYERS):
        p = f"bert.encoder.layer.{layer}"
        for name, shape in [("attention.self.query", (h, h)), ("attention.self.key", (h, h)),
                            ("attention.self.value", (h, h)), ("attention.output.dense", (h, h)),
                            ("intermediate.dense", (i, h)), ("output.dense", (h, i))]:
            w[f"{p}.{name}.weight"] = rng.normal(0, 0.3, shape)
            w[f"{p}.{name}.bias"] = rng.normal(0, 0.1, shape[0])
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"]:
            w[f"{p}.{norm}.weight"] = 1 + rng.normal(0, 0.1, h)
            w[f"{p}.{norm}.bias"] = rng.normal(0, 0.1, h)
    write_safetensors(folder / "model.safetensors", w)
    return folder


class CrossEncoderReference:
    """BertForSequenceClassification in float64 NumPy: the pair's tokens with their segment
    ids, post-norm encoder layers, tanh pooler over [CLS], the one-logit classifier, and the
    sigmoid sentence-transformers' CrossEncoder applies to a one-label model."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.config = json.loads((folder / "config.json").read_text())
        self.w = read_safetensors(folder / "model.safetensors")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def logit(self, query: str, item: str) -> float:
        c, w = self.config, self.w
        encoding = self.tokenizer.encode(query, item)
        ids, types = encoding.ids, encoding.type_ids
        assert types[0] == 0 and types[-1] == 1, types
        n, heads, eps = len(ids), c["num_attention_heads"], c["layer_norm_eps"]
        head_dim = c["hidden_size"] // heads

        def linear(x, name):
            return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

        x = (w["bert.embeddings.word_embeddings.weight"][ids]
             + w["bert.embeddings.position_embeddings.weight"][:n]
             + w["bert.embeddings.token_type_embeddings.weight"][types])
        x = _layer_norm(x, w["bert.embeddings.LayerNorm.weight"],
                        w["bert.embeddings.LayerNorm.bias"], eps)
        for layer in range(c["num_hidden_layers"]):
            p = f"bert.encoder.layer.{layer}"

            def split(t):
                return t.reshape(n, heads, head_dim).transpose(1, 0, 2)

            q, k, v = (split(linear(x, f"{p}.attention.self.{m}")) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * head_dim)
            x = _layer_norm(x + linear(context, f"{p}.attention.output.dense"),
                            w[f"{p}.attention.output.LayerNorm.weight"],
                            w[f"{p}.attention.output.LayerNorm.bias"], eps)
            inner = _gelu(linear(x, f"{p}.intermediate.dense"))
            x = _layer_norm(x + linear(inner, f"{p}.output.dense"),
                            w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], eps)
        pooled = np.tanh(linear(x[0], "bert.pooler.dense"))
        return float(linear(pooled, "classifier")[0])

    def score(self, query: str, item: str) -> float:
        return 1.0 / (1.0 + math.exp(-self.logit(query, item)))


# --- a canned vLLM /rerank -------------------------------------------------------------------


class CannedVllm:
    """vLLM's Jina-shaped `/rerank` (scores: one per document, by a fixed table) and its
    `/v1/models`; records each rerank body."""

    SCORES = {"alpha": 0.2, "beta": 0.9, "gamma": 0.5}

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def send_json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.send_json(200, {"object": "list", "data": [{"id": "BAAI/bge-reranker-base"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                canned.paths.append(self.path)
                canned.bodies.append(body)
                if self.path != "/rerank":
                    return self.send_json(404, {"detail": "Not Found"})
                results = [{"index": i, "document": {"text": d},
                            "relevance_score": CannedVllm.SCORES.get(d, 0.0)}
                           for i, d in enumerate(body["documents"])]
                results.sort(key=lambda r: -r["relevance_score"])
                if body.get("top_n"):
                    results = results[: body["top_n"]]
                self.send_json(200, {"id": "rerank-1", "model": body["model"],
                                     "usage": {"total_tokens": 7}, "results": results})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranker_dir(tmp_path_factory) -> Path:
    return write_cross_encoder(tmp_path_factory.mktemp("cross-encoder") / RANKER)


@pytest.fixture(scope="module")
def reference(ranker_dir) -> CrossEncoderReference:
    return CrossEncoderReference(ranker_dir)


@pytest.fixture(scope="module")
def vllm():
    canned = CannedVllm()
    yield canned
    canned.stop()


@pytest.fixture(scope="module")
def rerank_server(server_factory, ranker_dir, vllm, tmp_path_factory):
    work = tmp_path_factory.mktemp("rerank")
    run_yaml = write_run_yaml(
        work / "run.yaml", "rerank",
        providers=[
            {"provider_id": "sentence-transformers", "provider_type": "inline::sentence-transformers",
             "config": {"rerank_model_path": str(ranker_dir)}},
            {"provider_id": "vllm", "provider_type": "remote::vllm",
             "config": {"url": vllm.url, "api_token": "canned-token"}},
        ],
        models=[
            {"model_id": "BAAI/bge-reranker-base", "provider_id": "vllm",
             "model_type": "rerank"},
            {"model_id": "chat-model", "provider_id": "vllm", "model_type": "llm"},
        ],
    )
    server = server_factory("rerank", run_config=str(run_yaml)).start()
    # The tiny cross-encoder is registered through the API, as a client would.
    resp = requests.post(f"{server.url}/v1/models", timeout=HTTP_TIMEOUT_S, json={
        "model_id": RANKER, "provider_id": "sentence-transformers", "model_type": "rerank"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["identifier"] == RANKER_ID
    assert resp.json()["model_type"] == "rerank"
    return server


def rerank(server, **body) -> requests.Response:
    return requests.post(server.url + ROUTE, json=body, timeout=HTTP_TIMEOUT_S)


# --- inline::sentence-transformers ------------------------------------------------------------


def test_rerank_model_is_listed_with_its_type(rerank_server):
    models = {m["identifier"]: m for m in
              requests.get(f"{rerank_server.url}/v1/models", timeout=HTTP_TIMEOUT_S).json()["data"]}
    assert models[RANKER_ID]["model_type"] == "rerank"
    assert models[VLLM_RANKER]["model_type"] == "rerank"
    assert models[CHAT_MODEL]["model_type"] == "llm"


@pytest.mark.parametrize("model", [RANKER_ID, RANKER])
def test_scores_and_order_match_the_numpy_reference(rerank_server, reference, model):
    resp = rerank(rerank_server, model=model, query=QUERY, items=ITEMS)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"data"}
    data = body["data"]
    assert all(set(d) == {"index", "relevance_score"} for d in data), data
    want = [reference.score(QUERY, item) for item in ITEMS]
    want_order = sorted(range(len(ITEMS)), key=lambda i: -want[i])
    assert [d["index"] for d in data] == want_order, (data, want)
    got = {d["index"]: d["relevance_score"] for d in data}
    worst = max(abs(got[i] - want[i]) for i in range(len(ITEMS)))
    assert worst < 1e-5, f"max abs diff vs NumPy {worst:.2e}"
    # The random head must tell the items apart, or the ordering check would be empty.
    assert max(want) - min(want) > 1e-3, want
    print(f"rerank: max abs diff vs NumPy {worst:.2e}; scores {sorted(want, reverse=True)}")


def test_max_num_results_keeps_the_best(rerank_server, reference):
    full = rerank(rerank_server, model=RANKER_ID, query=QUERY, items=ITEMS).json()["data"]
    for limit in (1, 3, len(ITEMS) + 4):
        resp = rerank(rerank_server, model=RANKER_ID, query=QUERY, items=ITEMS,
                      max_num_results=limit)
        assert resp.status_code == 200, resp.text
        assert resp.json()["data"] == full[:limit]


def test_text_content_parts_read_as_their_text(rerank_server):
    plain = rerank(rerank_server, model=RANKER_ID, query=QUERY, items=ITEMS).json()
    parts = rerank(rerank_server, model=RANKER_ID, query={"type": "text", "text": QUERY},
                   items=[{"type": "text", "text": t} for t in ITEMS]).json()
    assert parts == plain


def test_client_0_7_alpha_inference_rerank(rerank_server, reference):
    python = Path(os.environ.get("LLAMA_STACK_VENV_CLIENT07", REPO_ROOT / ".venv-client07")) \
        / "bin" / "python"
    if not python.is_file():
        pytest.skip(f"{python} is missing: run scripts/setup-python.sh")
    script = (
        "import json, sys\n"
        "from llama_stack_client import LlamaStackClient\n"
        "c = LlamaStackClient(base_url=sys.argv[1], max_retries=0)\n"
        "r = c.alpha.inference.rerank(model=sys.argv[2], query=sys.argv[3],\n"
        "    items=json.loads(sys.argv[4]), max_num_results=2)\n"
        "print(json.dumps([[x.index, x.relevance_score] for x in r]))\n"
    )
    proc = subprocess.run(
        [str(python), "-c", script, rerank_server.url, RANKER_ID, QUERY, json.dumps(ITEMS)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    want = [reference.score(QUERY, item) for item in ITEMS]
    best = sorted(range(len(ITEMS)), key=lambda i: -want[i])[:2]
    assert [i for i, _ in got] == best
    assert all(abs(s - want[i]) < 1e-5 for i, s in got)


# --- remote::vllm -----------------------------------------------------------------------------


def test_vllm_reranks_through_its_rerank_route(rerank_server, vllm):
    items = ["alpha", {"type": "text", "text": "beta"}, "gamma"]
    resp = rerank(rerank_server, model=VLLM_RANKER, query="greek", items=items)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"data": [{"index": 1, "relevance_score": 0.9},
                                    {"index": 2, "relevance_score": 0.5},
                                    {"index": 0, "relevance_score": 0.2}]}
    assert vllm.paths[-1] == "/rerank"
    assert vllm.bodies[-1] == {"model": "BAAI/bge-reranker-base", "query": "greek",
                               "documents": ["alpha", "beta", "gamma"]}
    resp = rerank(rerank_server, model=VLLM_RANKER, query="greek", items=items,
                  max_num_results=1)
    assert resp.json() == {"data": [{"index": 1, "relevance_score": 0.9}]}
    assert vllm.bodies[-1]["top_n"] == 1


# --- errors ----------------------------------------------------------------------------------


def test_unknown_model_is_404_naming_it(rerank_server):
    err = assert_openai_error(
        rerank(rerank_server, model="no-such-reranker", query="q", items=["a"]), 404)
    assert "'no-such-reranker' not found" in err["message"], err


def test_a_model_of_another_type_is_400(rerank_server):
    err = assert_openai_error(
        rerank(rerank_server, model=CHAT_MODEL, query="q", items=["a"]), 400)
    assert f"Model '{CHAT_MODEL}' is of type 'llm' rather than the expected type 'rerank'" in (
        err["message"]), err


@pytest.mark.parametrize("body, param", [
    ({"items": []}, "items"),
    ({"max_num_results": 0}, "max_num_results"),
    ({"items": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
     "items"),
    ({"query": None}, "query"),
])
def test_bad_requests_are_400_naming_the_field(rerank_server, body, param):
    request = {"model": RANKER_ID, "query": "q", "items": ["a"], **body}
    err = assert_openai_error(requests.post(rerank_server.url + ROUTE, json=request,
                                            timeout=HTTP_TIMEOUT_S), 400)
    assert err["param"] == param, err

