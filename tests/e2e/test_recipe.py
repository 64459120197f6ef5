"""The document-QA recipe end to end: `llama-stack recipe doc-qa` (the stack in-process), and
the Python (`llama-stack-client` 0.2.23) and Rust (`doc-qa-example`) examples against a server
on the same run.yaml.

Embeddings are the real all-MiniLM-L6-v2 on `inline::sentence-transformers`. The LLM is an
OpenAI-compatible upstream the test controls (served through `remote::openai-compat`): offered
`knowledge_search` with a user message last, it searches for the user's question; given the
tool's result, it answers by quoting the retrieved line that holds the question's keyword, so
an answer holds the right fact only if retrieval found the right document.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from e2e_support import REPO_ROOT, Server
from memory_support import LocalDocumentServer, fetch_minilm

MODEL = "doc-qa-stub"
CLI_TIMEOUT_S = 300

# Each document holds one fact under a made-up keyword; the questions name the keyword.
DOCUMENTS = {
    "lighthouse.txt": "Harbour notes\n\nThe Varnholt lighthouse was painted teal in 1931.\n"
                      "It stands on the northern cliff above the old quay.\n",
    "recipes/soup.md": "# Winter soup\n\nThe Quillfeather soup is always seasoned with smoked "
                       "juniper.\n\nServe it hot with rye bread.\n",
    "timetable.html": "<html><head><title>Trains</title></head><body><h1>Night trains</h1>"
                      "<p>The Brindlemoor night train departs at 23:47 from platform nine.</p>"
                      "</body></html>\n",
    "garden/guide.md": "# Orchard guide\n\nThe Tansywick orchard grows exactly forty-two pear "
                       "trees.\n",
}
KEYWORDS = ["Varnholt", "Quillfeather", "Brindlemoor", "Tansywick", "Pelloquin"]
# Served over HTTP, for --docs URLs.
WEB_PAGE = b"Bridge survey\nThe Pelloquin bridge is built of blue granite.\n"
QUESTIONS = {
    "lighthouse": ("What colour was the Varnholt lighthouse painted?", "painted teal in 1931",
                   "lighthouse.txt"),
    "soup": ("What is the Quillfeather soup seasoned with?", "seasoned with smoked juniper",
             "recipes/soup.md"),
    "train": ("When does the Brindlemoor night train depart?", "departs at 23:47",
              "timetable.html"),
}
NOT_FOUND = "The documents do not say."


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


class DocQaUpstream:
    """An OpenAI-compatible chat server: searches, then quotes what the search found."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def send_json(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.send_json({"object": "list", "data": [
                    {"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(body)
                delta, finish = upstream.reply(body)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in ({"choices": [{"index": 0, "delta": delta}]},
                                  {"choices": [{"index": 0, "delta": {},
                                                "finish_reason": finish}]}):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                message = {"role": "assistant", "content": delta.get("content"),
                           "tool_calls": delta.get("tool_calls")}
                self.send_json({"id": "c", "object": "chat.completion", "created": 0,
                                "model": MODEL, "choices": [{"index": 0, "message": message,
                                                             "finish_reason": finish}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def reply(body: dict) -> tuple[dict, str]:
        messages = body["messages"]
        last = messages[-1]
        tools = [t["function"]["name"] for t in body.get("tools") or []]
        question = next(
            (text_of(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
        if last["role"] == "user" and "knowledge_search" in tools:
            return {"role": "assistant", "tool_calls": [{
                "index": 0, "id": "call_search", "type": "function",
                "function": {"name": "knowledge_search",
                             "arguments": json.dumps({"query": question})}}]}, "tool_calls"
        if last["role"] == "tool":
            found = text_of(last["content"])
            keyword = next((k for k in KEYWORDS if k.lower() in question.lower()), None)
            for line in found.splitlines():
                line = line.strip()
                # The closing line repeats the query, keyword included; it is no fact.
                if (keyword and keyword in line and not line.startswith("Metadata:")
                        and "retrieved to help answer" not in line):
                    fact = line.removeprefix("Content:").strip()
                    return {"role": "assistant",
                            "content": f"According to the documents: {fact}"}, "stop"
        return {"role": "assistant", "content": NOT_FOUND}, "stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def upstream():
    up = DocQaUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def minilm() -> Path:
    return fetch_minilm()


def write_run_yaml(path: Path, upstream_url: str, minilm: Path, *, with_rag: bool = True,
                   allow_private: bool = False) -> Path:
    """A run.yaml whose stores live under ${env.DOC_QA_STORE}, so every process gets its own."""
    store = "${env.DOC_QA_STORE}"
    config = {
        "version": 2,
        "image_name": "doc-qa-e2e",
        "apis": ["inference", "agents", "vector_io", "tool_runtime"],
        "providers": {
            "inference": [
                {"provider_id": "stub", "provider_type": "remote::openai-compat",
                 "config": {"url": upstream_url, "resilience": {"max_retries": 0}}},
                {"provider_id": "sentence-transformers",
                 "provider_type": "inline::sentence-transformers",
                 "config": {"model_path": str(minilm)}},
            ],
            "agents": [{"provider_id": "meta-reference",
                        "provider_type": "inline::meta-reference", "config": {}}],
            "vector_io": [{"provider_id": "sqlite-vec", "provider_type": "inline::sqlite-vec",
                           "config": {"db_path": f"{store}/vec.db"}}],
            "tool_runtime": [{"provider_id": "rag-runtime",
                              "provider_type": "inline::rag-runtime",
                              "config": {"allow_private_addresses": allow_private}}],
        },
        "metadata_store": {"type": "sqlite", "db_path": f"{store}/registry.db"},
        "models": [
            {"model_id": MODEL, "provider_id": "stub", "model_type": "llm"},
            {"model_id": "all-MiniLM-L6-v2", "provider_id": "sentence-transformers",
             "model_type": "embedding", "metadata": {"embedding_dimension": 384}},
        ],
        "tool_groups": [{"toolgroup_id": "builtin::rag", "provider_id": "rag-runtime"}]
        if with_rag else [],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run_yaml(tmp_path_factory, upstream, minilm) -> Path:
    return write_run_yaml(tmp_path_factory.mktemp("doc-qa") / "run.yaml", upstream.url, minilm)


def write_docs(root: Path) -> Path:
    for name, text in DOCUMENTS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    return write_docs(tmp_path_factory.mktemp("docs"))


def recipe(binary: Path, run_config: Path, store: Path, *args: str,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [str(binary), "recipe", "doc-qa", "--distribution", str(run_config),
           "--env", f"DOC_QA_STORE={store}", *args]
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("RUST_LOG", None)
    return subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def answers(stdout: str) -> list[tuple[str, list[str]]]:
    """(answer text, sources) per question, from the answer lines and their `Sources:` line."""
    out, text = [], []
    for line in stdout.splitlines():
        if line.startswith("Sources: "):
            out.append(("\n".join(text).strip(), line.removeprefix("Sources: ").split(", ")))
            text = []
        else:
            text.append(line)
    assert not "".join(text).strip(), f"text after the last Sources line: {stdout!r}"
    return out


def assert_answered(answer: tuple[str, list[str]], key: str) -> None:
    _, fact, doc_id = QUESTIONS[key]
    text, sources = answer
    assert text.startswith("According to the documents:") and fact in text, answer
    assert doc_id in sources, answer
    # Every document is retrieved (five chunks are asked for, there are four); the one holding
    # the fact must be the best match.
    assert sources[0] == doc_id, answer


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"status {proc.returncode}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"


# --- the CLI recipe --------------------------------------------------------------------------


def test_recipe_answers_each_question_with_its_sources(llama_stack_bin, run_yaml, docs, tmp_path):
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs),
                  "--question", QUESTIONS["lighthouse"][0], "--question", QUESTIONS["soup"][0])
    assert proc.returncode == 0, describe(proc)
    got = answers(proc.stdout)
    assert len(got) == 2, describe(proc)
    assert_answered(got[0], "lighthouse")
    assert_answered(got[1], "soup")
    assert set(got[0][1]) == set(DOCUMENTS), got
    assert "Ingested 4 documents into `doc-qa-" in proc.stderr, describe(proc)
    assert f"Answering with `stub/{MODEL}`" in proc.stderr, describe(proc)


def test_a_rerun_reuses_the_vector_db_and_reingest_refreshes_it(
        llama_stack_bin, run_yaml, docs, tmp_path):
    question = ("--question", QUESTIONS["train"][0])
    first = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs), *question)
    assert first.returncode == 0, describe(first)
    db_id = first.stderr.split("Ingested 4 documents into `")[1].split("`")[0]

    again = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs), *question)
    assert again.returncode == 0, describe(again)
    assert f"Using the existing vector DB `{db_id}`" in again.stderr, describe(again)
    assert "Ingested" not in again.stderr, describe(again)
    assert_answered(answers(again.stdout)[0], "train")

    refreshed = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs), "--reingest",
                       *question)
    assert refreshed.returncode == 0, describe(refreshed)
    assert f"Ingested 4 documents into `{db_id}`" in refreshed.stderr, describe(refreshed)
    # Chunk ids come from the content, so the same documents replace themselves.
    got = answers(refreshed.stdout)
    assert_answered(got[0], "train")
    assert sorted(got[0][1]) == sorted(DOCUMENTS), got

    # Changed documents are another vector DB.
    changed = write_docs(tmp_path / "changed")
    (changed / "lighthouse.txt").write_text("The Varnholt lighthouse was painted ochre.\n")
    other = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(changed),
                   "--question", QUESTIONS["lighthouse"][0])
    assert other.returncode == 0, describe(other)
    assert "Ingested 4 documents into `doc-qa-" in other.stderr
    assert db_id not in other.stderr, describe(other)
    assert "painted ochre" in answers(other.stdout)[0][0]


def test_questions_come_from_stdin_line_by_line(llama_stack_bin, run_yaml, docs, tmp_path):
    stdin = f"{QUESTIONS['train'][0]}\n\n{QUESTIONS['soup'][0]}\n"
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs), stdin=stdin)
    assert proc.returncode == 0, describe(proc)
    got = answers(proc.stdout)
    assert len(got) == 2, describe(proc)
    assert_answered(got[0], "train")
    assert_answered(got[1], "soup")
    # Not a terminal: no prompt.
    assert "> " not in proc.stderr, describe(proc)


def test_a_terminal_gets_a_prompt_and_ctrl_c_ends_the_session(
        llama_stack_bin, run_yaml, docs, tmp_path):
    cmd = [str(llama_stack_bin), "recipe", "doc-qa", "--distribution", str(run_yaml),
           "--env", f"DOC_QA_STORE={tmp_path}", "--docs", str(docs)]
    controller, terminal = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("RUST_LOG", None)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=terminal, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    os.close(terminal)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    try:
        os.write(controller, f"{QUESTIONS['soup'][0]}\n".encode())
        got = []
        while not got or not got[-1].startswith("Sources: "):
            got.append(lines.get(timeout=CLI_TIMEOUT_S))
        assert_answered(answers("".join(got))[0], "soup")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        proc.kill()
        os.close(controller)
    stderr = proc.stderr.read()
    assert "> " in stderr and "interrupted" in stderr, stderr

    # The vector DB stays for the next run; the run's agent does not outlive it.
    server = Server(name="doc-qa-after", binary=llama_stack_bin, run_config=str(run_yaml),
                    env={"DOC_QA_STORE": str(tmp_path)}, log_path=tmp_path / "server.log")
    server.start()
    try:
        assert requests.get(f"{server.url}/v1/agents", timeout=30).json()["data"] == []
        dbs = requests.get(f"{server.url}/v1/vector-dbs", timeout=30).json()["data"]
        assert [db["identifier"][:7] for db in dbs] == ["doc-qa-"], dbs
    finally:
        server.stop()


def test_a_bad_document_is_reported_and_the_rest_still_answer(
        llama_stack_bin, run_yaml, tmp_path):
    folder = write_docs(tmp_path / "docs")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(folder),
                  "--question", QUESTIONS["soup"][0])
    assert proc.returncode == 0, describe(proc)
    assert "error: document `broken.pdf` not ingested: cannot read the document as a PDF" \
        in proc.stderr, describe(proc)
    assert "base64" not in proc.stderr, describe(proc)
    assert "Ingested 4 of 5 documents" in proc.stderr, describe(proc)
    assert_answered(answers(proc.stdout)[0], "soup")


def test_a_single_file_and_an_explicit_vector_db(llama_stack_bin, run_yaml, docs, tmp_path):
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs / "timetable.html"),
                  "--vector-db", "trains", "--model", MODEL,
                  "--question", QUESTIONS["train"][0])
    assert proc.returncode == 0, describe(proc)
    assert "Ingested 1 document into `trains`" in proc.stderr, describe(proc)
    assert answers(proc.stdout) == [
        ("According to the documents: The Brindlemoor night train departs at 23:47 from "
         "platform nine.", ["timetable.html"])]


def test_urls_go_through_the_stacks_address_policy(
        llama_stack_bin, run_yaml, upstream, minilm, docs, tmp_path):
    question = ("--question", "What is the Pelloquin bridge built of?")
    with LocalDocumentServer(WEB_PAGE) as web:
        url = f"{web.url}/bridge.txt"
        # The default policy keeps document URLs away from private addresses.
        refused = recipe(llama_stack_bin, run_yaml, tmp_path / "a", "--docs", str(docs), url,
                         *question)
        assert refused.returncode == 0, describe(refused)
        assert f"error: document `{url}` not ingested:" in refused.stderr, describe(refused)
        assert web.hits == [], web.hits
        assert url not in answers(refused.stdout)[0][1]

        allowed_yaml = write_run_yaml(tmp_path / "run.yaml", upstream.url, minilm,
                                      allow_private=True)
        allowed = recipe(llama_stack_bin, allowed_yaml, tmp_path / "b", "--docs", str(docs), url,
                         *question)
        assert allowed.returncode == 0, describe(allowed)
        assert web.hits == ["/bridge.txt"], web.hits
    text, sources = answers(allowed.stdout)[0]
    assert "built of blue granite" in text and sources[0] == url, allowed.stdout


def test_a_missing_docs_folder_fails_clearly(llama_stack_bin, run_yaml, tmp_path):
    missing = tmp_path / "no-such-folder"
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(missing),
                  "--question", "anything?")
    assert proc.returncode != 0, describe(proc)
    assert proc.stdout == ""
    assert f"--docs {missing}: no such file or folder" in proc.stderr, describe(proc)


def test_a_folder_without_documents_fails_clearly(llama_stack_bin, run_yaml, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "picture.gif").write_bytes(b"GIF89a")
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(empty), "--question", "x?")
    assert proc.returncode != 0, describe(proc)
    assert "no documents found in this folder" in proc.stderr, describe(proc)


def test_an_unknown_distribution_fails_clearly(llama_stack_bin, docs, tmp_path):
    proc = recipe(llama_stack_bin, Path("no-such-distribution"), tmp_path,
                  "--docs", str(docs), "--question", "x?")
    assert proc.returncode != 0, describe(proc)
    assert "no-such-distribution" in proc.stderr, describe(proc)


def test_a_run_yaml_without_builtin_rag_says_what_to_add(
        llama_stack_bin, upstream, minilm, docs, tmp_path):
    config = write_run_yaml(tmp_path / "run.yaml", upstream.url, minilm, with_rag=False)
    proc = recipe(llama_stack_bin, config, tmp_path, "--docs", str(docs), "--question", "x?")
    assert proc.returncode != 0, describe(proc)
    assert "registers no `builtin::rag` tool group" in proc.stderr, describe(proc)
    assert "tool_groups:\n- toolgroup_id: builtin::rag\n  provider_id: rag-runtime" in proc.stderr
    # Nothing was embedded before the check.
    assert "Ingest" not in proc.stderr, describe(proc)


def test_an_unknown_model_lists_the_registered_ones(llama_stack_bin, run_yaml, docs, tmp_path):
    proc = recipe(llama_stack_bin, run_yaml, tmp_path, "--docs", str(docs),
                  "--model", "no-such-model", "--question", "x?")
    assert proc.returncode != 0, describe(proc)
    assert "--model no-such-model" in proc.stderr, describe(proc)
    assert f"stub/{MODEL}" in proc.stderr, describe(proc)


# --- the examples against a server -----------------------------------------------------------


@pytest.fixture(scope="module")
def doc_qa_server(llama_stack_bin, run_yaml, tmp_path_factory):
    store = tmp_path_factory.mktemp("doc-qa-server")
    server = Server(name="doc-qa", binary=llama_stack_bin, run_config=str(run_yaml),
                    env={"DOC_QA_STORE": str(store)}, log_path=store / "server.log")
    server.start()
    yield server
    try:
        server.stop()
    except Exception:
        server.kill()


def check_example_output(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, describe(proc)
    got = answers(proc.stdout)
    assert len(got) == 2, describe(proc)
    assert_answered(got[0], "lighthouse")
    assert_answered(got[1], "train")
    assert "Inserted 4 of 4 documents" in proc.stderr, describe(proc)


def test_the_python_example(doc_qa_server, docs):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "doc-qa" / "python" / "doc_qa.py"),
         doc_qa_server.url, str(docs), QUESTIONS["lighthouse"][0], QUESTIONS["train"][0]],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    check_example_output(proc)


def test_the_rust_example(doc_qa_server, docs, llama_stack_bin):
    candidates = [llama_stack_bin.parent / "doc-qa-example",
                  REPO_ROOT / "target" / "debug" / "doc-qa-example"]
    binary = next((c for c in candidates if c.is_file()), None)
    if binary is None:
        pytest.skip(f"{candidates[-1]} is not built: run `cargo build -p doc-qa-example` first")
    proc = subprocess.run(
        [str(binary), doc_qa_server.url, str(docs), QUESTIONS["lighthouse"][0],
         QUESTIONS["train"][0]],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL)
    check_example_output(proc)
