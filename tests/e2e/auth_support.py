"""Identity services for the authentication tests, run in-process on loopback: a JWKS issuer
that signs real ES256 tokens and can rotate its key, and a `custom` authentication endpoint."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from e2e_support import LOCAL_RUN_YAML


def run_yaml_with_auth(tmp_path_factory, name: str, auth: dict, **server_extra) -> str:
    config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
    config["server"] = {**(config.get("server") or {}), "auth": auth, **server_extra}
    path = tmp_path_factory.mktemp(name) / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def _b64(n: int) -> str:
    raw = n.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _Serving:
    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Issuer(_Serving):
    """Publishes `/jwks` with its current key; `rotate()` replaces it."""

    def __init__(self, issuer: str = "https://idp.test", audience: str = "llama-stack"):
        self.issuer, self.audience = issuer, audience
        self.fetches = 0
        self.rotate()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.fetches += 1
                body = json.dumps({"keys": [outer.jwk]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.jwks_uri = f"{self.url}/jwks"

    def rotate(self) -> None:
        self.kid = f"k{time.time_ns()}"
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x), "y": _b64(numbers.y),
                    "kid": self.kid, "alg": "ES256", "use": "sig"}

    def token(self, sub: str, *, exp_in: int = 300, aud: str | None = None,
              iss: str | None = None, key=None, **claims) -> str:
        payload = {"sub": sub, "aud": aud or self.audience, "iss": iss or self.issuer,
                   "exp": int(time.time()) + exp_in, **claims}
        return jwt.encode(payload, key or self.key, algorithm="ES256",
                          headers={"kid": self.kid})

    @staticmethod
    def unsigned(sub: str, aud: str, iss: str) -> str:
        def part(obj) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
        claims = {"sub": sub, "aud": aud, "iss": iss, "exp": int(time.time()) + 300}
        return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class CustomEndpoint(_Serving):
    """A `custom` authentication endpoint: tokens in `users` are admitted as that principal."""

    def __init__(self, users: dict[str, dict]):
        self.calls: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.calls.append(body)
                user = users.get(body.get("api_key"))
                answer = json.dumps(user or {"message": "unknown key"}).encode()
                self.send_response(200 if user else 401)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
        self.endpoint = f"{self.url}/auth"
