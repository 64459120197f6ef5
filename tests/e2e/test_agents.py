"""Agents end to end with llama-stack-client 0.2.23's `Agent` class against the real binary.

The model is the upstream of `agents_support` (markers in a message make it call tools); the
event sequences are checked against §1.8.
"""

from __future__ import annotations

import json
import time

import pytest
from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import HTTP_TIMEOUT_S, Server
from memory_support import fetch_minilm, postgres_database

@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


@pytest.fixture(scope="module")
def agents_server(server_factory, upstream, minilm, tmp_path_factory) -> Server:
    path = tmp_path_factory.mktemp("agents") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    return server_factory("agents", run_config=agents_run_yaml(path, upstream.url, minilm, store)
                          ).start()


@pytest.fixture
def client(agents_server) -> LlamaStackClient:
    return LlamaStackClient(base_url=agents_server.url, timeout=HTTP_TIMEOUT_S)


def payloads(chunks) -> list[dict]:
    return [c.event.payload.to_dict() for c in chunks]


def kinds(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["event_type"], e.get("step_type")) for e in events]


def test_a_plain_turn_streams_the_reference_events(client):
    agent = Agent(client, model=MODEL, instructions="You are terse.")
    session_id = agent.create_session("plain")
    events = payloads(agent.create_turn(
        messages=[{"role": "user", "content": "Hi"}], session_id=session_id, stream=True))
    assert kinds(events) == [
        ("step_start", "inference"),
        ("step_progress", "inference"),
        ("step_complete", "inference"),
        ("turn_complete", None),
    ]
    start, progress, complete, done = events
    assert start["metadata"] == {}
    assert progress["delta"] == {"type": "text", "text": GREETING}
    assert complete["step_id"] == start["step_id"] == progress["step_id"]
    step = complete["step_details"]
    assert step["step_type"] == "inference" and step["model_response"]["content"] == GREETING
    turn = done["turn"]
    assert turn["session_id"] == session_id
    assert turn["input_messages"][0]["content"] == "Hi"
    assert turn["output_message"]["content"] == GREETING
    assert turn["output_message"]["stop_reason"] == "end_of_turn"
    assert [s["step_id"] for s in turn["steps"]] == [start["step_id"]]
    assert turn["started_at"] <= turn["completed_at"]


def test_instructions_and_history_reach_the_model(client, upstream):
    agent = Agent(client, model=MODEL, instructions="You are terse.")
    session_id = agent.create_session("history")
    for text in ("first", "second"):
        list(agent.create_turn(messages=[{"role": "user", "content": text}],
                               session_id=session_id, stream=True))
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == "You are terse."
    assert sent[1]["content"] == "first" and sent[3]["content"] == "second"


def test_a_client_tool_call_pauses_the_turn_and_resume_finishes_it(client):
    @client_tool
    def get_weather(city: str) -> str:
        """Today's weather in a city.

        :param city: the city
        """
        return f"sunny in {city}"

    agent = Agent(client, model=MODEL, instructions="", tools=[get_weather])
    session_id = agent.create_session("tools")
    events = payloads(agent.create_turn(
        messages=[{"role": "user", "content": "Weather? [[call]]"}], session_id=session_id,
        stream=True))
    assert kinds(events) == [
        ("step_start", "inference"),
        ("step_progress", "inference"),
        ("step_complete", "inference"),
        ("turn_awaiting_input", None),
        # The resumed stream opens with the client tool's step.
        ("step_complete", "tool_execution"),
        ("step_start", "inference"),
        ("step_progress", "inference"),
        ("step_complete", "inference"),
        ("turn_complete", None),
    ]
    call = events[1]["delta"]
    assert call["type"] == "tool_call" and call["parse_status"] == "succeeded"
    assert call["tool_call"]["tool_name"] == "get_weather"
    paused = events[3]["turn"]["output_message"]
    assert paused["stop_reason"] == "end_of_message"
    assert paused["tool_calls"][0]["arguments"] == {"city": "Paris"}
    tool_step = events[4]["step_details"]
    # The client's tool wrapper sends its result JSON-encoded.
    assert json.loads(tool_step["tool_responses"][0]["content"]) == "sunny in Paris"
    turn = events[-1]["turn"]
    assert turn["turn_id"] == events[3]["turn"]["turn_id"]
    assert turn["output_message"]["content"] == 'The weather is "sunny in Paris".'
    assert [s["step_type"] for s in turn["steps"]] == ["inference", "tool_execution", "inference"]


def test_an_input_shield_blocks_the_turn(client):
    agent = Agent(client, model=MODEL, instructions="", input_shields=["CodeScanner"])
    session_id = agent.create_session("shielded")
    events = payloads(agent.create_turn(
        messages=[{"role": "user", "content": "import hashlib\nhashlib.md5(b).hexdigest()"}],
        session_id=session_id, stream=True))
    assert kinds(events) == [("step_start", "shield_call"), ("step_complete", "shield_call"),
                             ("turn_complete", None)]
    assert events[0]["metadata"] == {"touchpoint": "user-input"}
    violation = events[1]["step_details"]["violation"]
    assert violation["violation_level"] == "error"
    turn = events[-1]["turn"]
    assert turn["output_message"]["content"] == "Sorry, I found security concerns in the code."


def test_sessions_are_listed_read_and_survive_a_restart(client, agents_server):
    created = client.agents.create(agent_config={
        "model": MODEL, "instructions": "", "enable_session_persistence": True})
    agent_id = created.agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="kept").session_id
    turn = client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                     messages=[{"role": "user", "content": "Hi"}])
    assert turn.output_message.content == GREETING

    sessions = client.agents.session.list(agent_id=agent_id)
    assert [s["session_id"] if isinstance(s, dict) else s.session_id
            for s in sessions.data] == [session_id]

    agents_server.restart()
    fresh = LlamaStackClient(base_url=agents_server.url, timeout=HTTP_TIMEOUT_S)
    session = fresh.agents.session.retrieve(session_id=session_id, agent_id=agent_id)
    assert session.session_name == "kept"
    assert [t.turn_id for t in session.turns] == [turn.turn_id]
    got = fresh.agents.turn.retrieve(turn_id=turn.turn_id, agent_id=agent_id,
                                     session_id=session_id)
    assert got.output_message.content == GREETING
    step = fresh.agents.steps.retrieve(step_id=turn.steps[0].step_id, turn_id=turn.turn_id,
                                       agent_id=agent_id, session_id=session_id)
    assert step.step.step_type == "inference"
    # Deleting the agent deletes its sessions.
    fresh.agents.delete(agent_id)
    assert all(a.agent_id != agent_id if hasattr(a, "agent_id") else a["agent_id"] != agent_id
               for a in fresh.agents.list().data)


def test_a_rag_turn_runs_knowledge_search_on_the_server(client):
    client.vector_dbs.register(vector_db_id="facts", embedding_model="all-MiniLM-L6-v2",
                               embedding_dimension=384)
    client.tool_runtime.rag_tool.insert(vector_db_id="facts", chunk_size_in_tokens=128, documents=[
        {"document_id": "water", "content": "Water boils at 100 degrees Celsius at sea level.",
         "metadata": {}}])
    agent = Agent(client, model=MODEL, instructions="", tools=[
        {"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": ["facts"]}}])
    session_id = agent.create_session("rag")
    events = payloads(agent.create_turn(
        messages=[{"role": "user", "content": "When does water boil? [[rag]]"}],
        session_id=session_id, stream=True))
    assert kinds(events) == [
        ("step_start", "inference"), ("step_progress", "inference"),
        ("step_complete", "inference"),
        ("step_start", "tool_execution"), ("step_progress", "tool_execution"),
        ("step_complete", "tool_execution"),
        ("step_start", "inference"), ("step_progress", "inference"),
        ("step_complete", "inference"), ("turn_complete", None),
    ]
    assert events[4]["delta"]["parse_status"] == "in_progress"
    step = events[5]["step_details"]
    assert step["tool_calls"][0]["tool_name"] == "knowledge_search"
    response = step["tool_responses"][0]
    assert response["call_id"] == "call_knowledge_search"
    text = json.dumps(response["content"])
    assert "knowledge_search tool found 1 chunks" in text
    assert "Water boils at 100 degrees Celsius" in text
    assert response["metadata"]["document_ids"] == ["water"]


def persisted_turn(client: LlamaStackClient, text: str = "Hi"):
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "", "enable_session_persistence": True}).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    turn = client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                     messages=[{"role": "user", "content": text}])
    return agent_id, session_id, turn


def test_a_kill_during_a_streaming_turn_leaves_no_half_turn(agents_server, upstream):
    client = LlamaStackClient(base_url=agents_server.url, timeout=HTTP_TIMEOUT_S)
    agent_id, session_id, done = persisted_turn(client)
    stream = client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=True,
                                       messages=[{"role": "user", "content": "wait [[slow]]"}])
    first = next(iter(stream))
    assert first.event.payload.event_type == "step_start"
    agents_server.kill()
    agents_server.start()
    fresh = LlamaStackClient(base_url=agents_server.url, timeout=HTTP_TIMEOUT_S)
    session = fresh.agents.session.retrieve(session_id=session_id, agent_id=agent_id)
    # The completed turn is there; the interrupted one is not, not even in part.
    assert [t.turn_id for t in session.turns] == [done.turn_id]
    again = fresh.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                     messages=[{"role": "user", "content": "Hi again"}])
    assert again.output_message.content == GREETING


def test_agents_persist_on_postgresql(server_factory, upstream, minilm, tmp_path_factory):
    db = postgres_database("agents_e2e")
    path = tmp_path_factory.mktemp("agents-pg") / "run.yaml"
    store = {"type": "postgres", "host": db["POSTGRES_HOST"], "port": int(db["POSTGRES_PORT"]),
             "db": db["POSTGRES_DB"], "user": db["POSTGRES_USER"],
             "password": db["POSTGRES_PASSWORD"]}
    server = server_factory("agents-pg", run_config=agents_run_yaml(path, upstream.url, minilm,
                                                                    store)).start()
    client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S)
    agent_id, session_id, turn = persisted_turn(client)
    server.restart()
    fresh = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S)
    session = fresh.agents.session.retrieve(session_id=session_id, agent_id=agent_id)
    assert [t.turn_id for t in session.turns] == [turn.turn_id]
    assert session.turns[0].output_message.content == GREETING


def test_an_output_shield_replaces_an_insecure_answer(client):
    agent = Agent(client, model=MODEL, instructions="", output_shields=["CodeScanner"])
    session_id = agent.create_session("output-shield")
    events = payloads(agent.create_turn(
        messages=[{"role": "user", "content": "Hash this [[insecure]]"}],
        session_id=session_id, stream=True))
    assert kinds(events) == [
        ("step_start", "inference"), ("step_progress", "inference"),
        ("step_complete", "inference"),
        ("step_start", "shield_call"), ("step_complete", "shield_call"),
        ("turn_complete", None),
    ]
    assert events[3]["metadata"] == {"touchpoint": "assistant-output"}
    assert events[4]["step_details"]["violation"]["metadata"]["violation_type"]
    assert events[-1]["turn"]["output_message"]["content"] == (
        "Sorry, I found security concerns in the code.")


def test_max_infer_iters_ends_the_turn_even_with_a_tool_call_pending(client):
    client.vector_dbs.register(vector_db_id="iters", embedding_model="all-MiniLM-L6-v2",
                               embedding_dimension=384)
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": "", "max_infer_iters": 1,
        "toolgroups": [{"name": "builtin::rag", "args": {"vector_db_ids": ["iters"]}}]}).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    turn = client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                     messages=[{"role": "user", "content": "look up [[rag]]"}])
    assert [s.step_type for s in turn.steps] == ["inference"]
    assert turn.output_message.stop_reason == "end_of_turn"
    assert turn.output_message.tool_calls[0].tool_name == "knowledge_search"


def test_turn_toolgroups_replace_the_agents(client):
    client.vector_dbs.register(vector_db_id="turn-facts", embedding_model="all-MiniLM-L6-v2",
                               embedding_dimension=384)
    agent_id = client.agents.create(agent_config={
        "model": MODEL, "instructions": ""}).agent_id
    session_id = client.agents.session.create(agent_id=agent_id, session_name="s").session_id
    # Without tools the marker gets a greeting; with the turn's rag group, a knowledge_search.
    plain = client.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                      messages=[{"role": "user", "content": "[[rag]]"}])
    assert plain.output_message.content == GREETING
    with_tools = client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, stream=False,
        messages=[{"role": "user", "content": "[[rag]]"}],
        toolgroups=[{"name": "builtin::rag/knowledge_search",
                     "args": {"vector_db_ids": ["turn-facts"]}}])
    assert [s.step_type for s in with_tools.steps] == ["inference", "tool_execution", "inference"]


def test_text_documents_are_appended_to_the_turns_message(client, upstream):
    agent_id, session_id, _ = persisted_turn(client)
    client.agents.turn.create(
        agent_id=agent_id, session_id=session_id, stream=False,
        messages=[{"role": "user", "content": "What is the word?"}],
        documents=[{"content": "The secret word is plum.", "mime_type": "text/plain"}])
    sent = upstream.requests[-1]["messages"][-1]
    assert sent["role"] == "user"
    assert sent["content"] == "What is the word?\nThe secret word is plum."


def test_a_client_that_leaves_mid_turn_does_not_lose_the_turn(agents_server):
    import requests

    client = LlamaStackClient(base_url=agents_server.url, timeout=HTTP_TIMEOUT_S)
    agent_id, session_id, done = persisted_turn(client)
    url = f"{agents_server.url}/v1/agents/{agent_id}/session/{session_id}/turn"
    with requests.post(url, json={"stream": True, "messages": [
            {"role": "user", "content": "wait [[slow]]"}]}, stream=True,
            timeout=HTTP_TIMEOUT_S) as resp:
        first = next(resp.iter_lines(decode_unicode=True))
        assert "step_start" in first
    # The client is gone; the turn still finishes and is saved whole.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        turns = client.agents.session.retrieve(session_id=session_id, agent_id=agent_id).turns
        if len(turns) == 2:
            break
        time.sleep(0.5)
    assert [t.output_message.content for t in turns] == [GREETING, GREETING]
    assert turns[1].completed_at is not None
