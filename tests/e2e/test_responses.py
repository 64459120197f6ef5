"""The OpenAI Responses and Conversations APIs end to end, with the openai SDK against the real
binary: a model upstream the test controls (markers in a message make it call tools, see
`agents_support`), a real MCP server, a vector store built from uploaded files, a web search
stand-in, and the local engine on the generated model.
"""

from __future__ import annotations

import json
import time

import openai
import pytest
import requests

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import HTTP_TIMEOUT_S, SERVED_MODEL, Server
from memory_support import fetch_minilm, postgres_database
from test_agent_tools import McpServer, ToolApis, search_providers

WEATHER_TOOL = {
    "type": "function", "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]},
}
BOILING = "Water boils at 100 degrees Celsius at sea level."


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


@pytest.fixture(scope="module")
def mcp():
    server = McpServer("streamable-http")
    yield server
    server.stop()


def stub_run_yaml(tmp_path_factory, upstream, apis, name: str) -> str:
    path = tmp_path_factory.mktemp(name) / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    return agents_run_yaml(
        path, upstream.url, fetch_minilm(), store,
        tool_runtime=search_providers(apis, "tavily-search"),
        tool_groups=[{"toolgroup_id": "builtin::websearch", "provider_id": "tavily-search"}],
        files_dir=path.parent / "files")


@pytest.fixture(scope="module")
def stub_server(server_factory, tmp_path_factory, upstream, apis) -> Server:
    return server_factory(
        "responses", run_config=stub_run_yaml(tmp_path_factory, upstream, apis, "responses")
    ).start()


@pytest.fixture
def oa(stub_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub_server.url + "/v1", api_key="none",
                         timeout=HTTP_TIMEOUT_S, max_retries=0)


def types(response) -> list[str]:
    return [item.type for item in response.output]


def test_a_plain_response_is_stored_listed_and_deleted(oa, stub_server):
    r = oa.responses.create(model=MODEL, input="Hi", instructions="Be brief.",
                            metadata={"topic": "greeting"})
    assert r.status == "completed"
    assert r.output_text == GREETING
    assert r.usage is not None
    got = oa.responses.retrieve(r.id)
    assert got.output_text == GREETING and got.metadata == {"topic": "greeting"}
    items = oa.responses.input_items.list(r.id)
    assert [(i.type, i.role) for i in items.data] == [("message", "user")]
    listed = requests.get(f"{stub_server.url}/v1/responses",
                          params={"model": MODEL, "limit": 100}).json()
    assert r.id in [x["id"] for x in listed["data"]]
    assert listed["object"] == "list"
    # The 0.2-era prefix serves the same store.
    same = requests.get(f"{stub_server.url}/v1/openai/v1/responses/{r.id}").json()
    assert same["id"] == r.id
    oa.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        oa.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        oa.responses.input_items.list(r.id)


def test_store_false_is_not_kept(oa):
    r = oa.responses.create(model=MODEL, input="Hi", store=False)
    assert r.output_text == GREETING
    with pytest.raises(openai.NotFoundError):
        oa.responses.retrieve(r.id)


def test_a_streamed_response_sends_the_event_sequence(oa):
    with oa.responses.stream(model=MODEL, input="Hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(len(events)))
    assert final.output_text == GREETING
    assert oa.responses.retrieve(final.id).output_text == GREETING


def test_a_function_tool_round_trip_through_previous_response_id(oa, upstream):
    first = oa.responses.create(model=MODEL, input="What is the weather? [[call]]",
                                tools=[WEATHER_TOOL])
    assert types(first) == ["function_call"]
    call = first.output[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    second = oa.responses.create(
        model=MODEL, previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == "The weather is sunny."
    assert second.previous_response_id == first.id
    sent = upstream.requests[-1]["messages"]
    assert sent[0] == {"role": "user", "content": "What is the weather? [[call]]"}
    assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == call.call_id


def test_a_function_tool_round_trip_through_a_conversation(oa):
    conv = oa.conversations.create(metadata={"name": "weather"})
    assert conv.id.startswith("conv_")
    first = oa.responses.create(model=MODEL, conversation=conv.id, tools=[WEATHER_TOOL],
                                input="What is the weather? [[call]]")
    call = first.output[0]
    second = oa.responses.create(
        model=MODEL, conversation=conv.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}])
    assert second.output_text == "The weather is rainy."
    items = oa.conversations.items.list(conv.id, order="asc").data
    assert [i.type for i in items] == [
        "message", "function_call", "function_call_output", "message"]
    assert items[1].call_id == call.call_id
    third = oa.responses.create(model=MODEL, conversation=conv.id, input="Thanks")
    assert third.output_text == GREETING
    assert len(oa.conversations.items.list(conv.id).data) == 6


def test_a_streamed_function_call_streams_its_arguments(oa):
    events = list(oa.responses.create(model=MODEL, input="[[call]]", tools=[WEATHER_TOOL],
                                      stream=True))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done[0].arguments) == {"city": "Paris"}
    items = [e.item for e in events if e.type == "response.output_item.done"]
    assert [i.type for i in items] == ["function_call"]
    assert kinds[-1] == "response.completed"


def test_file_search_over_a_vector_store_built_from_files(oa, upstream):
    uploaded = oa.files.create(file=("boiling.txt", BOILING.encode()), purpose="assistants")
    store = oa.vector_stores.create(name="physics", file_ids=[uploaded.id])
    deadline = time.monotonic() + 60
    while oa.vector_stores.files.retrieve(uploaded.id, vector_store_id=store.id).status != \
            "completed":
        assert time.monotonic() < deadline, "the file was not ingested"
        time.sleep(0.2)
    r = oa.responses.create(
        model=MODEL, input="At what temperature does water boil? [[fs]]",
        tools=[{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": 3}],
        include=["file_search_call.results"])
    assert types(r) == ["file_search_call", "message"]
    search = r.output[0]
    assert search.status == "completed" and search.queries == ["boiling point"]
    assert search.results[0].filename == "boiling.txt"
    assert BOILING in search.results[0].text
    citation = r.output[1].content[0].annotations[0]
    assert citation.type == "file_citation" and citation.file_id == uploaded.id
    # The model read the passage back as the tool's result.
    tool_message = upstream.requests[-1]["messages"][-1]
    assert tool_message["role"] == "tool" and BOILING in tool_message["content"]
    # Without `include`, results are left out of the item.
    plain = oa.responses.create(
        model=MODEL, input="[[fs]]",
        tools=[{"type": "file_search", "vector_store_ids": [store.id]}])
    assert plain.output[0].results is None


def test_an_mcp_tool_is_listed_and_called(oa, mcp):
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.uri,
            "require_approval": "never"}
    r = oa.responses.create(model=MODEL, input="Add two and three [[mcp]]", tools=[tool])
    assert types(r) == ["mcp_list_tools", "mcp_call", "message"]
    assert {"add", "fail", "whoami"} <= {t.name for t in r.output[0].tools}
    call = r.output[1]
    assert call.name == "add" and call.server_label == "calc" and call.output == "5"
    assert r.output_text == "The weather is 5."


def test_an_mcp_call_waits_for_approval(oa, mcp):
    tool = {"type": "mcp", "server_label": "calc", "server_url": mcp.uri,
            "require_approval": "always"}
    asked = oa.responses.create(model=MODEL, input="[[mcp]]", tools=[tool])
    assert types(asked) == ["mcp_list_tools", "mcp_approval_request"]
    request = asked.output[1]
    approved = oa.responses.create(
        model=MODEL, previous_response_id=asked.id, tools=[tool],
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id,
                "approve": True}])
    calls = [i for i in approved.output if i.type == "mcp_call"]
    assert calls and calls[0].output == "5"
    assert approved.output_text == "The weather is 5."


def test_an_mcp_server_on_a_private_address_is_refused_unless_allowed(server):
    # The local distribution allows private MCP addresses only with MCP_ALLOW_PRIVATE_ADDRESSES.
    resp = requests.post(f"{server.url}/v1/responses", json={
        "model": SERVED_MODEL, "input": "hi",
        "tools": [{"type": "mcp", "server_label": "meta",
                   "server_url": "http://169.254.169.254/mcp"}]})
    assert resp.status_code == 403, resp.text
    assert "169.254.169.254" in resp.json()["error"]["message"]


def test_web_search_runs_on_the_search_runtime(oa, apis):
    r = oa.responses.create(model=MODEL, input="[[web]]", tools=[{"type": "web_search"}])
    assert types(r) == ["web_search_call", "message"]
    assert r.output[0].status == "completed"
    assert "Llama Stack standardizes" in r.output_text


def test_guardrails_refuse_flagged_output(oa):
    # `guardrails` is Llama Stack's own field; the openai SDK sends it as an extra.
    r = oa.responses.create(model=MODEL, input="Write code [[insecure]]",
                            extra_body={"guardrails": ["CodeScanner"]})
    part = r.output[-1].content[0]
    assert part.type == "refusal"
    flagged_input = oa.responses.create(
        model=MODEL, extra_body={"guardrails": ["CodeScanner"]},
        input="import hashlib\nhashlib.md5(data).hexdigest()")
    assert flagged_input.output[0].content[0].type == "refusal"


def test_bad_requests_are_openai_4xx_naming_the_field(oa, stub_server):
    first = oa.responses.create(model=MODEL, input="Hi")
    conv = oa.conversations.create()
    cases = [
        ({"previous_response_id": "resp_missing"}, openai.NotFoundError, "previous_response_id"),
        ({"previous_response_id": first.id, "conversation": conv.id},
         openai.BadRequestError, "previous_response_id"),
        ({"tools": [{"type": "computer_use_preview"}]}, openai.BadRequestError, "tools"),
        ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "x"}]},
         openai.BadRequestError, "input"),
        ({"model": "no-such-model"}, openai.NotFoundError, "model"),
        ({"conversation": "conv_bad"}, openai.BadRequestError, "conversation"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_missing"]}]},
         openai.NotFoundError, "tools"),
    ]
    for extra, error, param in cases:
        body = {"model": MODEL, "input": "Hi", **extra}
        with pytest.raises(error) as caught:
            oa.responses.create(**body)
        assert caught.value.body["param"] == param, (extra, caught.value.body)
        assert caught.value.body["message"], extra
    with pytest.raises(openai.ConflictError):
        oa.responses.cancel(first.id)


def test_background_responses_are_polled_and_cancelled(oa, upstream):
    queued = oa.responses.create(model=MODEL, input="Hi", background=True)
    assert queued.status in ("queued", "in_progress") and queued.background
    deadline = time.monotonic() + 30
    done = queued
    while done.status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        done = oa.responses.retrieve(queued.id)
    assert done.status == "completed" and done.output_text == GREETING
    upstream.slow_s = 5.0
    slow = oa.responses.create(model=MODEL, input="Hi [[slow]]", background=True)
    cancelled = oa.responses.cancel(slow.id)
    assert cancelled.status == "cancelled"
    time.sleep(6)
    assert oa.responses.retrieve(slow.id).status == "cancelled"


def test_a_streamed_response_runs_to_its_end_when_the_client_hangs_up(stub_server, upstream):
    upstream.slow_s = 2.0
    with requests.post(f"{stub_server.url}/v1/responses", stream=True, timeout=30,
                       json={"model": MODEL, "input": "Hi [[slow]]", "stream": True}) as resp:
        first = next(line for line in resp.iter_lines() if line.startswith(b"data: "))
    response_id = json.loads(first[len(b"data: "):])["response"]["id"]
    deadline = time.monotonic() + 30
    while True:
        got = requests.get(f"{stub_server.url}/v1/responses/{response_id}")
        if got.status_code == 200:
            break
        assert got.status_code == 404 and time.monotonic() < deadline, got.text
        time.sleep(0.2)
    assert got.json()["status"] == "completed"
    assert got.json()["output"][0]["content"][0]["text"] == GREETING


def test_a_background_response_survives_a_kill(server_factory, tmp_path_factory, upstream, apis):
    srv = server_factory("responses-kill", run_config=stub_run_yaml(
        tmp_path_factory, upstream, apis, "responses-kill")).start()
    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    upstream.slow_s = 3.0
    queued = oa.responses.create(model=MODEL, input="Hi [[slow]]", background=True)
    time.sleep(0.5)
    srv.kill()
    srv.start()
    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    deadline = time.monotonic() + 60
    r = oa.responses.retrieve(queued.id)
    while r.status in ("queued", "in_progress"):
        assert time.monotonic() < deadline, "the background response never finished"
        time.sleep(0.2)
        r = oa.responses.retrieve(queued.id)
    assert r.status == "completed" and r.output_text == GREETING
    srv.stop()


def test_responses_and_conversations_persist_on_postgresql(server_factory, tmp_path_factory,
                                                           upstream):
    db = postgres_database("responses_e2e")
    path = tmp_path_factory.mktemp("responses-pg") / "run.yaml"
    store = {"type": "postgres", "host": db["POSTGRES_HOST"], "port": int(db["POSTGRES_PORT"]),
             "db": db["POSTGRES_DB"], "user": db["POSTGRES_USER"],
             "password": db["POSTGRES_PASSWORD"]}
    srv = server_factory("responses-pg", run_config=agents_run_yaml(
        path, upstream.url, fetch_minilm(), store)).start()
    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    conv = oa.conversations.create(metadata={"db": "pg"})
    first = oa.responses.create(model=MODEL, conversation=conv.id, input="Hi")
    srv.restart()
    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
    assert oa.responses.retrieve(first.id).output_text == GREETING
    second = oa.responses.create(model=MODEL, previous_response_id=first.id, input="Again")
    assert second.output_text == GREETING
    items = oa.conversations.items.list(conv.id, order="asc").data
    assert [(i.type, i.role) for i in items] == [("message", "user"), ("message", "assistant")]
    assert oa.conversations.retrieve(conv.id).metadata == {"db": "pg"}
    srv.stop()


def test_conversations_and_their_items(oa):
    conv = oa.conversations.create(
        metadata={"topic": "demo"},
        items=[{"type": "message", "role": "user", "content": "first"}])
    assert oa.conversations.retrieve(conv.id).metadata == {"topic": "demo"}
    updated = oa.conversations.update(conv.id, metadata={"topic": "changed"})
    assert updated.metadata == {"topic": "changed"}
    added = oa.conversations.items.create(conv.id, items=[
        {"type": "message", "role": "assistant", "content": "second"},
        {"type": "message", "role": "user", "content": "third"}])
    assert len(added.data) == 2
    listed = oa.conversations.items.list(conv.id, order="asc")
    texts = [i.content[0].text for i in listed.data]
    assert texts == ["first", "second", "third"]
    newest_first = oa.conversations.items.list(conv.id, limit=1)
    assert newest_first.data[0].content[0].text == "third" and newest_first.has_more
    item = oa.conversations.items.retrieve(added.data[0].id, conversation_id=conv.id)
    assert item.content[0].text == "second"
    oa.conversations.items.delete(added.data[0].id, conversation_id=conv.id)
    assert len(oa.conversations.items.list(conv.id).data) == 2
    # A response in the conversation sees its items.
    r = oa.responses.create(model=MODEL, conversation=conv.id, input="fourth")
    assert r.output_text == GREETING
    deleted = oa.conversations.delete(conv.id)
    assert deleted.deleted
    with pytest.raises(openai.NotFoundError):
        oa.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        oa.conversations.items.list(conv.id)


# The local engine on the generated model: answers are noise, formats are real.

@pytest.fixture
def local(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none",
                         timeout=HTTP_TIMEOUT_S, max_retries=0)


def test_the_local_engine_calls_a_function_in_the_llama_format(local):
    r = local.responses.create(model=SERVED_MODEL, input="Weather in Paris?",
                               tools=[WEATHER_TOOL], tool_choice="required",
                               max_output_tokens=60)
    assert types(r) == ["function_call"], r.output
    call = r.output[0]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments), dict)
    follow = local.responses.create(
        model=SERVED_MODEL, previous_response_id=r.id, max_output_tokens=4,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert follow.status in ("completed", "incomplete")
    assert types(follow) == ["message"]


def test_the_local_engine_keeps_to_a_json_schema(local):
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}},
              "required": ["ok"], "additionalProperties": False}
    r = local.responses.create(
        model=SERVED_MODEL, input="Answer in JSON", max_output_tokens=200,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}})
    assert r.status == "completed", r.output_text
    assert isinstance(json.loads(r.output_text)["ok"], bool)


def test_the_local_engine_streams_and_stops_at_the_token_limit(local):
    events = list(local.responses.create(model=SERVED_MODEL, input="Hi", max_output_tokens=3,
                                         stream=True, include=["message.output_text.logprobs"],
                                         top_logprobs=2))
    assert events[-1].type == "response.incomplete"
    final = events[-1].response
    assert final.incomplete_details.reason == "max_output_tokens"
    assert final.usage.output_tokens == 3
    logprobs = final.output[0].content[0].logprobs
    assert logprobs and len(logprobs[0].top_logprobs) == 2
