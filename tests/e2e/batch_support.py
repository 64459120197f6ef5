"""Batches against a canned OpenAI-compatible upstream: it answers chat completions,
completions and embeddings after a set delay and counts every request it receives by the text it
was asked about, so a test can tell whether any request of a batch was sent twice."""

from __future__ import annotations

import collections
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import yaml

# The upstream lists `canned`; the stack serves it as `up/canned`.
UPSTREAM_MODEL = "up/canned"
TERMINAL = {"completed", "failed", "cancelled", "expired"}


def _prompt_of(path: str, body: dict) -> str:
    if path.endswith("/chat/completions"):
        content = body["messages"][-1]["content"]
        return content if isinstance(content, str) else json.dumps(content)
    if path.endswith("/completions"):
        return str(body.get("prompt"))
    return json.dumps(body.get("input"))


class CannedUpstream:
    """Answers each request after `delay_s`; `seen[text]` counts the requests per prompt."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.seen: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as two writes: without this, delayed ACKs add 40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def send_json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def send_stream(self, model: str, content: str, usage: dict) -> None:
                chunks = [
                    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": content}}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                     "usage": usage},
                ]
                data = b"".join(
                    f"data: {json.dumps({'id': 'chatcmpl-canned', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, **c})}\n\n".encode()
                    for c in chunks) + b"data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.send_json(200, {"object": "list", "data": [
                    {"id": "canned", "object": "model", "owned_by": "test"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                text = _prompt_of(self.path, body)
                with upstream.lock:
                    upstream.seen[text] += 1
                if upstream.delay_s:
                    time.sleep(upstream.delay_s)
                if "busy-once" in text and upstream.seen[text] == 1:
                    return self.send_json(429, {"error": {"message": "slow down"}})
                if "fail-upstream" in text:
                    return self.send_json(400, {"error": {"message": "the upstream refused this one"}})
                usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                if self.path.endswith("/chat/completions") and body.get("stream"):
                    return self.send_stream(body.get("model"), f"echo: {text}", usage)
                if self.path.endswith("/chat/completions"):
                    return self.send_json(200, {
                        "id": "chatcmpl-canned", "object": "chat.completion", "created": 0,
                        "model": body.get("model"), "usage": usage,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": f"echo: {text}"}}]})
                if self.path.endswith("/completions"):
                    return self.send_json(200, {
                        "id": "cmpl-canned", "object": "text_completion", "created": 0,
                        "model": body.get("model"), "usage": usage,
                        "choices": [{"index": 0, "finish_reason": "stop", "text": f"echo: {text}",
                                     "logprobs": None}]})
                inputs = body.get("input")
                inputs = inputs if isinstance(inputs, list) else [inputs]
                return self.send_json(200, {
                    "object": "list", "model": body.get("model"),
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                    "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                             for i, _ in enumerate(inputs)]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def batch_run_yaml(directory: Path, *, batches_config: dict | None = None,
                   metadata_store: dict | None = None, files: dict | None = None,
                   responses: bool = False) -> Path:
    """A distribution of the canned upstream (as `up/canned`), files (local unless `files`
    says otherwise) and batches."""
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "version": 2,
        "image_name": "batches-test",
        "apis": ["inference", "files", "batches"],
        "providers": {
            "inference": [{"provider_id": "up", "provider_type": "remote::openai-compat",
                           "config": {"url": "${env.UPSTREAM_URL}",
                                      "resilience": {"max_retries": 0}}}],
            "files": [files or {"provider_id": "localfs", "provider_type": "inline::localfs",
                                "config": {"storage_dir": str(directory / "files")}}],
            "batches": [{"provider_id": "reference", "provider_type": "inline::reference",
                         "config": batches_config or {}}],
        },
        "metadata_store": metadata_store or {"type": "sqlite",
                                             "db_path": str(directory / "registry.db")},
        "models": [{"model_id": "canned", "provider_id": "up",
                    "provider_model_id": "canned", "model_type": "llm"},
                   {"model_id": "canned-embed", "provider_id": "up",
                    "provider_model_id": "canned", "model_type": "embedding",
                    "metadata": {"embedding_dimension": 3}}],
    }
    if responses:
        config["apis"].append("responses")
        config["providers"]["responses"] = [
            {"provider_id": "builtin", "provider_type": "inline::builtin", "config": {}}]
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def chat_line(custom_id: str, text: str, model: str = UPSTREAM_MODEL, **body) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": text}], **body}}


def upload_jsonl(client: openai.OpenAI, lines: list[dict] | str, name: str = "batch.jsonl"):
    text = lines if isinstance(lines, str) else "\n".join(json.dumps(line) for line in lines)
    return client.files.create(file=(name, io.BytesIO(text.encode())), purpose="batch")


def wait_for(client: openai.OpenAI, batch_id: str, statuses=TERMINAL, timeout: float = 120.0,
             until=None):
    """The batch once its status is one of `statuses` (or `until(batch)` holds)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if (until and until(batch)) or (until is None and batch.status in statuses):
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} stuck: {batch}"
        assert until is None or batch.status not in TERMINAL, f"batch ended early: {batch}"
        time.sleep(0.1)


def jsonl(client: openai.OpenAI, file_id: str) -> list[dict]:
    text = client.files.content(file_id).content.decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
