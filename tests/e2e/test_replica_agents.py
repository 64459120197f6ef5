"""Agents on two replicas of the real binary sharing one PostgreSQL metadata store, each with
its own empty local directory, behind a round-robin proxy that sends each request to the other
replica: llama-stack-client 0.2's `Agent` (default settings, so `enable_session_persistence`
unset) must not notice that its session, turns and resumes land on different servers.

The model is the canned upstream of `agents_support`.
"""

from __future__ import annotations

import threading
import time

import pytest
import yaml
from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool

from agents_support import GREETING, MODEL, ToolCallingUpstream
from e2e_support import HTTP_TIMEOUT_S
from memory_support import postgres_database
from replica_support import RoundRobinProxy

def run_yaml(path, upstream_url: str, pg: dict[str, str]) -> str:
    """The stub model, the agents API and what it needs, all records in PostgreSQL."""
    path.write_text(yaml.safe_dump({
        "version": 2,
        "image_name": "replica-agents",
        "apis": ["inference", "safety", "agents", "tool_runtime"],
        "providers": {
            "inference": [{"provider_id": "stub", "provider_type": "remote::openai-compat",
                           "config": {"url": upstream_url, "resilience": {"max_retries": 0}}}],
            "safety": [{"provider_id": "code-scanner", "provider_type": "inline::code-scanner",
                        "config": {}}],
            "agents": [{"provider_id": "meta-reference",
                        "provider_type": "inline::meta-reference", "config": {}}],
            "tool_runtime": [{"provider_id": "rag-runtime",
                              "provider_type": "inline::rag-runtime", "config": {}}],
        },
        "metadata_store": {"type": "postgres", "host": pg["POSTGRES_HOST"],
                           "port": int(pg["POSTGRES_PORT"]), "db": pg["POSTGRES_DB"],
                           "user": pg["POSTGRES_USER"], "password": pg["POSTGRES_PASSWORD"]},
        "models": [{"model_id": MODEL, "provider_id": "stub", "model_type": "llm"}],
    }, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    up.slow_s = 1.5
    yield up
    up.stop()


@pytest.fixture(scope="module")
def replicas(server_factory, upstream, tmp_path_factory):
    pg = postgres_database("replica_agents")
    config = run_yaml(tmp_path_factory.mktemp("replica-agents") / "run.yaml", upstream.url, pg)
    # server_factory gives each its own SQLITE_STORE_DIR: nothing local is shared.
    return [server_factory(name, run_config=config).start()
            for name in ("agents-replica-a", "agents-replica-b")]


@pytest.fixture(scope="module")
def proxy(replicas):
    p = RoundRobinProxy([r.url for r in replicas])
    yield p
    p.stop()


def direct(server) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)


def turn_inputs(session) -> list[str]:
    return [t.input_messages[0].content for t in session.turns]


@client_tool
def get_weather(city: str) -> str:
    """Today's weather in a city.

    :param city: the city
    """
    return f"sunny in {city}"


def test_an_agents_requests_alternate_replicas_as_if_one_server(proxy, replicas, upstream):
    client = LlamaStackClient(base_url=proxy.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    agent = Agent(client, model=MODEL, instructions="You are terse.", tools=[get_weather])
    session_id = agent.create_session("replicas")
    first = len(proxy.routed)

    hello = agent.create_turn(messages=[{"role": "user", "content": "Hi"}],
                              session_id=session_id, stream=False)
    assert hello.output_message.content == GREETING
    # The client tool pauses the turn on one replica; the resume goes to the other.
    weather = agent.create_turn(messages=[{"role": "user", "content": "Weather? [[call]]"}],
                                session_id=session_id, stream=False)
    assert weather.output_message.content == 'The weather is "sunny in Paris".'
    last = agent.create_turn(messages=[{"role": "user", "content": "Thanks"}],
                             session_id=session_id, stream=False)
    assert last.output_message.content == GREETING

    turns = [r for r in proxy.routed[first:] if "/turn" in r[1]]
    assert [(r[1].rsplit("/", 1)[-1], r[2]) for r in turns] == [
        ("turn", 0), ("turn", 1), ("resume", 0), ("turn", 1)], proxy.routed
    # The last turn, on replica B, was built from everything stored before it.
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant",
                                         "tool", "assistant", "user"]
    assert sent[6]["content"] == 'The weather is "sunny in Paris".'

    for server in replicas:
        session = direct(server).agents.session.retrieve(session_id=session_id,
                                                         agent_id=agent.agent_id)
        assert turn_inputs(session) == ["Hi", "Weather? [[call]]", "Thanks"]
        assert [t.turn_id for t in session.turns] == [
            hello.turn_id, weather.turn_id, last.turn_id]


def test_turns_started_at_once_on_both_replicas_run_one_after_the_other(replicas, upstream):
    a, b = (direct(r) for r in replicas)
    agent = Agent(a, model=MODEL, instructions="")
    session_id = agent.create_session("together")
    answers: dict[str, object] = {}

    def turn(client: LlamaStackClient, text: str) -> None:
        answers[text] = client.agents.turn.create(
            agent_id=agent.agent_id, session_id=session_id, stream=False,
            messages=[{"role": "user", "content": text}])

    slow = threading.Thread(target=turn, args=(a, "one [[slow]]"))
    seen = len(upstream.requests)
    slow.start()
    deadline = time.monotonic() + 10
    while len(upstream.requests) == seen:  # replica A is inside its turn
        assert time.monotonic() < deadline, "the first turn never reached the model"
        time.sleep(0.02)
    started = time.monotonic()
    turn(b, "two")
    slow.join()
    # B waited for A's turn to be stored, then read it as history.
    assert time.monotonic() - started > 0.5
    sent = upstream.requests[-1]["messages"]
    assert [m["content"] for m in sent] == ["one [[slow]]", GREETING, "two"]
    for client in (a, b):
        session = client.agents.session.retrieve(session_id=session_id, agent_id=agent.agent_id)
        assert turn_inputs(session) == ["one [[slow]]", "two"]
        assert [t.turn_id for t in session.turns] == [answers["one [[slow]]"].turn_id,
                                                       answers["two"].turn_id]
