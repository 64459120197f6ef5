"""Helpers for the remote-provider tests: run.yaml files, an OpenAI-compatible upstream that
misbehaves on request, and llama.cpp's llama-server as a real third-party upstream."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

from e2e_support import REPO_ROOT, free_port, tail

# The example gateway distribution: another server's models served through
# remote::openai-compat and remote::vllm.
GATEWAY_RUN_YAML = Path(__file__).resolve().parent / "remote_gateway.yaml"


def write_run_yaml(path: Path, image_name: str, providers: list[dict], models: list[dict]) -> Path:
    config = {
        "version": 2,
        "image_name": image_name,
        "apis": ["inference"],
        "providers": {"inference": providers},
        "metadata_store": {"type": "sqlite", "db_path": str(path.parent / "registry.db")},
        "models": models,
        "shields": [],
        "vector_dbs": [],
        "tool_groups": [],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- an upstream that fails on purpose -------------------------------------------------------


def _chat_answer(stream: bool) -> list[bytes] | bytes:
    if not stream:
        return json.dumps({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "up",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "pong"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }).encode()
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "po"}}]},
        {"choices": [{"index": 0, "delta": {"content": "ng"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return [f"data: {json.dumps(c)}\n\n".encode() for c in chunks] + [b"data: [DONE]\n\n"]


class FailingUpstream:
    """An OpenAI-compatible stand-in whose first path segment picks its behaviour:

    ok        answers (a stream when asked)          429       always 429, Retry-After: 1
    429once   429 once, then answers                 500       always 500 "kaboom"
    502       always 502                             503       always 503
    slow      answers after 3 seconds                cut       starts a stream, then hangs up

    It counts the attempts and records the Authorization header per behaviour. It stands in
    only for failures no real server produces on demand; the real peers are our own server and
    llama.cpp.
    """

    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self.authorization: dict[str, list[str | None]] = collections.defaultdict(list)
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def send_json(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.send_json(200, {"object": "list", "data": [{"id": "up", "object": "model"}]})

            def do_POST(self) -> None:
                mode = self.path.strip("/").split("/")[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with upstream.lock:
                    upstream.attempts[mode] += 1
                    attempt = upstream.attempts[mode]
                    upstream.authorization[mode].append(self.headers.get("Authorization"))
                if mode == "429" or (mode == "429once" and attempt == 1):
                    return self.send_json(429, {"error": {"message": "slow down"}},
                                          {"Retry-After": "1"})
                if mode == "500":
                    return self.send_json(500, {"error": {"message": "kaboom"}})
                if mode == "502":
                    return self.send_json(502, {"error": {"message": "bad gateway"}})
                if mode == "503":
                    return self.send_json(503, {"error": {"message": "overloaded"}})
                if mode == "slow":
                    time.sleep(3)
                stream = bool(body.get("stream"))
                if mode == "cut":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.write(_chat_answer(True)[0])
                    self.wfile.flush()
                    return  # HTTP/1.0: returning closes the connection mid-stream
                answer = _chat_answer(stream)
                if stream:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in answer:
                        self.wfile.write(chunk)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{mode}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- llama.cpp -------------------------------------------------------------------------------


def llama_cpp_bin_dir() -> Path:
    """llama-server's folder: LLAMA_CPP_BIN_DIR, else scripts/build-llamacpp.sh (cached)."""
    given = os.environ.get("LLAMA_CPP_BIN_DIR")
    if given:
        folder = Path(given)
    else:
        proc = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts" / "build-llamacpp.sh")],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=3600,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/build-llamacpp.sh failed:\n{proc.stderr[-4000:]}")
        folder = Path(proc.stdout.strip().splitlines()[-1])
    if not (folder / "llama-server").is_file():
        raise RuntimeError(f"no llama-server in {folder}")
    return folder


class LlamaServer:
    """One llama-server process on a GGUF file, answering under the model name `alias`."""

    def __init__(self, bin_dir: Path, model: Path, alias: str, log_path: Path,
                 extra: list[str] | None = None):
        self.port = free_port()
        self.log_path = log_path
        command = [
            str(bin_dir / "llama-server"), "-m", str(model), "-a", alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "-t", "2", "-c", "512", "-np", "1", "--no-warmup", "--no-webui",
            # Repacked quantized kernels may use AMX, which some VMs advertise and trap.
            "--no-repack", *(extra or []),
        ]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, env=dict(os.environ, LD_LIBRARY_PATH=str(bin_dir)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}\n"
                                   f"{tail(log_path)}")
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server not healthy after 120s\n{tail(log_path)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
