"""Operations endpoints against the real binary: `GET /metrics` (parsed with the Prometheus
client's own text parser), `GET /v1/ready`, rejections counted and logged at a bounded rate, and
the shutdown deadline for requests still in flight after SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import openai
import pytest
import requests
import yaml
from llama_stack_client import LlamaStackClient
from prometheus_client.parser import text_string_to_metric_families

from e2e_support import HTTP_TIMEOUT_S, LOCAL_RUN_YAML, SERVED_MODEL, Server
from remote_support import FailingUpstream, write_run_yaml


def scrape(server: Server) -> list:
    resp = requests.get(f"{server.url}/metrics", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4"), resp.headers
    return list(text_string_to_metric_families(resp.text))


def total(families: list, sample: str, **labels: str) -> float:
    """The sum of the samples named `sample` whose labels include `labels`."""
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def family(families: list, name: str):
    found = [f for f in families if f.name == name]
    assert found, f"{name} is not in /metrics: {sorted(f.name for f in families)}"
    return found[0]


def assert_histogram(families: list, name: str, **labels: str) -> None:
    """`name` is a histogram with buckets up to +Inf, and at least one observation."""
    hist = family(families, name)
    assert hist.type == "histogram", hist.type
    buckets = [s for s in hist.samples if s.name == f"{name}_bucket"
               and all(s.labels.get(k) == v for k, v in labels.items())]
    bounds = {s.labels["le"] for s in buckets}
    assert len(bounds) >= 10 and {"0.005", "+Inf"} <= bounds, bounds
    assert total(families, f"{name}_count", **labels) >= 1


def test_metrics_count_requests_inference_and_agent_turns(server):
    before = scrape(server)
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0,
                       timeout=HTTP_TIMEOUT_S)
    oa.chat.completions.create(model=SERVED_MODEL, max_tokens=4, temperature=0,
                               messages=[{"role": "user", "content": "Hello"}])
    streamed = oa.chat.completions.create(model=SERVED_MODEL, max_tokens=4, temperature=0,
                                          stream=True,
                                          messages=[{"role": "user", "content": "Hi"}])
    assert list(streamed)
    assert requests.get(f"{server.url}/v1/models", timeout=HTTP_TIMEOUT_S).status_code == 200
    missing = requests.get(f"{server.url}/v1/no-such-route/abc123", timeout=HTTP_TIMEOUT_S)
    assert missing.status_code == 404
    client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    agent_id = client.agents.create(agent_config={
        "model": SERVED_MODEL, "instructions": "Be brief.",
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 4}}).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="m").session_id
    client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                              messages=[{"role": "user", "content": "Hi"}])
    after = scrape(server)

    def moved(sample: str, **labels: str) -> float:
        return total(after, sample, **labels) - total(before, sample, **labels)

    # HTTP: by route template and status; a path no route matches is one label, not the path.
    assert moved("llama_stack_http_requests_total", method="POST",
                 route="/v1/chat/completions", status="200") == 2
    assert moved("llama_stack_http_requests_total", method="GET", route="/v1/models",
                 status="200") == 1
    assert moved("llama_stack_http_requests_total", route="unmatched", status="404") == 1
    assert all("abc123" not in s.labels.get("route", "") for f in after for s in f.samples)
    assert_histogram(after, "llama_stack_http_request_duration_seconds",
                     route="/v1/chat/completions")
    assert family(after, "llama_stack_http_requests_in_flight").type == "gauge"

    # Inference: two chat completions and the agent turn's one, on the local engine, labelled
    # with the registered model's identifier.
    model = {"model": f"candle/{SERVED_MODEL}", "provider": "candle"}
    assert moved("llama_stack_inference_requests_total", **model) == 3
    assert moved("llama_stack_inference_prompt_tokens_total", **model) > 0
    assert moved("llama_stack_inference_completion_tokens_total", **model) > 0
    assert moved("llama_stack_inference_time_to_first_token_seconds_count", **model) >= 2
    assert moved("llama_stack_inference_generation_duration_seconds_count", **model) == 3
    assert_histogram(after, "llama_stack_inference_time_to_first_token_seconds", **model)
    assert_histogram(after, "llama_stack_inference_generation_duration_seconds", **model)
    assert family(after, "llama_stack_engine_queue_depth").type == "gauge"
    assert family(after, "llama_stack_engine_batch_size").type == "gauge"
    assert moved("llama_stack_agent_turns_total", outcome="complete") == 1

    # Every name follows the conventions.
    for f in after:
        assert f.name.startswith("llama_stack_"), f.name
        if f.type == "counter":
            assert all(s.name.endswith("_total") for s in f.samples), f.name


def test_ready_is_ok_when_the_store_and_providers_answer(server):
    resp = requests.get(f"{server.url}/v1/ready", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"status": "OK"}


def quota_run_yaml(tmp_path_factory, budget: int) -> str:
    config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
    config["server"] = {**(config.get("server") or {}), "quota": {
        "anonymous_max_requests": budget, "period": "hour"}}
    path = tmp_path_factory.mktemp("metrics-quota") / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_quota_rejections_are_counted_and_logged_once(server_factory, tmp_path_factory):
    server = server_factory("metrics-quota",
                            run_config=quota_run_yaml(tmp_path_factory, 2)).start()
    answers = [requests.get(f"{server.url}/v1/models", timeout=HTTP_TIMEOUT_S).status_code
               for _ in range(6)]
    assert answers == [200, 200, 429, 429, 429, 429]
    # Scrapes and readiness checks never spend the budget.
    for _ in range(3):
        families = scrape(server)
        assert requests.get(f"{server.url}/v1/ready", timeout=HTTP_TIMEOUT_S).status_code == 200
    assert total(families, "llama_stack_http_requests_total", route="/v1/models",
                 status="429") == 4
    assert total(families, "llama_stack_rejections_total", transport="http",
                 kind="rate_limit_error") == 4
    server.stop()
    log = server.log_path.read_text()
    rejected = [line for line in log.splitlines() if "Request rejected" in line]
    assert len(rejected) == 1, rejected
    assert "WARN" in rejected[0], rejected[0]
    assert not [line for line in log.splitlines() if " ERROR " in line and "Quota" in line]


@pytest.fixture(scope="module")
def failing():
    upstream = FailingUpstream()
    yield upstream
    upstream.stop()


class Silent:
    """An upstream that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def gateway(server_factory, failing, tmp_path_factory) -> Server:
    silent = Silent()
    fast = {"max_retries": 1, "initial_backoff_s": 0.01, "max_backoff_s": 0.02}

    def compat(name, url, **resilience):
        return {"provider_id": f"p-{name}", "provider_type": "remote::openai-compat",
                "config": {"url": url, "resilience": {**fast, **resilience}}}

    providers = [
        compat("ok", failing.url("ok")),
        compat("slow", failing.url("slow")),
        compat("500", failing.url("500"), circuit_breaker_failures=0),
        compat("breaker", failing.url("502"), max_retries=0, circuit_breaker_failures=2,
               circuit_breaker_cooldown_s=60),
        compat("silent", silent.url, timeout_s=300),
    ]
    models = [{"model_id": f"m-{p['provider_id'][2:]}", "provider_id": p["provider_id"],
               "provider_model_id": "up", "model_type": "llm"} for p in providers]
    run_yaml = write_run_yaml(tmp_path_factory.mktemp("metrics-gw") / "run.yaml",
                              "metrics-gateway", providers, models)
    yield server_factory("metrics-gateway", run_config=str(run_yaml))
    silent.close()


def chat(server: Server, model: str, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/v1/chat/completions", timeout=HTTP_TIMEOUT_S, json={
        "model": model, "messages": [{"role": "user", "content": "ping"}], **kwargs})


def test_forwarded_tokens_provider_errors_retries_and_the_breaker(gateway):
    gateway.start()
    assert chat(gateway, "m-ok").status_code == 200
    assert chat(gateway, "m-500").status_code == 502
    for _ in range(3):
        assert chat(gateway, "m-breaker").status_code in (502, 503)
    families = scrape(gateway)
    ok = {"model": "m-ok", "provider": "p-ok"}
    assert total(families, "llama_stack_inference_prompt_tokens_total", **ok) == 3
    assert total(families, "llama_stack_inference_completion_tokens_total", **ok) == 1
    assert total(families, "llama_stack_inference_generation_duration_seconds_count", **ok) == 1
    # A 500 is not temporary: one attempt, no retry.
    assert total(families, "llama_stack_provider_errors_total", provider="p-500") == 1
    assert total(families, "llama_stack_provider_retries_total", provider="p-500") == 0
    # Two failures open the breaker; the third call fails fast.
    assert total(families, "llama_stack_provider_errors_total", provider="p-breaker",
                 kind="upstream_error") == 2
    assert total(families, "llama_stack_provider_circuit_breaker_state",
                 provider="p-breaker") == 2
    assert total(families, "llama_stack_provider_circuit_breaker_state", provider="p-ok") == 0
    # An upstream that does not answer its health probe makes the server not ready.
    readiness = requests.get(f"{gateway.url}/v1/ready", timeout=HTTP_TIMEOUT_S)
    assert readiness.status_code == 503, readiness.text
    assert [f["component"] for f in readiness.json()["failing"]] == ["provider:p-silent"]
    gateway.stop()


def in_background(call) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["response"] = call()
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_sigterm_lets_requests_finish_until_the_shutdown_deadline(gateway):
    # Within the deadline, a request in flight at SIGTERM gets its answer.
    gateway.env["LLAMA_STACK_SHUTDOWN_TIMEOUT"] = "20"
    gateway.start()
    thread, outcome = in_background(lambda: chat(gateway, "m-slow"))
    time.sleep(1.0)
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=30) == 0
    thread.join(timeout=10)
    assert outcome.get("response") is not None, outcome
    assert outcome["response"].status_code == 200
    assert "Shut down cleanly" in gateway.log_tail(20)

    # Past it, the process exits with the request cut off rather than waiting for it.
    gateway.env["LLAMA_STACK_SHUTDOWN_TIMEOUT"] = "1"
    gateway.start()
    thread, outcome = in_background(lambda: chat(gateway, "m-silent"))
    time.sleep(1.0)
    signalled = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    assert gateway.process.wait(timeout=30) == 0
    assert time.monotonic() - signalled < 10, "the deadline, not the upstream's silence"
    thread.join(timeout=10)
    assert "error" in outcome or outcome["response"].status_code >= 500, outcome
    assert "did not finish within the shutdown timeout" in gateway.log_tail(20)


def test_ready_is_503_when_the_metadata_store_is_down(server_factory, tmp_path_factory):
    from memory_support import SKIP_PG_ENV

    if os.environ.get(SKIP_PG_ENV) == "1":
        pytest.skip(f"{SKIP_PG_ENV}=1: the PostgreSQL runs are skipped")
    from pg_support import PostgresServer

    cluster = PostgresServer.start()
    try:
        cluster.psql("postgres", 'CREATE DATABASE "ready_probe"')
        env = cluster.env("ready_probe")
        config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
        config["metadata_store"] = {
            "type": "postgres", "host": env["POSTGRES_HOST"], "port": int(env["POSTGRES_PORT"]),
            "db": env["POSTGRES_DB"], "user": env["POSTGRES_USER"],
            "password": env["POSTGRES_PASSWORD"]}
        path = tmp_path_factory.mktemp("ready-pg") / "run.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        server = server_factory("ready-pg", run_config=str(path)).start()
        assert requests.get(f"{server.url}/v1/ready", timeout=HTTP_TIMEOUT_S).status_code == 200
        cluster.stop()
        resp = requests.get(f"{server.url}/v1/ready", timeout=HTTP_TIMEOUT_S)
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["status"] == "Error"
        assert [f["component"] for f in body["failing"]] == ["metadata_store"], body
        # Liveness is another matter: the process is up.
        assert requests.get(f"{server.url}/v1/health", timeout=HTTP_TIMEOUT_S).status_code == 200
        server.kill()
    finally:
        cluster.stop()
