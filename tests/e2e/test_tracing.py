"""Request ids and W3C trace context: the server answers `x-request-id`, tags every log line of
a request with its request and trace ids, and sends the caller's trace id on to a remote
provider in `traceparent`."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from remote_support import _chat_answer, write_run_yaml

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class RecordingUpstream:
    """An OpenAI-compatible upstream that answers "pong" and records each `traceparent`."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.reply(json.dumps({"object": "list", "data": [{"id": "up"}]}).encode())

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.traceparents.append(self.headers.get("traceparent"))
                self.reply(_chat_answer(False))

            def reply(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture(scope="module")
def upstream():
    up = RecordingUpstream()
    yield up
    up.server.shutdown()
    up.server.server_close()


@pytest.fixture(scope="module")
def traced(server_factory, upstream, tmp_path_factory):
    providers = [{"provider_id": "up", "provider_type": "remote::openai-compat",
                  "config": {"url": upstream.url, "api_key": "k"}}]
    models = [{"model_id": "m-up", "provider_id": "up", "provider_model_id": "up",
               "model_type": "llm"}]
    run_yaml = write_run_yaml(tmp_path_factory.mktemp("traced") / "run.yaml", "traced",
                              providers, models)
    # tower_http's per-request lines are DEBUG: they show that lines logged inside the
    # request carry the ids.
    env = {"LLAMA_STACK_LOG_FORMAT": "json", "RUST_LOG": "info,tower_http=debug"}
    return server_factory("traced", run_config=str(run_yaml), extra_env=env).start()


def log_lines_with(server, key: str, value: str) -> list[dict]:
    found = []
    for line in server.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        spans = entry.get("spans") or []
        if any(span.get(key) == value for span in spans):
            found.append(entry)
    return found


def chat(server, headers: dict) -> requests.Response:
    body = {"model": "m-up", "messages": [{"role": "user", "content": "ping"}]}
    return requests.post(f"{server.url}/v1/chat/completions", json=body, headers=headers,
                         timeout=30)


def test_ids_reach_the_response_the_upstream_and_every_log_line(traced, upstream):
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "req-e2e-1"}
    response = chat(traced, headers)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "pong"
    assert response.headers["x-request-id"] == "req-e2e-1"

    sent = TRACEPARENT.match(upstream.traceparents[-1] or "")
    assert sent, upstream.traceparents
    assert sent.group(1) == TRACE_ID
    assert sent.group(2) != PARENT_ID  # a new span id: this server's call is a child

    # The log is written by another process: give its last line a moment.
    deadline = time.monotonic() + 5
    while True:
        lines = log_lines_with(traced, "request_id", "req-e2e-1")
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) >= 2, traced.log_tail(40)
    for entry in lines:
        request_span = next(s for s in entry["spans"] if s.get("request_id") == "req-e2e-1")
        assert request_span["trace_id"] == TRACE_ID, entry


def test_ids_are_made_when_the_client_sends_none(traced, upstream):
    first = chat(traced, {})
    second = chat(traced, {})
    assert first.status_code == second.status_code == 200
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert ids[0] and ids[0] != ids[1]
    traces = [TRACEPARENT.match(t).group(1) for t in upstream.traceparents[-2:]]
    assert traces[0] != traces[1]
    # The generated trace id is the one the log lines of that request carry.
    time.sleep(0.3)
    lines = log_lines_with(traced, "request_id", ids[1])
    assert lines and all(
        s["trace_id"] == traces[1] for e in lines for s in e["spans"] if "trace_id" in s
    ), traced.log_tail(40)
    # Health checks and other non-provider routes answer an id too.
    assert requests.get(f"{traced.url}/v1/health", timeout=10).headers["x-request-id"]
