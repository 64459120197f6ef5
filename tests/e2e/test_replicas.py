"""Replicas of the real binary on one PostgreSQL, each with its own empty local directory:
what one registers or removes (models, shields, vector DBs, tool groups) is visible on the others
within a second, with no restart, through the registry's LISTEN/NOTIFY change feed.

Two replicas run the memory run.yaml plus safety. Three replicas of the shipped `postgres`
distribution (one cluster for the module, its model the canned upstream of `agents_support`,
behind `RoundRobinProxy`) run the flows the two-replica tests run elsewhere
(test_replica_agents.py, test_files_shared.py): the official client's agent with default
settings, RAG over a vector store whose file was uploaded through another replica, and a model
registered and deleted.
"""

from __future__ import annotations

import time

import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool

from agents_support import GREETING, MODEL, ToolCallingUpstream
from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT
from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    _COMMON_HEAD,
    _COMMON_TAIL,
    _PG_METADATA,
    _PGVECTOR,
    _RESOURCES,
    fetch_minilm,
    openai_client,
    postgres_database,
)
from replica_support import RoundRobinProxy

POSTGRES_RUN_YAML = REPO_ROOT / "distributions" / "postgres" / "run.yaml"
# The bound the README states for a change to reach every replica.
VISIBLE_WITHIN_S = 1.0

SAFETY = """\
  safety:
  - provider_id: code-scanner
    provider_type: inline::code-scanner
    config: {}
"""


@pytest.fixture(scope="module")
def replicas(server_factory, tmp_path_factory, tokenizer_model):
    pg = postgres_database("replicas")
    config = tmp_path_factory.mktemp("replicas") / "run.yaml"
    text = _COMMON_HEAD + _PGVECTOR + _COMMON_TAIL + SAFETY + _PG_METADATA + _RESOURCES
    config.write_text(text.replace("apis:\n", "apis:\n- safety\n", 1))
    env = {"EMBEDDING_MODEL_PATH": str(fetch_minilm()),
           "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model), **pg}
    started = []
    for name in ("replica-a", "replica-b"):
        # server_factory gives each its own SQLITE_STORE_DIR: nothing local is shared.
        started.append(server_factory(name, run_config=str(config), extra_env=env).start())
    return started


@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def three(server_factory, upstream, tokenizer_model):
    """Three replicas of the `postgres` distribution, the stub model registered, and a
    round-robin proxy in front of them."""
    env = {**postgres_database("replicas_three"), "EMBEDDING_MODEL_PATH": str(fetch_minilm()),
           "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model), "VLLM_URL": upstream.url}
    servers = [server_factory(f"replica-{n}", run_config=str(POSTGRES_RUN_YAML),
                              extra_env=env).start() for n in ("1", "2", "3")]
    # The distribution's own LLM entry is the local model (LLAMA_MODEL_PATH): the stub on its
    # `vllm` provider is registered here, once, for all three.
    registered = requests.post(f"{servers[0].url}/v1/models", json={
        "model_id": MODEL, "provider_id": "vllm", "provider_model_id": MODEL,
        "model_type": "llm"})
    assert registered.status_code == 200, registered.text
    identifier = registered.json()["identifier"]
    for server in servers[1:]:
        eventually(lambda: identifier in ids(server, "/v1/models"), "the stub model")
    proxy = RoundRobinProxy([s.url for s in servers])
    yield servers, proxy
    proxy.stop()


@pytest.fixture(params=[2, 3], ids=["two-replicas", "three-replicas"])
def cluster(request) -> list:
    """The replicas of a test that runs on two and on three."""
    if request.param == 2:
        return request.getfixturevalue("replicas")
    return request.getfixturevalue("three")[0]


def eventually(check, what: str) -> float:
    """Seconds until `check()` holds, failing past the bound."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < VISIBLE_WITHIN_S, f"{what} not seen within {VISIBLE_WITHIN_S} s"
        time.sleep(0.02)
    return time.monotonic() - start


def ids(server, path: str, key: str = "identifier") -> set[str]:
    return {item[key] for item in requests.get(f"{server.url}{path}").json()["data"]}


def test_a_model_registered_and_deleted_on_one_replica_is_seen_on_the_others(cluster):
    first, *others = cluster
    created = requests.post(f"{first.url}/v1/models", json={
        "model_id": "team-embedder", "provider_id": "sentence-transformers",
        "provider_model_id": EMBEDDING_MODEL, "model_type": "embedding",
        "metadata": {"embedding_dimension": EMBEDDING_DIMENSION}})
    assert created.status_code == 200, created.text
    for other in others:
        eventually(lambda: "team-embedder" in ids(other, "/v1/models"), "the model")
        used = requests.post(f"{other.url}/v1/embeddings",
                             json={"model": "team-embedder", "input": "hi"})
        assert used.status_code == 200, used.text
        assert len(used.json()["data"][0]["embedding"]) == EMBEDDING_DIMENSION
    # Deleted through a replica that did not register it.
    assert requests.delete(f"{others[-1].url}/v1/models/team-embedder").status_code == 200
    for server in [first, *others[:-1]]:
        eventually(lambda: "team-embedder" not in ids(server, "/v1/models"), "the deletion")
        gone = requests.post(f"{server.url}/v1/embeddings",
                             json={"model": "team-embedder", "input": "hi"})
        assert gone.status_code in (400, 404), gone.text


def test_shields_and_tool_groups_follow_across_replicas(replicas):
    a, b = replicas
    shield = requests.post(f"{a.url}/v1/shields", json={
        "shield_id": "team-scanner", "provider_id": "code-scanner",
        "provider_shield_id": "CodeScanner"})
    assert shield.status_code == 200, shield.text
    eventually(lambda: "team-scanner" in ids(b, "/v1/shields"), "the shield")
    ran = requests.post(f"{b.url}/v1/safety/run-shield", json={
        "shield_id": "team-scanner", "params": {},
        "messages": [{"role": "user", "content": "print('hello')"}]})
    assert ran.status_code == 200, ran.text
    group = requests.post(f"{a.url}/v1/toolgroups", json={
        "toolgroup_id": "team::rag", "provider_id": "rag-runtime"})
    assert group.status_code == 200, group.text
    eventually(lambda: "team::rag" in ids(b, "/v1/toolgroups"), "the tool group")
    assert requests.delete(f"{a.url}/v1/shields/team-scanner").status_code == 200
    assert requests.delete(f"{a.url}/v1/toolgroups/team::rag").status_code == 200
    eventually(lambda: "team-scanner" not in ids(b, "/v1/shields"), "the shield's deletion")
    eventually(lambda: "team::rag" not in ids(b, "/v1/toolgroups"), "the tool group's deletion")


def test_a_vector_db_filled_on_one_replica_is_queried_on_the_other(replicas):
    a, b = replicas
    registered = requests.post(f"{a.url}/v1/vector-dbs", json={
        "vector_db_id": "team-kb", "embedding_model": EMBEDDING_MODEL,
        "embedding_dimension": EMBEDDING_DIMENSION, "provider_id": "pgvector"})
    assert registered.status_code == 200, registered.text
    inserted = requests.post(f"{a.url}/v1/tool-runtime/rag-tool/insert", json={
        "vector_db_id": "team-kb", "chunk_size_in_tokens": 128,
        "documents": [{"document_id": "d1", "metadata": {},
                       "content": "The staging cluster lives in Frankfurt."}]})
    assert inserted.status_code == 200, inserted.text
    eventually(lambda: "team-kb" in ids(b, "/v1/vector-dbs"), "the vector DB")
    queried = requests.post(f"{b.url}/v1/vector-io/query", json={
        "vector_db_id": "team-kb", "query": "Where is staging?"})
    assert queried.status_code == 200, queried.text
    assert "Frankfurt" in queried.json()["chunks"][0]["content"]
    assert requests.delete(f"{a.url}/v1/vector-dbs/team-kb").status_code == 200
    eventually(lambda: "team-kb" not in ids(b, "/v1/vector-dbs"), "the vector DB's deletion")


@client_tool
def get_weather(city: str) -> str:
    """Today's weather in a city.

    :param city: the city
    """
    return f"sunny in {city}"


def test_an_agents_requests_spread_over_three_replicas_as_if_one_server(three, upstream):
    servers, proxy = three
    client = LlamaStackClient(base_url=proxy.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    # Default settings: enable_session_persistence is left unset.
    agent = Agent(client, model=MODEL, instructions="You are terse.", tools=[get_weather])
    session_id = agent.create_session("three-replicas")
    first = len(proxy.routed)
    hello = agent.create_turn(messages=[{"role": "user", "content": "Hi"}],
                              session_id=session_id, stream=False)
    assert hello.output_message.content == GREETING
    # The client tool pauses the turn on one replica; the resume lands on another.
    weather = agent.create_turn(messages=[{"role": "user", "content": "Weather? [[call]]"}],
                                session_id=session_id, stream=False)
    assert weather.output_message.content == 'The weather is "sunny in Paris".'
    last = agent.create_turn(messages=[{"role": "user", "content": "Thanks"}],
                             session_id=session_id, stream=False)
    assert last.output_message.content == GREETING

    turns = [(r[1].rsplit("/", 1)[-1], r[2]) for r in proxy.routed[first:] if "/turn" in r[1]]
    assert [kind for kind, _ in turns] == ["turn", "turn", "resume", "turn"], proxy.routed
    assert {replica for _, replica in turns} == {0, 1, 2}, turns
    assert turns[1][1] != turns[2][1], turns
    # The last turn was built from everything the other replicas stored before it.
    sent = upstream.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant",
                                         "tool", "assistant", "user"]
    for server in servers:
        session = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S,
                                   max_retries=0).agents.session.retrieve(
            session_id=session_id, agent_id=agent.agent_id)
        assert [t.input_messages[0].content for t in session.turns] == [
            "Hi", "Weather? [[call]]", "Thanks"]
        assert [t.turn_id for t in session.turns] == [
            hello.turn_id, weather.turn_id, last.turn_id]


def test_rag_over_a_store_whose_file_was_uploaded_through_another_replica(three, upstream):
    (one, two, third), proxy = three
    uploaded = openai_client(one).files.create(
        file=("cria.txt", b"A baby llama is called a cria and stands within an hour of birth.\n",
              "text/plain"), purpose="assistants")
    # Attached through a second replica, which reads the bytes from the shared store.
    store = openai_client(two).vector_stores.create(
        name="three-replicas", file_ids=[uploaded.id],
        extra_body={"embedding_model": EMBEDDING_MODEL,
                    "embedding_dimension": EMBEDDING_DIMENSION, "provider_id": "pgvector"})
    assert store.file_counts.completed == 1, store.file_counts
    for server in (one, two, third):
        hits = list(openai_client(server).vector_stores.search(
            store.id, query="What is a baby llama called?").data)
        assert hits and "cria" in hits[0].content[0].text, (server.name, hits)
    # A model's file_search through the load balancer: the store, its file and its chunks are
    # found whichever replica answers.
    via_proxy = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="none",
                              timeout=HTTP_TIMEOUT_S, max_retries=0)
    response = via_proxy.responses.create(
        model=MODEL, input="What is a baby llama called? [[fs]]",
        tools=[{"type": "file_search", "vector_store_ids": [store.id]}])
    searched = [item for item in response.output if item.type == "file_search_call"]
    assert searched and searched[0].status == "completed", response.output
    assert "cria" in response.output_text, response.output_text
