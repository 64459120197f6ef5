"""Shared pieces of the memory end-to-end tests (vector DBs, vector IO, the RAG tool, files and
vector stores): a small run.yaml per vector provider (the real all-MiniLM-L6-v2 on
`inline::sentence-transformers`, `inline::rag-runtime`, `inline::localfs`, and either
`inline::sqlite-vec` or `remote::pgvector` with a PostgreSQL metadata store), servers started
on it, throwaway PostgreSQL databases, and the exact `knowledge_search` text upstream renders.

PostgreSQL runs come from pg_support.PostgresServer (scripts/setup-postgres.sh installs
PostgreSQL and pgvector); LLAMA_STACK_SKIP_PG_TESTS=1 skips them with a reason.
"""

from __future__ import annotations

import base64
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest
from llama_stack_client import LlamaStackClient

from conftest import _run
from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT, Server

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSION = 384
PROVIDERS = ["sqlite-vec", "pgvector"]
SKIP_PG_ENV = "LLAMA_STACK_SKIP_PG_TESTS"
DATA_DIR = Path(__file__).resolve().parent / "data"

_COMMON_HEAD = """\
version: 2
image_name: memory-e2e
apis:
- inference
- vector_io
- tool_runtime
- files
providers:
  inference:
  - provider_id: sentence-transformers
    provider_type: inline::sentence-transformers
    config:
      model_path: ${env.EMBEDDING_MODEL_PATH}
      device: cpu
"""

_SQLITE_VEC = """\
  vector_io:
  - provider_id: sqlite-vec
    provider_type: inline::sqlite-vec
    config:
      db_path: ${env.SQLITE_STORE_DIR}/sqlite_vec.db
"""

_PGVECTOR = """\
  vector_io:
  - provider_id: pgvector
    provider_type: remote::pgvector
    config:
      host: ${env.POSTGRES_HOST}
      port: ${env.POSTGRES_PORT}
      db: ${env.POSTGRES_DB}
      user: ${env.POSTGRES_USER}
      password: ${env.POSTGRES_PASSWORD}
"""

_COMMON_TAIL = """\
  tool_runtime:
  - provider_id: rag-runtime
    provider_type: inline::rag-runtime
    config:
      allow_private_addresses: false
  files:
  - provider_id: localfs
    provider_type: inline::localfs
    config:
      storage_dir: ${env.SQLITE_STORE_DIR}/files
"""

_SQLITE_METADATA = """\
metadata_store:
  type: sqlite
  db_path: ${env.SQLITE_STORE_DIR}/registry.db
"""

_PG_METADATA = """\
metadata_store:
  type: postgres
  host: ${env.POSTGRES_HOST}
  port: ${env.POSTGRES_PORT}
  db: ${env.POSTGRES_DB}
  user: ${env.POSTGRES_USER}
  password: ${env.POSTGRES_PASSWORD}
"""

_RESOURCES = f"""\
models:
- model_id: {EMBEDDING_MODEL}
  provider_id: sentence-transformers
  provider_model_id: {EMBEDDING_MODEL}
  model_type: embedding
  metadata:
    embedding_dimension: {EMBEDDING_DIMENSION}
shields: []
vector_dbs: []
tool_groups:
- toolgroup_id: builtin::rag
  provider_id: rag-runtime
server:
  port: 8321
"""


def run_yaml_text(provider: str) -> str:
    """The run.yaml of a memory test server on `provider` ("sqlite-vec" or "pgvector")."""
    if provider == "sqlite-vec":
        return _COMMON_HEAD + _SQLITE_VEC + _COMMON_TAIL + _SQLITE_METADATA + _RESOURCES
    if provider == "pgvector":
        return _COMMON_HEAD + _PGVECTOR + _COMMON_TAIL + _PG_METADATA + _RESOURCES
    raise ValueError(f"unknown vector provider {provider!r}")


def fetch_minilm() -> Path:
    proc = _run(["bash", str(REPO_ROOT / "scripts" / "fetch-minilm.sh")], "scripts/fetch-minilm.sh")
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert (path / "model.safetensors").is_file(), f"fetch-minilm.sh ran but {path} has no weights"
    return path


# --- PostgreSQL ----------------------------------------------------------------------------

_PG_CLUSTER = None


def postgres_database(name: str) -> dict[str, str]:
    """POSTGRES_* settings of a fresh database with pgvector on a throwaway cluster shared by
    the session (stopped at interpreter exit); skips when LLAMA_STACK_SKIP_PG_TESTS=1."""
    global _PG_CLUSTER
    if os.environ.get(SKIP_PG_ENV) == "1":
        pytest.skip(f"{SKIP_PG_ENV}=1: the pgvector runs are skipped")
    from pg_support import PostgresServer

    if _PG_CLUSTER is None:
        _PG_CLUSTER = PostgresServer.start()
    return _PG_CLUSTER.create_database(name)



# --- servers -------------------------------------------------------------------------------


def memory_server(
    server_factory,
    tmp_path_factory,
    *,
    name: str,
    provider: str,
    minilm: Path,
    tokenizer: Path,
    pg_env: dict[str, str] | None = None,
) -> Server:
    """Builds (does not start) a server on `provider` with a fresh store (and, for pgvector, the
    database in `pg_env`)."""
    config_dir = tmp_path_factory.mktemp(f"run-{name}")
    run_yaml = config_dir / "run.yaml"
    run_yaml.write_text(run_yaml_text(provider))
    env = {
        "EMBEDDING_MODEL_PATH": str(minilm),
        "LLAMA3_TOKENIZER_MODEL": str(tokenizer),
        **(pg_env or {}),
    }
    return server_factory(name, run_config=str(run_yaml), extra_env=env)


def classic_client(server: Server) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)


def openai_client(server: Server, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.url + prefix, api_key="none", timeout=HTTP_TIMEOUT_S, max_retries=0
    )


# --- the RAG tool's text --------------------------------------------------------------------


def knowledge_search_texts(query: str, results: list[tuple[str, dict]]) -> list[str]:
    """The text items upstream's knowledge_search returns for `results` (content, chunk
    metadata), best first, with the default chunk template (§5.3): the metadata is shown as a
    Python dict repr without token_count and metadata_token_count."""
    texts = [
        f"knowledge_search tool found {len(results)} chunks:\n"
        "BEGIN of knowledge_search tool results.\n"
    ]
    for i, (content, metadata) in enumerate(results):
        shown = {
            k: v for k, v in metadata.items() if k not in ("token_count", "metadata_token_count")
        }
        texts.append(f"Result {i + 1}\nContent: {content}\nMetadata: {shown!r}\n")
    texts.append("END of knowledge_search tool results.\n")
    texts.append(
        f'The above results were retrieved to help answer the user\'s query: "{query}". '
        "Use them as supporting information only in answering this query.\n"
    )
    return texts


def item_texts(content) -> list[str]:
    """The texts of interleaved content items (client objects or dicts)."""
    out = []
    for item in content:
        kind = item["type"] if isinstance(item, dict) else item.type
        assert kind == "text", f"expected text items only, got {item!r}"
        out.append(item["text"] if isinstance(item, dict) else item.text)
    return out


def data_url(text: str, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(text.encode()).decode()}"


# --- a local web server the RAG tool must not reach -----------------------------------------


class LocalDocumentServer:
    """An HTTP server on 127.0.0.1 that counts the requests it gets."""

    def __init__(self, body: bytes = b"secret intranet page\n"):
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.hits = hits
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "LocalDocumentServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- token-exact documents ------------------------------------------------------------------


def single_token_words(tokenizer: Path, count: int) -> list[str]:
    """`count` distinct lowercase words w such that both "w" and " w" are whole tokens of the
    Llama 3 tokenizer. tiktoken-style encoders emit a pre-tokenized piece that is itself in the
    vocabulary as one token, so a text "w0 w1 w2 ..." of such words has exactly one token per
    word, and chunk boundaries can be predicted without a tokenizer library."""
    vocab = set()
    for line in tokenizer.read_text().splitlines():
        if line.strip():
            vocab.add(base64.b64decode(line.split()[0]))
    words = []
    for token in sorted(vocab, key=lambda b: (len(b), b)):
        if not token.startswith(b" "):
            continue
        word = token[1:]
        if 4 <= len(word) <= 8 and word.isalpha() and word.islower() and word.isascii():
            if word in vocab:
                words.append(word.decode())
    assert len(words) >= count, f"only {len(words)} suitable single-token words"
    # A spread over the sorted list, so the text is not all one prefix.
    step = len(words) // count
    return [words[i * step] for i in range(count)]
