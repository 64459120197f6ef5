"""The gRPC health service on SIGTERM: from the moment the server drains, `grpc.health.v1.Health`
reports the server (`""`) and every API service `NOT_SERVING`, as `/v1/ready` answers 503.

The listener closes at SIGTERM (new connections are refused, and open ones are told to go away,
GOAWAY), so the change is seen by whoever watches health on an open connection: a `Watch`
stream, which is what gRPC clients' own health checking uses. A chat request held open by the
upstream keeps the process in its drain window meanwhile.
"""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc

from e2e_support import HTTP_TIMEOUT_S, Server
from remote_support import write_run_yaml

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
INFERENCE = "llama_stack.v1.InferenceService"


class HeldUpstream:
    """An OpenAI-compatible upstream whose chat answers wait until `release` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()
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
                self.send_json({"object": "list", "data": [{"id": "up", "object": "model"}]})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream.arrived.set()
                upstream.release.wait(timeout=60)
                self.send_json({
                    "id": "held", "object": "chat.completion", "created": 0, "model": "up",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "pong"}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream():
    held = HeldUpstream()
    yield held
    held.stop()


@pytest.fixture
def draining_server(server_factory, upstream, tmp_path_factory) -> Server:
    providers = [{"provider_id": "held", "provider_type": "remote::openai-compat",
                  "config": {"url": upstream.url, "resilience": {"max_retries": 0}}}]
    models = [{"model_id": "m-held", "provider_id": "held", "provider_model_id": "up",
               "model_type": "llm"}]
    run_yaml = write_run_yaml(tmp_path_factory.mktemp("drain-grpc") / "run.yaml", "drain-grpc",
                              providers, models)
    server = server_factory("drain-grpc", run_config=str(run_yaml))
    server.env["LLAMA_STACK_SHUTDOWN_TIMEOUT"] = "30"
    return server.start()


def test_grpc_health_reports_not_serving_once_draining_begins(draining_server, upstream):
    server = draining_server
    target = f"127.0.0.1:{server.grpc_port}"
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", INFERENCE):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == SERVING, service
        watches = {service: health.Watch(health_pb2.HealthCheckRequest(service=service),
                                         timeout=60)
                   for service in ("", INFERENCE)}
        for service, watch in watches.items():
            assert next(watch).status == SERVING, service

        outcome: dict = {}

        def held_chat() -> None:
            outcome["response"] = requests.post(
                f"{server.url}/v1/chat/completions", timeout=HTTP_TIMEOUT_S,
                json={"model": "m-held", "messages": [{"role": "user", "content": "ping"}]})

        thread = threading.Thread(target=held_chat, daemon=True)
        thread.start()
        assert upstream.arrived.wait(timeout=30), server.log_tail(20)

        server.process.send_signal(signal.SIGTERM)
        for service, watch in watches.items():
            assert next(watch).status == NOT_SERVING, service
            watch.cancel()
        # Still draining: the held request keeps the process up, and new connections are
        # refused rather than told it is serving.
        assert server.process.poll() is None
        with grpc.insecure_channel(target) as fresh:
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(fresh).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    # The request in flight at SIGTERM still gets its answer, and the process exits cleanly.
    upstream.release.set()
    thread.join(timeout=30)
    assert outcome["response"].status_code == 200, outcome["response"].text
    assert server.process.wait(timeout=30) == 0
    assert "Shut down cleanly" in server.log_tail(20)
