"""OpenTelemetry trace export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the server sends its spans
over OTLP/HTTP (protobuf) to a collector, here a receiver run by the test. The request span joins
the caller's `traceparent` trace, and the model call is a child span with GenAI attributes; an
agent turn's model calls, its `knowledge_search` tool call and the vector query (with its
embedding) under that tool call are all spans of the turn's request."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agents_support import MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import MODEL_IDENTIFIER
from memory_support import fetch_minilm

TRACE_ID = "5bf92f3577b34da6a3ce929d0e0e4737"
PARENT_ID = "10f067aa0ba902b8"
SERVICE = "llama-stack-otlp-e2e"


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver:
    """An OTLP/HTTP trace receiver: decodes each export and keeps its spans as dicts."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.add(self.headers.get("Content-Type", ""), request)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, content_type: str, request) -> None:
        with self.lock:
            self.content_types.append(content_type)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "resource": resource,
                        })

    def wait_for(self, predicate, timeout: float = 10.0) -> list[dict]:
        """The spans once one satisfies `predicate` (the export is batched every 200 ms)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if any(predicate(s) for s in spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def exporting_env(receiver) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        # JSON logs with a DEBUG line inside each request: the log's trace id is checked against
        # the exported one.
        "LLAMA_STACK_LOG_FORMAT": "json",
        "RUST_LOG": "info,tower_http=debug",
    }


@pytest.fixture(scope="module")
def exporting(server_factory, receiver):
    return server_factory("otlp", extra_env=exporting_env(receiver)).start()


@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def exporting_agents(server_factory, receiver, upstream, tmp_path_factory):
    """A server with the agents API, the RAG tool and the stub model that calls it."""
    path = tmp_path_factory.mktemp("otlp-agents") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    config = agents_run_yaml(path, upstream.url, fetch_minilm(), store)
    return server_factory("otlp-agents", run_config=config,
                          extra_env=exporting_env(receiver)).start()


def descends_from(span: dict, ancestor: dict, spans: list[dict]) -> bool:
    """Whether `ancestor` is `span`'s parent, or its parent's, and so on (tower_http's own
    `request` span sits in between when its DEBUG spans are on, as here)."""
    by_id = {s["span_id"]: s for s in spans}
    while span["parent_span_id"]:
        if span["parent_span_id"] == ancestor["span_id"]:
            return True
        span = by_id.get(span["parent_span_id"])
        if span is None:
            return False
    return False


def chat(server, headers: dict) -> requests.Response:
    body = {"model": MODEL_IDENTIFIER, "max_tokens": 4,
            "messages": [{"role": "user", "content": "ping"}]}
    return requests.post(f"{server.url}/v1/chat/completions", json=body, headers=headers,
                         timeout=60)


def test_request_and_inference_spans_join_the_callers_trace(exporting, receiver):
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "x-request-id": "otlp-1"}
    response = chat(exporting, headers)
    assert response.status_code == 200, response.text

    def inference(s):
        return s["trace_id"] == TRACE_ID and "gen_ai.request.model" in s["attributes"]

    spans = receiver.wait_for(inference)
    ours = [s for s in spans if s["trace_id"] == TRACE_ID]
    request = [s for s in ours if s["attributes"].get("request_id") == "otlp-1"]
    assert len(request) == 1, ours
    request = request[0]
    assert request["name"] == "request"
    assert request["parent_span_id"] == PARENT_ID
    assert request["attributes"]["request_id"] == "otlp-1"
    assert request["resource"]["service.name"] == SERVICE
    assert all(t == "application/x-protobuf" for t in receiver.content_types)

    generation = [s for s in ours if inference(s)]
    assert len(generation) == 1, ours
    generation = generation[0]
    assert descends_from(generation, request, spans), ours
    attributes = generation["attributes"]
    assert generation["name"] == f"chat {MODEL_IDENTIFIER}"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == MODEL_IDENTIFIER
    assert attributes["gen_ai.provider.name"]
    usage = response.json()["usage"]
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


def test_a_request_without_traceparent_exports_the_trace_id_it_logs(exporting, receiver):
    response = chat(exporting, {"x-request-id": "otlp-2"})
    assert response.status_code == 200, response.text
    spans = receiver.wait_for(lambda s: s["attributes"].get("request_id") == "otlp-2")
    request = [s for s in spans if s["attributes"].get("request_id") == "otlp-2"]
    assert len(request) == 1, spans
    request = request[0]
    assert request["parent_span_id"] == ""
    assert request["attributes"]["trace_id"] == request["trace_id"]
    assert any(s["attributes"].get("gen_ai.operation.name") == "chat"
               and descends_from(s, request, spans) for s in spans), spans

    logged = set()
    for line in exporting.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        for span in entry.get("spans") or []:
            if span.get("request_id") == "otlp-2":
                logged.add(span["trace_id"])
    assert logged == {request["trace_id"]}, exporting.log_tail(40)


def test_a_shield_run_is_a_span_of_its_request(exporting, receiver):
    body = {"shield_id": "CodeScanner", "params": {},
            "messages": [{"role": "user", "content": "print(1)"}]}
    response = requests.post(f"{exporting.url}/v1/safety/run-shield", json=body,
                             headers={"x-request-id": "otlp-3"}, timeout=60)
    assert response.status_code == 200, response.text

    def shield(s):
        return s["attributes"].get("llama_stack.shield.id") == "CodeScanner"

    spans = receiver.wait_for(shield)
    request = [s for s in spans if s["attributes"].get("request_id") == "otlp-3"]
    assert len(request) == 1, spans
    runs = [s for s in spans if shield(s) and descends_from(s, request[0], spans)]
    assert len(runs) == 1, spans
    assert runs[0]["name"] == "run_shield CodeScanner"
    assert runs[0]["attributes"]["llama_stack.shield.violation"] is False


def test_spans_still_queued_are_flushed_when_the_server_stops(server_factory, receiver):
    # A schedule far beyond the test: only the flush at exit can send this request's span.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    server = server_factory("otlp-flush", extra_env=env).start()
    response = requests.get(f"{server.url}/v1/health", headers={"x-request-id": "otlp-4"},
                            timeout=30)
    assert response.status_code == 200
    time.sleep(0.5)
    assert not [s for s in receiver.spans if s["attributes"].get("request_id") == "otlp-4"]
    assert server.stop() == 0
    flushed = [s for s in receiver.spans if s["attributes"].get("request_id") == "otlp-4"]
    assert len(flushed) == 1, receiver.spans
    assert flushed[0]["resource"]["service.name"] == "llama-stack"


def test_a_rag_agent_turn_is_one_span_tree_under_its_request(exporting_agents, receiver):
    url = exporting_agents.url

    def post(path: str, body: dict, **headers) -> dict:
        response = requests.post(f"{url}{path}", json=body, headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    post("/v1/vector-dbs", {"vector_db_id": "facts", "embedding_model": "all-MiniLM-L6-v2",
                            "embedding_dimension": 384})
    post("/v1/tool-runtime/rag-tool/insert", {
        "vector_db_id": "facts", "chunk_size_in_tokens": 128,
        "documents": [{"document_id": "water", "metadata": {},
                       "content": "Water boils at 100 degrees Celsius at sea level."}]})
    agent_id = post("/v1/agents", {"agent_config": {
        "model": MODEL, "instructions": "",
        "toolgroups": [{"name": "builtin::rag/knowledge_search",
                        "args": {"vector_db_ids": ["facts"]}}]}})["agent_id"]
    session_id = post(f"/v1/agents/{agent_id}/session", {"session_name": "otlp"})["session_id"]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    turn = post(f"/v1/agents/{agent_id}/session/{session_id}/turn",
                {"messages": [{"role": "user", "content": "When does water boil? [[rag]]"}],
                 "stream": False},
                traceparent=f"00-{trace_id}-{PARENT_ID}-01", **{"x-request-id": "otlp-rag"})
    steps = [s["step_type"] for s in turn["steps"]]
    assert steps == ["inference", "tool_execution", "inference"], turn

    def embedding(s):
        return s["trace_id"] == trace_id and s["attributes"].get(
            "gen_ai.operation.name") == "embeddings"

    def last_generation(s):
        chats = [x for x in receiver.spans if x["trace_id"] == trace_id
                 and x["attributes"].get("gen_ai.operation.name") == "chat"]
        return len(chats) == 2 and any(embedding(x) for x in receiver.spans)

    spans = receiver.wait_for(last_generation)
    ours = [s for s in spans if s["trace_id"] == trace_id]
    request = [s for s in ours if s["attributes"].get("request_id") == "otlp-rag"]
    assert len(request) == 1, ours
    request = request[0]
    # The root of the server's part of the trace, joined to the caller's span.
    assert request["name"] == "request" and request["parent_span_id"] == PARENT_ID

    generations = [s for s in ours if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(generations) == 2, ours
    for generation in generations:
        assert descends_from(generation, request, spans), ours
        # The registered identifier, provider-prefixed: `stub/stub-model`.
        model = generation["attributes"]["gen_ai.request.model"]
        assert model.endswith(MODEL) and generation["name"] == f"chat {model}"
        assert generation["attributes"]["gen_ai.provider.name"] == "stub"

    tools = [s for s in ours if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert len(tools) == 1, ours
    tool = tools[0]
    assert tool["name"] == "execute_tool knowledge_search"
    assert tool["attributes"]["gen_ai.tool.name"] == "knowledge_search"
    assert tool["attributes"]["llama_stack.tool_group.id"] == "builtin::rag"
    assert descends_from(tool, request, spans), ours

    # Under the tool call: the search of the vector DB, and the query's embedding under it.
    queries = [s for s in ours if s["attributes"].get("db.collection.name") == "facts"]
    assert len(queries) == 1, ours
    query = queries[0]
    assert query["name"] == "query facts"
    assert query["attributes"]["db.operation.name"] == "query"
    assert query["attributes"]["llama_stack.vector_io.provider"] == "sqlite-vec"
    assert descends_from(query, tool, spans), ours
    embeddings = [s for s in ours if embedding(s)]
    assert len(embeddings) == 1, ours
    assert embeddings[0]["name"].startswith("embeddings ")
    assert embeddings[0]["name"].endswith("all-MiniLM-L6-v2")
    assert descends_from(embeddings[0], query, spans), ours
    # Nothing of the turn escaped the request's tree.
    assert all(s is request or descends_from(s, request, spans) for s in ours), ours
