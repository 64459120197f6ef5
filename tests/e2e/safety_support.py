"""Shared pieces of the safety end-to-end tests: an OpenAI-compatible guard upstream whose
verdict the test picks, a run.yaml that serves it through `remote::openai-compat` to the
`inline::llama-guard` and `inline::code-scanner` providers, and the Llama Guard 3 prompt as
the reference text spells it (written out here independently of the server's code)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

GUARD_MODEL = "meta-llama/Llama-Guard-3-1B"

# The marker a test writes into its message picks the guard's answer.
REPLIES = {
    "[[safe]]": "safe",
    "[[s1]]": "unsafe\nS1",
    "[[s10s2]]": "unsafe\nS10,S2",
    "[[spaced]]": "unsafe\nS1, S2",
    "[[s2only]]": "unsafe\nS2",
    "[[garbage]]": "The weather is lovely today.",
}

CATEGORIES = [
    ("S1", "Violent Crimes"), ("S2", "Non-Violent Crimes"), ("S3", "Sex Crimes"),
    ("S4", "Child Exploitation"), ("S5", "Defamation"), ("S6", "Specialized Advice"),
    ("S7", "Privacy"), ("S8", "Intellectual Property"), ("S9", "Indiscriminate Weapons"),
    ("S10", "Hate"), ("S11", "Self-Harm"), ("S12", "Sexual Content"), ("S13", "Elections"),
    ("S14", "Code Interpreter Abuse"),
]


def reference_prompt(turns: list[tuple[str, str]], with_s14: bool = False,
                     excluded: tuple[str, ...] = ()) -> str:
    """The §4.2 template filled in: `turns` are (Role, text) pairs after pre-processing."""
    codes = [(c, n) for c, n in CATEGORIES if (with_s14 or c != "S14") and c not in excluded]
    agent = turns[-1][0]
    return (
        f"Task: Check if there is unsafe content in '{agent}' messages in conversations according "
        "our safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        + "\n".join(f"{c}: {n}." for c, n in codes)
        + "\n<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
        + "\n\n".join(f"{role}: {text}" for role, text in turns)
        + "\n\n<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {agent} message in the above "
        "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line "
        "must include a comma-separated list of violated categories."
    )


class GuardUpstream:
    """Answers `/chat/completions` with the verdict the marker in the prompt asks for, and
    keeps every request body it got."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

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
                if self.path.endswith("/models"):
                    self.send_json(200, {"object": "list", "data": [
                        {"id": GUARD_MODEL, "object": "model", "created": 0, "owned_by": "t"}]})
                else:
                    self.send_json(404, {"error": {"message": "no such route"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with upstream.lock:
                    upstream.requests.append(body)
                if not self.path.endswith("/chat/completions"):
                    self.send_json(404, {"error": {"message": "no such route"}})
                    return
                text = json.dumps(body["messages"])
                reply = next((r for marker, r in REPLIES.items() if marker in text), "safe")
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for chunk in (
                        {"choices": [{"index": 0, "delta": {"role": "assistant",
                                                            "content": reply}}]},
                        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    ):
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return
                self.send_json(200, {
                    "id": "chatcmpl-guard", "object": "chat.completion", "created": 0,
                    "model": body.get("model"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
                })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def last_prompt(self) -> dict:
        with self.lock:
            return self.requests[-1]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_safety_run_yaml(path: Path, upstream_url: str, code_scanner: bool = True) -> Path:
    safety = [
        {"provider_id": "llama-guard", "provider_type": "inline::llama-guard",
         "config": {"excluded_categories": []}},
        {"provider_id": "lg-no-s2", "provider_type": "inline::llama-guard",
         "config": {"excluded_categories": ["S2"]}},
    ]
    shields = [
        {"shield_id": "llama-guard", "provider_id": "llama-guard",
         "provider_shield_id": GUARD_MODEL},
        # The 0.2 short name; moderation requests pick shields by this id, so it differs.
        {"shield_id": "guard-no-s2", "provider_id": "lg-no-s2",
         "provider_shield_id": "Llama-Guard-3-1B"},
    ]
    if code_scanner:
        safety.append({"provider_id": "code-scanner", "provider_type": "inline::code-scanner",
                       "config": {}})
        shields.append({"shield_id": "CodeScanner", "provider_id": "code-scanner"})
    config = {
        "version": 2,
        "image_name": "safety-e2e",
        "apis": ["inference", "safety"],
        "providers": {
            "inference": [{"provider_id": "guardup", "provider_type": "remote::openai-compat",
                           "config": {"url": upstream_url,
                                      "resilience": {"max_retries": 0}}}],
            "safety": safety,
        },
        "metadata_store": {"type": "sqlite", "db_path": str(path.parent / "registry.db")},
        "models": [{"model_id": GUARD_MODEL, "provider_id": "guardup", "model_type": "llm"}],
        "shields": shields,
        "safety": {"default_shield_id": "llama-guard"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
