"""Background RAG inserts end to end with llama-stack-client 0.2 and the real all-MiniLM-L6-v2
on inline::sqlite-vec: an insert over `background_insert_bytes` answers at once with a
`rag_tool.insert_job` that runs in the background (progress, completion, search), a small one
stays inline, a job can be cancelled, and a job whose server was killed with SIGKILL goes on
after a restart (or on another replica sharing a PostgreSQL store) without storing any chunk
twice."""

from __future__ import annotations

import time

import pytest
import requests

from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    classic_client,
    fetch_minilm,
    run_yaml_text,
)

BOUND = 4096
JOBS = "/v1/tool-runtime/rag-tool/jobs"
INSERT = "/v1/tool-runtime/rag-tool/insert"

WORDS = ("river mountain lantern harvest copper meadow falcon orchard glacier canyon "
         "thunder willow harbor prairie ember marble velvet summit quarry beacon").split()


def document_text(index: int, words: int = 300) -> str:
    """A distinct text of about `words` words (roughly 1.8 KB), one 512-token chunk."""
    body = " ".join(WORDS[(index * 7 + i * 3) % len(WORDS)] for i in range(words))
    return f"Document number {index} talks about item{index}. {body}"


def documents(count: int, prefix: str, words: int = 300) -> list[dict]:
    return [
        {"document_id": f"{prefix}-{i}", "content": document_text(i, words),
         "mime_type": "text/plain", "metadata": {"batch": prefix}}
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


def rag_server(server_factory, tmp_path_factory, minilm, tokenizer, name, **env):
    config_dir = tmp_path_factory.mktemp(f"run-{name}")
    run_yaml = config_dir / "run.yaml"
    text = run_yaml_text("sqlite-vec").replace(
        "      allow_private_addresses: false\n",
        "      allow_private_addresses: false\n"
        "      background_insert_bytes: ${env.RAG_BACKGROUND_INSERT_BYTES:=1048576}\n",
    )
    assert "background_insert_bytes" in text
    run_yaml.write_text(text)
    return server_factory(name, run_config=str(run_yaml), extra_env={
        "EMBEDDING_MODEL_PATH": str(minilm),
        "LLAMA3_TOKENIZER_MODEL": str(tokenizer),
        "RAG_BACKGROUND_INSERT_BYTES": str(BOUND),
        **env,
    })


@pytest.fixture(scope="module")
def stack(server_factory, tmp_path_factory, minilm, tokenizer_model):
    server = rag_server(server_factory, tmp_path_factory, minilm, tokenizer_model, "rag-jobs")
    server.start()
    yield server
    server.stop()


def register(server, vector_db_id: str) -> None:
    classic_client(server).vector_dbs.register(
        vector_db_id=vector_db_id, embedding_model=EMBEDDING_MODEL,
        embedding_dimension=EMBEDDING_DIMENSION,
    )


def job(server, job_id: str) -> dict:
    resp = requests.get(f"{server.url}{JOBS}/{job_id}", timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_finished(server, job_id: str, timeout: float = 600) -> tuple[dict, list[dict]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = job(server, job_id)
        seen.append(current)
        if current["status"] != "in_progress":
            return current, seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


def stored_chunks(server, vector_db_id: str) -> list[dict]:
    """Every chunk of a vector DB (a vector query for more chunks than it holds)."""
    resp = requests.post(f"{server.url}/v1/vector-io/query", json={
        "vector_db_id": vector_db_id, "query": "river mountain lantern",
        "params": {"max_chunks": 5000}}, timeout=120)
    assert resp.status_code == 200, resp.text
    return resp.json()["chunks"]


def test_a_large_insert_runs_in_the_background(stack):
    client = classic_client(stack)
    register(stack, "bg-db")
    docs = documents(8, "bg")
    docs[5]["content"] += " The zebra quokka password is heliotrope."
    before = time.monotonic()
    # The 0.2 client reads no answer from this route: it must not choke on the job object.
    assert client.tool_runtime.rag_tool.insert(
        vector_db_id="bg-db", chunk_size_in_tokens=512, documents=docs) is None
    assert time.monotonic() - before < 30
    listed = requests.get(f"{stack.url}{JOBS}", params={"vector_db_id": "bg-db"}, timeout=30)
    assert listed.status_code == 200, listed.text
    jobs = listed.json()["data"]
    assert len(jobs) == 1, jobs
    first = jobs[0]
    assert first["id"].startswith("ragjob_")
    assert first["object"] == "rag_tool.insert_job"
    assert first["vector_db_id"] == "bg-db"
    assert first["documents"]["total"] == 8
    assert first["error"] is None
    final, seen = wait_finished(stack, first["id"])
    assert final["status"] == "completed", final
    assert final["documents"] == {"total": 8, "completed": 8, "failed": 0}
    assert final["chunks_stored"] >= 8
    counts = [s["documents"]["completed"] for s in seen]
    assert counts == sorted(counts), f"progress went backwards: {counts}"
    chunks = [s["chunks_stored"] for s in seen]
    assert chunks == sorted(chunks), f"chunks_stored went backwards: {chunks}"
    result = client.tool_runtime.rag_tool.query(
        content="What is the zebra quokka password?", vector_db_ids=["bg-db"])
    assert "heliotrope" in str(result.content)
    assert requests.get(f"{stack.url}{JOBS}", params={"vector_db_id": "other"},
                        timeout=30).json() == {"data": []}


def test_the_job_object_comes_back_from_the_route(stack):
    register(stack, "bg-raw")
    resp = requests.post(f"{stack.url}{INSERT}", json={
        "vector_db_id": "bg-raw", "chunk_size_in_tokens": 512,
        "documents": documents(4, "raw") + [
            {"document_id": "broken", "content": "data:text/plain;base64,@@@", "metadata": {}}],
    }, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "rag_tool.insert_job"
    assert body["status"] == "in_progress"
    assert body["documents"]["total"] == 5
    assert body["documents"]["failed"] == 1, "a document that cannot be loaded fails at once"
    assert body["chunks_stored"] == 0
    assert isinstance(body["created_at"], int)
    final, _ = wait_finished(stack, body["id"])
    assert final["status"] == "completed", "a failed document does not fail the job"
    assert final["documents"] == {"total": 5, "completed": 4, "failed": 1}
    assert final["failed_documents"][0]["document_id"] == "broken"
    assert requests.get(f"{stack.url}{JOBS}/ragjob_unknown", timeout=30).status_code == 404


def test_a_small_insert_stays_inline(stack):
    client = classic_client(stack)
    register(stack, "inline-db")
    resp = requests.post(f"{stack.url}{INSERT}", json={
        "vector_db_id": "inline-db", "chunk_size_in_tokens": 512,
        "documents": [{"document_id": "small", "metadata": {},
                       "content": "The aardvark lighthouse keeper is named Ottoline."}],
    }, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.json() is None
    result = client.tool_runtime.rag_tool.query(
        content="Who keeps the aardvark lighthouse?", vector_db_ids=["inline-db"])
    assert "Ottoline" in str(result.content)
    listed = requests.get(f"{stack.url}{JOBS}", params={"vector_db_id": "inline-db"}, timeout=30)
    assert listed.json() == {"data": []}


def test_a_job_can_be_cancelled(stack):
    register(stack, "cancel-db")
    resp = requests.post(f"{stack.url}{INSERT}", json={
        "vector_db_id": "cancel-db", "chunk_size_in_tokens": 512,
        "documents": documents(60, "cancel")}, timeout=60)
    assert resp.status_code == 200, resp.text
    job_id = resp.json()["id"]
    cancelled = requests.post(f"{stack.url}{JOBS}/{job_id}/cancel", timeout=30)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    again = requests.post(f"{stack.url}{JOBS}/{job_id}/cancel", timeout=30)
    assert again.status_code == 409, again.text
    time.sleep(3)
    settled = job(stack, job_id)
    time.sleep(3)
    later = job(stack, job_id)
    assert later["status"] == "cancelled"
    assert later["documents"]["completed"] == settled["documents"]["completed"] < 60
    assert requests.post(f"{stack.url}{JOBS}/ragjob_unknown/cancel", timeout=30).status_code == 404


def test_a_killed_job_resumes_without_duplicates(server_factory, tmp_path_factory, minilm,
                                                 tokenizer_model):
    server = rag_server(server_factory, tmp_path_factory, minilm, tokenizer_model, "rag-resume",
                        LLAMA_STACK_LEASE_SECONDS="1.5")
    server.start()
    register(server, "resume-db")
    total = 80
    resp = requests.post(f"{server.url}{INSERT}", json={
        "vector_db_id": "resume-db", "chunk_size_in_tokens": 512,
        "documents": documents(total, "resume")}, timeout=60)
    assert resp.status_code == 200, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + 300
    while True:
        current = job(server, job_id)
        if current["documents"]["completed"] >= 2:
            break
        assert time.monotonic() < deadline, current
        time.sleep(0.1)
    assert current["status"] == "in_progress", "the job must still be running when killed"
    server.kill()
    server.start()
    final, _ = wait_finished(server, job_id)
    assert final["status"] == "completed", final
    assert final["documents"] == {"total": total, "completed": total, "failed": 0}
    chunks = stored_chunks(server, "resume-db")
    ids = [c["metadata"]["document_id"] for c in chunks]
    assert sorted(ids) == sorted(f"resume-{i}" for i in range(total)), (
        f"each document once: {len(ids)} chunks for {len(set(ids))} documents")
    assert final["chunks_stored"] == total
    server.stop()


def test_another_replica_takes_a_job_over(server_factory, tmp_path_factory, minilm,
                                          tokenizer_model):
    """Two servers on one PostgreSQL store (pgvector and the metadata store): a job whose
    server is killed is finished by the other once the lease runs out."""
    from memory_support import postgres_database

    pg_env = postgres_database("rag_jobs_replicas")
    servers = []
    for name in ("rag-replica-a", "rag-replica-b"):
        config_dir = tmp_path_factory.mktemp(f"run-{name}")
        run_yaml = config_dir / "run.yaml"
        run_yaml.write_text(run_yaml_text("pgvector").replace(
            "      allow_private_addresses: false\n",
            "      allow_private_addresses: false\n"
            f"      background_insert_bytes: {BOUND}\n",
        ))
        servers.append(server_factory(name, run_config=str(run_yaml), extra_env={
            "EMBEDDING_MODEL_PATH": str(minilm), "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model),
            "LLAMA_STACK_LEASE_SECONDS": "1.5", **pg_env,
        }).start())
    a, b = servers
    register(a, "replica-db")
    total = 40
    resp = requests.post(f"{a.url}{INSERT}", json={
        "vector_db_id": "replica-db", "chunk_size_in_tokens": 512,
        "documents": documents(total, "replica")}, timeout=60)
    assert resp.status_code == 200, resp.text
    job_id = resp.json()["id"]
    deadline = time.monotonic() + 300
    while job(b, job_id)["documents"]["completed"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    a.kill()
    final, _ = wait_finished(b, job_id)
    assert final["status"] == "completed", final
    assert final["documents"] == {"total": total, "completed": total, "failed": 0}
    ids = [c["metadata"]["document_id"] for c in stored_chunks(b, "replica-db")]
    assert sorted(ids) == sorted(f"replica-{i}" for i in range(total))
    b.stop()


def test_an_inline_insert_stops_when_the_client_leaves(server_factory, tmp_path_factory,
                                                       minilm, tokenizer_model):
    """With background inserts off (0), a long insert runs inline; a client that gives up
    stops it, and nothing of the document is stored."""
    server = rag_server(server_factory, tmp_path_factory, minilm, tokenizer_model, "rag-inline",
                        RAG_BACKGROUND_INSERT_BYTES="0")
    server.start()
    register(server, "left-db")
    big = " ".join(document_text(i) for i in range(80))
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{server.url}{INSERT}", json={
            "vector_db_id": "left-db", "chunk_size_in_tokens": 512,
            "documents": [{"document_id": "big", "content": big, "metadata": {}}]}, timeout=2)
    assert time.monotonic() - started < 10
    time.sleep(5)
    # The query waits behind the embedding batch under way when the client left.
    resp = requests.post(f"{server.url}/v1/vector-io/query", json={
        "vector_db_id": "left-db", "query": "river", "params": {"max_chunks": 50}}, timeout=300)
    assert resp.status_code == 200, resp.text
    assert resp.json()["chunks"] == []
    assert requests.get(f"{server.url}{JOBS}", timeout=30).json() == {"data": []}
    server.stop()
    log = server.log_tail(40)
    assert "Ingested document" not in log
    assert "in_flight=0" in log, "the insert was still running at shutdown"
