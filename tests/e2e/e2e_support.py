"""Helpers for the end-to-end suite: running the real `llama-stack` binary and reading its wire
output (SSE framing, error bodies) byte for byte."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_RUN_YAML = REPO_ROOT / "distributions" / "local" / "run.yaml"

# The model id the local distribution serves (its INFERENCE_MODEL default, set explicitly here).
SERVED_MODEL = "meta-llama/Llama-3.2-1B-Instruct"
# Per §1.5 (v0.2.16+): model_id == provider_model_id gives the identifier "<provider_id>/<id>".
PROVIDER_ID = "candle"
PROVIDER_TYPE = "inline::candle"
MODEL_IDENTIFIER = f"{PROVIDER_ID}/{SERVED_MODEL}"

# The OpenAI-compatible base paths: 0.2.x clients use the first, 0.3+ SDKs the second.
OPENAI_PREFIXES = ["/v1/openai/v1", "/v1"]

HEALTH_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 80) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class ServerStartError(RuntimeError):
    pass


@dataclass
class Server:
    """One `llama-stack run` process; can be stopped and started again on the same store."""

    name: str
    binary: Path
    run_config: str
    env: dict[str, str]
    log_path: Path
    cli_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    grpc_port: int = 0
    process: subprocess.Popen | None = None
    stopped_at: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        cmd = [str(self.binary), "run", self.run_config, "--port", str(self.port),
               "--grpc-port", str(self.grpc_port)]
        for key, value in self.cli_env.items():
            cmd += ["--env", f"{key}={value}"]
        return cmd

    def start(self) -> "Server":
        assert not self.running, f"{self.name} is already running"
        self.port = free_port()
        self.grpc_port = free_port()
        env = dict(os.environ)
        env.setdefault("NO_COLOR", "1")  # plain log files
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _ALL_SERVERS.append(self)
        self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with status {code} before becoming healthy\n"
                    f"command: {' '.join(self.command())}\n--- log tail ---\n{self.log_tail()}"
                )
            try:
                resp = requests.get(f"{self.url}/v1/health", timeout=2)
                if resp.status_code == 200 and resp.json() == {"status": "OK"}:
                    return
                last = f"{resp.status_code} {resp.text[:200]}"
            except (requests.ConnectionError, requests.Timeout, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        self.kill()
        raise ServerStartError(
            f"{self.name} not healthy after {timeout:.0f}s (last: {last})\n"
            f"command: {' '.join(self.command())}\n--- log tail ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Sends SIGTERM and waits; returns the exit status. Kills and raises if it hangs."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(
                    f"{self.name} did not exit within {timeout:.0f}s of SIGTERM\n{self.log_tail()}"
                )
        self.stopped_at = time.monotonic()
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.stopped_at = time.monotonic()

    def restart(self) -> int:
        code = self.stop()
        self.start()
        return code

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)


# Every server started in this session, so a failing test can show their logs.
_ALL_SERVERS: list[Server] = []


def servers_to_report(since_s: float = 300.0) -> list[Server]:
    """Servers worth showing after a failure: running ones and those stopped recently."""
    now = time.monotonic()
    seen: list[Server] = []
    for s in _ALL_SERVERS:
        if s in seen:
            continue
        if s.running or (s.stopped_at and now - s.stopped_at < since_s):
            seen.append(s)
    return seen


# --- SSE ------------------------------------------------------------------------------------


@dataclass
class SseBody:
    raw: bytes
    content_type: str

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8")

    def blocks(self) -> list[str]:
        """The event blocks, split on the blank line that ends each one."""
        text = self.text
        assert text.endswith("\n\n"), f"stream does not end with a blank line: {text[-80:]!r}"
        return text[:-2].split("\n\n")

    def events(self) -> list[dict]:
        out = []
        for block in self.blocks():
            lines = block.split("\n")
            assert len(lines) == 1, f"an event block has more than one line: {block!r}"
            line = lines[0]
            assert line.startswith("data: "), f"event line does not start with 'data: ': {line!r}"
            out.append(json.loads(line[len("data: ") :]))
        return out


def post_sse(url: str, body: dict) -> SseBody:
    with requests.post(url, json=body, stream=True, timeout=HTTP_TIMEOUT_S) as resp:
        raw = resp.raw.read()
        assert resp.status_code == 200, f"{resp.status_code}: {raw[:500]!r}"
        return SseBody(raw=raw, content_type=resp.headers.get("content-type", ""))


# --- oversized bodies --------------------------------------------------------------------------


def post_oversized(port: int, path: str, declared_len: int = 1 << 30) -> tuple[int, bytes]:
    """POSTs a JSON body that declares `declared_len` bytes and keeps sending until the server
    answers; returns (status, response bytes). Works whether the server rejects on the
    Content-Length header or while reading the body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared_len}\r\n\r\n"
    ).encode()
    answered = threading.Event()

    def send() -> None:
        try:
            sock.sendall(head + b'{"model_id":"x","content":"')
            chunk = b"a" * (1 << 20)
            sent = 0
            while sent + len(chunk) < declared_len and not answered.is_set():
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server may close the connection once it has answered

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            got = sock.recv(65536)
            if not got:
                break
            data += got
        head_part, _, rest = data.partition(b"\r\n\r\n")
        answered.set()
        length = None
        for line in head_part.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
        try:
            while length is not None and len(rest) < length:
                got = sock.recv(65536)
                if not got:
                    break
                rest += got
        except OSError:
            pass
    finally:
        answered.set()
        sock.close()
        sender.join(timeout=10)
    status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    assert status_line.startswith("HTTP/1."), f"no HTTP response, got {data[:200]!r}"
    return int(status_line.split()[1]), rest


# --- small assertions used across modules ------------------------------------------------------


def metrics_by_name(metrics) -> dict[str, float]:
    """Maps metric name to value, for client objects or raw dicts."""
    out = {}
    for m in metrics or []:
        name = m["metric"] if isinstance(m, dict) else m.metric
        value = m["value"] if isinstance(m, dict) else m.value
        out[name] = value
    return out


def assert_token_metrics(metrics, max_tokens: int | None = None) -> dict[str, float]:
    by_name = metrics_by_name(metrics)
    assert {"prompt_tokens", "completion_tokens", "total_tokens"} <= set(by_name), by_name
    assert by_name["prompt_tokens"] > 0
    assert by_name["completion_tokens"] >= 0
    assert by_name["total_tokens"] == by_name["prompt_tokens"] + by_name["completion_tokens"]
    if max_tokens is not None:
        assert by_name["completion_tokens"] <= max_tokens
    return by_name


def assert_classic_error(resp: requests.Response, status: int) -> object:
    """Checks a classic-route error: `status` and body `{"error": {"detail": ...}}`; returns detail."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], dict) and "detail" in body["error"], body
    return body["error"]["detail"]


def assert_openai_error(resp: requests.Response, status: int) -> dict:
    """Checks an OpenAI-route error: `status` and body `{"error": {"message", "type", "code"}}`."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict), body
    assert {"message", "type", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    return err


def validation_errors(detail) -> list[dict]:
    """The `errors` list of a validation-error detail, each entry checked for loc/msg/type."""
    assert isinstance(detail, dict) and isinstance(detail.get("errors"), list), detail
    assert detail["errors"], detail
    for e in detail["errors"]:
        assert isinstance(e.get("loc"), list), e
        assert isinstance(e.get("msg"), str) and e["msg"], e
        assert isinstance(e.get("type"), str) and e["type"], e
    return detail["errors"]


# A tool the random-weight test model can be made to call (tool_choice required).
FORECAST_TOOL = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for the coming days",
        "parameters": {
            "type": "object",
            # Booleans only: a random-weight model would write an unbounded number for ever.
            "properties": {"hourly": {"type": "boolean"}, "metric": {"type": "boolean"}},
            "required": ["hourly", "metric"],
        },
    },
}


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, with one tiny data chunk: image
    limits are checked from the header, before any pixel is decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def make_test_gguf(binary: Path, tokenizer_model: Path, work: Path, quant: str) -> Path:
    """The tiny test model as one GGUF file of `quant`, written into `work`."""
    proc = subprocess.run(
        [str(binary), "model", "create-test", str(work), "--format", "gguf",
         "--quant", quant, "--tokenizer", str(tokenizer_model)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    return work / "model.gguf"
