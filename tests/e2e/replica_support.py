"""Replicas behind a load balancer, for the multi-replica tests: a round-robin HTTP proxy that
sends each request to the next live backend and passes answers through as they come."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from e2e_support import HTTP_TIMEOUT_S

# Hop-by-hop headers, and the ones the proxy sets itself.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "host"}


class RoundRobinProxy:
    """Sends each request to the next backend in turn and passes its answer through as it
    comes, so a streamed turn reaches the client event by event. As a load balancer does, a
    backend that refuses the connection is marked down and the request goes to the next one
    (it never reached the refusing server, so trying again is safe); a request a backend
    accepted and then dropped fails, as it would behind a real balancer."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = [urlsplit(b) for b in backends]
        self.routed: list[tuple[str, str, int]] = []  # (method, path, backend index)
        self.down: set[int] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            # HTTP/1.0: the answer ends when the connection closes, whatever its framing was.
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in HOP_HEADERS}
                for _ in proxy.backends:
                    index = proxy.pick(self.command, self.path)
                    backend = proxy.backends[index]
                    conn = http.client.HTTPConnection(backend.hostname, backend.port,
                                                      timeout=HTTP_TIMEOUT_S)
                    try:
                        conn.connect()
                        break
                    except ConnectionRefusedError:
                        proxy.mark_down(index)
                else:
                    self.send_error(502, "no backend is up")
                    return
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    self.send_response(answer.status, answer.reason)
                    for key, value in answer.getheaders():
                        if key.lower() not in HOP_HEADERS | {"server", "date"}:
                            self.send_header(key, value)
                    self.end_headers()
                    while chunk := answer.read1(65536):
                        self.wfile.write(chunk)
                        self.wfile.flush()
                finally:
                    conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def pick(self, method: str, path: str) -> int:
        with self._lock:
            live = [i for i in range(len(self.backends)) if i not in self.down]
            index = live[len(self.routed) % len(live)] if live else 0
            self.routed.append((method, path, index))
            return index

    def mark_down(self, index: int) -> None:
        with self._lock:
            self.down.add(index)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


