"""Two replicas of the real binary on one PostgreSQL, each with its own empty local directory:
what one registers or removes (models, shields, vector DBs, tool groups) is visible on the other
within a second, with no restart, through the registry's LISTEN/NOTIFY change feed.
"""

from __future__ import annotations

import time

import pytest
import requests

from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    _COMMON_HEAD,
    _COMMON_TAIL,
    _PG_METADATA,
    _PGVECTOR,
    _RESOURCES,
    fetch_minilm,
    postgres_database,
)

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


def eventually(check, what: str) -> float:
    """Seconds until `check()` holds, failing past the bound."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < VISIBLE_WITHIN_S, f"{what} not seen within {VISIBLE_WITHIN_S} s"
        time.sleep(0.02)
    return time.monotonic() - start


def ids(server, path: str, key: str = "identifier") -> set[str]:
    return {item[key] for item in requests.get(f"{server.url}{path}").json()["data"]}


def test_a_model_registered_and_deleted_on_one_replica_is_seen_on_the_other(replicas):
    a, b = replicas
    created = requests.post(f"{a.url}/v1/models", json={
        "model_id": "team-embedder", "provider_id": "sentence-transformers",
        "provider_model_id": EMBEDDING_MODEL, "model_type": "embedding",
        "metadata": {"embedding_dimension": EMBEDDING_DIMENSION}})
    assert created.status_code == 200, created.text
    eventually(lambda: "team-embedder" in ids(b, "/v1/models"), "the model")
    used = requests.post(f"{b.url}/v1/embeddings", json={"model": "team-embedder", "input": "hi"})
    assert used.status_code == 200, used.text
    assert len(used.json()["data"][0]["embedding"]) == EMBEDDING_DIMENSION
    assert requests.delete(f"{a.url}/v1/models/team-embedder").status_code == 200
    eventually(lambda: "team-embedder" not in ids(b, "/v1/models"), "the deletion")
    gone = requests.post(f"{b.url}/v1/embeddings", json={"model": "team-embedder", "input": "hi"})
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
