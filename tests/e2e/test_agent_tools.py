"""Agent turns with server-side tools other than RAG, against the real binary and
llama-stack-client 0.2.23: web search (`remote::tavily-search`, `remote::brave-search`) and
Wolfram Alpha against stand-ins for their HTTP APIs that the test controls, MCP tools from a
real MCP server (the official MCP Python SDK) over streamable HTTP and SSE, turn documents
given by URL, and a turn cut short by the token limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent

from agents_support import MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import HTTP_TIMEOUT_S, Server, free_port
from memory_support import fetch_minilm

SEARCH_RESULT = {"title": "Llama Stack", "url": "https://llama-stack.example/",
                 "content": "Llama Stack standardizes the building blocks of AI apps.",
                 "score": 0.93, "raw_content": None}
DOCUMENT_TEXT = "The launch code is marmalade."


class ToolApis:
    """Stands in for api.tavily.com, api.search.brave.com and api.wolframalpha.com, and serves
    one text document at /doc.txt."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict, dict]] = []
        apis = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args) -> None:
                pass

            def reply(self, body: dict | str, content_type: str = "application/json") -> None:
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                apis.requests.append(("GET", url.path, parse_qs(url.query), dict(self.headers)))
                if url.path == "/doc.txt":
                    self.reply(DOCUMENT_TEXT, "text/plain")
                elif url.path == "/res/v1/web/search":
                    self.reply({"query": {"original": parse_qs(url.query)["q"][0]},
                                "mixed": {"main": [{"type": "web", "index": 0, "all": False}]},
                                "web": {"results": [{"title": SEARCH_RESULT["title"],
                                                     "url": SEARCH_RESULT["url"],
                                                     "description": SEARCH_RESULT["content"]}]}})
                elif url.path == "/v2/query":
                    self.reply({"queryresult": {"success": True, "pods": [
                        {"title": "Result", "subpods": [{"title": "", "plaintext": "4"}]}]}})
                else:
                    self.send_error(404)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                apis.requests.append(("POST", self.path, body, dict(self.headers)))
                if self.path == "/search":
                    self.reply({"query": body["query"], "results": [SEARCH_RESULT]})
                else:
                    self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class McpServer:
    def __init__(self, transport: str) -> None:
        self.port = free_port()
        script = Path(__file__).with_name("mcp_calc_server.py")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port), transport],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.uri = f"http://127.0.0.1:{self.port}" + ("/mcp" if transport != "sse" else "/sse")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()[-2000:]
            try:
                requests.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError("the MCP server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def apis():
    a = ToolApis()
    yield a
    a.stop()


@pytest.fixture(scope="module", params=["streamable-http", "sse"])
def mcp_server(request):
    server = McpServer(request.param)
    yield server
    server.stop()


def search_providers(apis: ToolApis, search: str) -> list[dict]:
    return [
        {"provider_id": search, "provider_type": f"remote::{search}",
         "config": {"api_key": "test-search-key", "base_url": apis.url}},
        {"provider_id": "wolfram-alpha", "provider_type": "remote::wolfram-alpha",
         "config": {"api_key": "test-wolfram-key", "base_url": apis.url}},
        # The test's MCP servers listen on loopback.
        {"provider_id": "model-context-protocol",
         "provider_type": "remote::model-context-protocol",
         "config": {"allow_private_addresses": True}},
    ]


def start_server(server_factory, tmp_path_factory, upstream, apis, search: str,
                 rag_config: dict | None = None) -> Server:
    path = tmp_path_factory.mktemp(f"tools-{search}") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    config = agents_run_yaml(
        path, upstream.url, fetch_minilm(), store,
        tool_runtime=search_providers(apis, search),
        tool_groups=[{"toolgroup_id": "builtin::websearch", "provider_id": search},
                     {"toolgroup_id": "builtin::wolfram_alpha", "provider_id": "wolfram-alpha"}],
        rag_config=rag_config)
    return server_factory(f"tools-{search}", run_config=config).start()


@pytest.fixture(scope="module")
def tavily_server(server_factory, tmp_path_factory, upstream, apis) -> Server:
    # Private addresses allowed so a turn document can come from the test's loopback server.
    return start_server(server_factory, tmp_path_factory, upstream, apis, "tavily-search",
                        rag_config={"allow_private_addresses": True})


@pytest.fixture
def client(tavily_server) -> LlamaStackClient:
    return LlamaStackClient(base_url=tavily_server.url, timeout=HTTP_TIMEOUT_S)


def turn_steps(client, agent_id: str, text: str, **extra):
    session_id = client.agents.session.create(agent_id=agent_id, session_name="t").session_id
    return client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                     messages=[{"role": "user", "content": text}], **extra)


def test_web_search_is_offered_as_the_llama_builtin_and_runs_tavily(client, upstream, apis):
    agent = Agent(client, model=MODEL, instructions="Search.", tools=["builtin::websearch"])
    session_id = agent.create_session("search")
    chunks = list(agent.create_turn(messages=[{"role": "user", "content": "[[search]]"}],
                                    session_id=session_id, stream=True))
    # The model was offered the builtin name, not the runtime's.
    offered = [t["function"]["name"] for t in upstream.requests[-2]["tools"]]
    assert offered == ["brave_search"]
    events = [c.event.payload.to_dict() for c in chunks]
    tool_step = next(e["step_details"] for e in events
                     if e["event_type"] == "step_complete" and e["step_type"] == "tool_execution")
    assert tool_step["tool_calls"][0]["tool_name"] == "brave_search"
    response = tool_step["tool_responses"][0]
    assert response["tool_name"] == "brave_search"
    method, path, body, _ = [r for r in apis.requests if r[1] == "/search"][-1]
    assert (method, body["query"], body["api_key"]) == ("POST", "llama stack", "test-search-key")
    result = json.loads(response["content"])
    assert result["query"] == "llama stack"
    assert result["top_k"][0]["url"] == SEARCH_RESULT["url"]
    turn = events[-1]["turn"]
    assert SEARCH_RESULT["url"] in turn["output_message"]["content"]


def test_wolfram_alpha_runs_through_its_runtime(client, apis):
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "Compute.",
        "toolgroups": ["builtin::wolfram_alpha"]}).agent_id
    turn = turn_steps(client, agent_id, "[[wolfram]]")
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    response = turn.steps[1].tool_responses[0]
    assert response.tool_name == "wolfram_alpha"
    _, _, query, _ = [r for r in apis.requests if r[1] == "/v2/query"][-1]
    assert query["input"] == ["2+2"] and query["appid"] == ["test-wolfram-key"]
    assert "4" in str(response.content)


def test_provider_data_key_is_used_for_web_search(tavily_server, apis):
    client = LlamaStackClient(base_url=tavily_server.url, timeout=HTTP_TIMEOUT_S,
                              provider_data={"tavily_search_api_key": "per-request-key"})
    result = client.tool_runtime.invoke_tool(tool_name="web_search", kwargs={"query": "q"})
    assert json.loads(result.content)["query"] == "q"
    _, _, body, _ = [r for r in apis.requests if r[1] == "/search"][-1]
    assert body["api_key"] == "per-request-key"


def test_brave_search_runs_as_the_same_builtin(server_factory, tmp_path_factory, upstream,
                                              apis):
    server = start_server(server_factory, tmp_path_factory, upstream, apis, "brave-search")
    client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S)
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "Search.", "toolgroups": ["builtin::websearch"]}).agent_id
    turn = turn_steps(client, agent_id, "[[search]]")
    response = turn.steps[1].tool_responses[0]
    assert response.tool_name == "brave_search"
    _, _, query, headers = [r for r in apis.requests if r[1] == "/res/v1/web/search"][-1]
    assert query["q"] == ["llama stack"]
    assert {k.lower(): v for k, v in headers.items()}["x-subscription-token"] == "test-search-key"
    assert SEARCH_RESULT["url"] in str(response.content)


def test_mcp_tools_are_listed_invoked_and_used_by_an_agent(client, mcp_server):
    group = f"mcp::calc-{mcp_server.port}"
    client.toolgroups.register(toolgroup_id=group, provider_id="model-context-protocol",
                               mcp_endpoint={"uri": mcp_server.uri})
    assert client.toolgroups.get(group).mcp_endpoint.uri == mcp_server.uri
    tools = {t.identifier: t for t in client.tools.list(toolgroup_id=group)}
    assert set(tools) == {"add", "fail", "whoami"}
    params = {p.name: (p.parameter_type, p.required) for p in tools["add"].parameters}
    assert params == {"a": ("integer", True), "b": ("integer", True)}
    result = client.tool_runtime.invoke_tool(tool_name="add", kwargs={"a": 20, "b": 22})
    assert "42" in json.dumps(result.to_dict()["content"])
    failed = client.tool_runtime.invoke_tool(tool_name="fail", kwargs={})
    assert failed.error_message and "broken" in failed.error_message

    # An endpoint can be listed without registering a group, as the client sends it.
    by_endpoint = client.tool_runtime.list_tools(mcp_endpoint={"uri": mcp_server.uri})
    assert {t.name for t in by_endpoint} == {"add", "fail", "whoami"}

    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "Add.", "toolgroups": [group]}).agent_id
    turn = turn_steps(client, agent_id, "[[mcp]]")
    assert [s.step_type for s in turn.steps] == ["inference", "tool_execution", "inference"]
    assert turn.steps[1].tool_calls[0].tool_name == "add"
    assert "5" in turn.output_message.content
    client.toolgroups.unregister(toolgroup_id=group)


def test_mcp_headers_from_provider_data_reach_the_server(tavily_server, mcp_server):
    group = f"mcp::who-{mcp_server.port}"
    client = LlamaStackClient(base_url=tavily_server.url, timeout=HTTP_TIMEOUT_S, provider_data={
        "mcp_headers": {mcp_server.uri: {"Authorization": "Bearer mcp-secret"}}})
    client.toolgroups.register(toolgroup_id=group, provider_id="model-context-protocol",
                               mcp_endpoint={"uri": mcp_server.uri})
    result = client.tool_runtime.invoke_tool(tool_name="whoami", kwargs={})
    assert "Bearer mcp-secret" in json.dumps(result.to_dict()["content"])
    client.toolgroups.unregister(toolgroup_id=group)


def test_an_unreachable_mcp_server_is_a_clear_error(tavily_server):
    uri = f"http://127.0.0.1:{free_port()}/mcp"
    resp = requests.post(f"{tavily_server.url}/v1/toolgroups", json={
        "toolgroup_id": "mcp::gone", "provider_id": "model-context-protocol",
        "mcp_endpoint": {"uri": uri}}, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    listed = requests.get(f"{tavily_server.url}/v1/tools", params={"toolgroup_id": "mcp::gone"},
                          timeout=HTTP_TIMEOUT_S)
    assert listed.status_code in (502, 503), listed.text
    assert uri in listed.text
    # The other groups still answer.
    assert requests.get(f"{tavily_server.url}/v1/tools", timeout=HTTP_TIMEOUT_S).status_code == 200
    requests.delete(f"{tavily_server.url}/v1/toolgroups/mcp::gone", timeout=HTTP_TIMEOUT_S)


def test_a_loopback_mcp_server_is_refused_by_default(server_factory, tmp_path_factory, upstream,
                                                     apis, mcp_server):
    path = tmp_path_factory.mktemp("mcp-default") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    config = agents_run_yaml(path, upstream.url, fetch_minilm(), store, tool_runtime=[
        {"provider_id": "model-context-protocol",
         "provider_type": "remote::model-context-protocol", "config": {}}])
    server = server_factory("mcp-default", run_config=config).start()
    resp = requests.post(f"{server.url}/v1/toolgroups", json={
        "toolgroup_id": "mcp::local", "provider_id": "model-context-protocol",
        "mcp_endpoint": {"uri": mcp_server.uri}}, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 403, resp.text
    assert "127.0.0.1" in resp.text and "allow_private_addresses" in resp.text
    # A host name is checked when it is resolved, before anything is sent.
    uri = mcp_server.uri.replace("127.0.0.1", "localhost")
    resp = requests.post(f"{server.url}/v1/toolgroups", json={
        "toolgroup_id": "mcp::named", "provider_id": "model-context-protocol",
        "mcp_endpoint": {"uri": uri}}, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    listed = requests.get(f"{server.url}/v1/tools", params={"toolgroup_id": "mcp::named"},
                          timeout=HTTP_TIMEOUT_S)
    assert listed.status_code == 403, listed.text
    assert "loopback" in listed.text


def test_a_turn_document_given_by_url_is_fetched(client, upstream, apis):
    agent_id = client.agents.create(agent_config={"model": MODEL, "instructions": "Read."}
                                    ).agent_id
    turn_steps(client, agent_id, "What is the code?",
               documents=[{"content": {"uri": f"{apis.url}/doc.txt"}, "mime_type": "text/plain"}])
    sent = upstream.requests[-1]["messages"][-1]
    assert sent["content"] == f"What is the code?\n{DOCUMENT_TEXT}"


def test_a_private_document_url_is_refused_by_default(server_factory, tmp_path_factory,
                                                      upstream, apis):
    server = start_server(server_factory, tmp_path_factory, upstream, apis, "brave-search")
    agent_id = requests.post(f"{server.url}/v1/agents", json={"agent_config": {
        "model": MODEL, "instructions": "Read."}}, timeout=HTTP_TIMEOUT_S).json()["agent_id"]
    session_id = requests.post(f"{server.url}/v1/agents/{agent_id}/session",
                               json={"session_name": "s"}, timeout=HTTP_TIMEOUT_S
                               ).json()["session_id"]
    resp = requests.post(f"{server.url}/v1/agents/{agent_id}/session/{session_id}/turn", json={
        "stream": False, "messages": [{"role": "user", "content": "Read it"}],
        "documents": [{"content": {"uri": f"{apis.url}/doc.txt"}, "mime_type": "text/plain"}]},
        timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 403, resp.text
    assert "127.0.0.1" in resp.text and "allow_private_addresses" in resp.text


def test_a_turn_cut_by_the_token_limit_ends_out_of_tokens(client):
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "Talk.", "client_tools": [{
            "name": "get_weather", "description": "Weather", "parameters": []}]}).agent_id
    turn = turn_steps(client, agent_id, "[[long]] [[call]]")
    assert [s.step_type for s in turn.steps] == ["inference"]
    assert turn.output_message.stop_reason == "out_of_tokens"
    assert turn.output_message.content == "This answer was cut"


def test_event_logger_prints_a_tool_turn_unchanged(client):
    from llama_stack_client.lib.agents.event_logger import EventLogger

    agent = Agent(client, model=MODEL, instructions="Search.", tools=["builtin::websearch"],
                  input_shields=["CodeScanner"])
    session_id = agent.create_session("logged")
    turn = agent.create_turn(messages=[{"role": "user", "content": "[[search]]"}],
                             session_id=session_id, stream=True)
    lines = [str(event) for event in EventLogger().log(turn)]
    text = "\n".join(lines)
    assert "shield_call> No Violation" in lines, text
    assert any(line.startswith("tool_execution> Tool:brave_search Args:") for line in lines), text
    assert any(line.startswith("tool_execution> Tool:brave_search Response:")
               and SEARCH_RESULT["url"] in line for line in lines), text
    assert "inference> " in lines and "The weather is " in text, text
