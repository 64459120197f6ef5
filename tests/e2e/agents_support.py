"""The model behind the agent tests: an OpenAI-compatible upstream the test controls (served
to the stack through `remote::openai-compat`), so that a tool call happens when a test wants
one. Markers in the last message choose the reply:

* `[[call]]` calls the client tool `get_weather`; `[[rag]]` calls `knowledge_search`;
* `[[search]]`, `[[wolfram]]` and `[[mcp]]` call `brave_search`, `wolfram_alpha` and the MCP
  tool `add`, and `[[fs]]` and `[[web]]` the Responses tools `file_search` and `web_search`,
  each only when the request offers that tool;
* `[[insecure]]` answers with code the code scanner flags; `[[long]]` stops with
  `finish_reason: length`; `[[slow]]` waits `slow_s` first;
* after a tool result it answers "The weather is <result>."; otherwise it greets.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

MODEL = "stub-model"
GREETING = "Hello from the stub."

# marker -> (tool the request must offer, the call's arguments)
TOOL_MARKERS = {
    "[[rag]]": ("knowledge_search", {"query": "boiling point"}),
    "[[search]]": ("brave_search", {"query": "llama stack"}),
    "[[wolfram]]": ("wolfram_alpha", {"query": "2+2"}),
    "[[mcp]]": ("add", {"a": 2, "b": 3}),
    "[[fs]]": ("file_search", {"query": "boiling point"}),
    "[[web]]": ("web_search", {"query": "llama stack"}),
}


def tool_call(name: str, arguments: dict, call_id: str) -> dict:
    return {"role": "assistant", "tool_calls": [{
        "index": 0, "id": call_id, "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)}}]}


class ToolCallingUpstream:
    """Streams (or returns) a greeting, a tool call, or an answer from a tool result."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.slow_s = 5.0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": [
                    {"id": MODEL, "object": "model", "created": 0, "owned_by": "t"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                upstream.requests.append(body)
                delta, finish = upstream.reply(body)
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in ({"choices": [{"index": 0, "delta": delta}]},
                                  {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                message = {"role": "assistant", "content": delta.get("content"),
                           "tool_calls": delta.get("tool_calls")}
                data = json.dumps({"id": "c", "object": "chat.completion", "created": 0,
                                   "model": MODEL, "choices": [{"index": 0, "message": message,
                                                                "finish_reason": finish}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def reply(self, body: dict) -> tuple[dict, str]:
        last = body["messages"][-1]
        text = json.dumps(last)
        if "[[slow]]" in text:
            time.sleep(self.slow_s)
        tool_names = [t["function"]["name"] for t in body.get("tools") or []]
        if last["role"] == "tool":
            return {"role": "assistant", "content": f"The weather is {last['content']}."}, "stop"
        if "[[insecure]]" in text:
            return {"role": "assistant",
                    "content": "import hashlib\nprint(hashlib.md5(data).hexdigest())"}, "stop"
        if "[[long]]" in text:
            return {"role": "assistant", "content": "This answer was cut"}, "length"
        for marker, (name, arguments) in TOOL_MARKERS.items():
            if marker in text and name in tool_names:
                return tool_call(name, arguments, f"call_{name}"), "tool_calls"
        if body.get("tools") and "[[call]]" in text:
            return tool_call("get_weather", {"city": "Paris"}, "call_1"), "tool_calls"
        return {"role": "assistant", "content": GREETING}, "stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def agents_run_yaml(path, upstream_url: str, minilm, metadata_store: dict,
                    tool_runtime: list | None = None, tool_groups: list | None = None,
                    rag_config: dict | None = None, files_dir=None) -> str:
    """A run.yaml serving the stub model, MiniLM, the code scanner, sqlite-vec, the RAG runtime
    (plus `tool_runtime`/`tool_groups` entries), the agents API and the responses API; with
    `files_dir`, the files API too."""
    files = {"files": [{"provider_id": "localfs", "provider_type": "inline::localfs",
                        "config": {"storage_dir": str(files_dir)}}]} if files_dir else {}
    path.write_text(yaml.safe_dump({
        "version": 2,
        "image_name": "agents-e2e",
        "apis": ["inference", "safety", "agents", "responses", "vector_io", "tool_runtime"]
        + (["files"] if files_dir else []),
        "providers": {
            "inference": [
                {"provider_id": "stub", "provider_type": "remote::openai-compat",
                 "config": {"url": upstream_url, "resilience": {"max_retries": 0}}},
                {"provider_id": "sentence-transformers",
                 "provider_type": "inline::sentence-transformers",
                 "config": {"model_path": str(minilm)}},
            ],
            "safety": [{"provider_id": "code-scanner", "provider_type": "inline::code-scanner",
                        "config": {}}],
            "agents": [{"provider_id": "meta-reference", "provider_type": "inline::meta-reference",
                        "config": {}}],
            "responses": [{"provider_id": "builtin", "provider_type": "inline::builtin",
                           "config": {}}],
            "vector_io": [{"provider_id": "sqlite-vec", "provider_type": "inline::sqlite-vec",
                           "config": {"db_path": str(path.parent / "vec.db")}}],
            "tool_runtime": [{"provider_id": "rag-runtime", "provider_type": "inline::rag-runtime",
                              "config": rag_config or {}}] + (tool_runtime or []),
            **files,
        },
        "metadata_store": metadata_store,
        "models": [
            {"model_id": MODEL, "provider_id": "stub", "model_type": "llm"},
            {"model_id": "all-MiniLM-L6-v2", "provider_id": "sentence-transformers",
             "model_type": "embedding", "metadata": {"embedding_dimension": 384}},
        ],
        "shields": [{"shield_id": "CodeScanner"}],
        "tool_groups": [{"toolgroup_id": "builtin::rag", "provider_id": "rag-runtime"}]
        + (tool_groups or []),
    }, sort_keys=False))
    return str(path)
