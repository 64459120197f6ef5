"""The Batch API (`/v1/batches`) with the official openai SDK: batches on the local model and on
a remote upstream, per-line validation errors, cancel, idempotency keys, and a batch that goes
on after its server was killed without sending any stored request again."""

from __future__ import annotations

import json

import openai
import pytest
import requests

from batch_support import (
    CannedUpstream, UPSTREAM_MODEL, batch_run_yaml, chat_line, jsonl, upload_jsonl, wait_for,
)
from e2e_support import SERVED_MODEL, Server, assert_openai_error
from memory_support import postgres_database
from replica_support import RoundRobinProxy

LOCAL_MODEL = f"candle/{SERVED_MODEL}"


@pytest.fixture(scope="module")
def upstream():
    up = CannedUpstream()
    yield up
    up.stop()


def canned_server(tmp_path_factory, llama_stack_bin, upstream, name: str,
                  batches_config: dict | None = None, extra_env: dict | None = None,
                  responses: bool = False) -> Server:
    directory = tmp_path_factory.mktemp(name)
    run_yaml = batch_run_yaml(directory, batches_config=batches_config, responses=responses)
    return Server(name=name, binary=llama_stack_bin, run_config=str(run_yaml),
                  env={"UPSTREAM_URL": upstream.url, **(extra_env or {})},
                  log_path=directory / "server.log").start()


@pytest.fixture(scope="module")
def remote(tmp_path_factory, llama_stack_bin, upstream):
    server = canned_server(tmp_path_factory, llama_stack_bin, upstream, "batches-remote")
    yield server
    server.stop()


def sdk(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def test_chat_batch_on_the_local_model(server):
    client = sdk(server)
    lines = [chat_line(f"req-{i}", f"Say {i}", model=LOCAL_MODEL, max_tokens=4) for i in range(3)]
    # Valid as a line, refused when it runs: a failed request, not a failed batch.
    lines.append(chat_line("bad-temperature", "Hi", model=LOCAL_MODEL, temperature="hot"))
    upload = upload_jsonl(client, lines)
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "local"})
    assert batch.status == "validating" and batch.object == "batch"
    assert batch.metadata == {"job": "local"} and batch.expires_at == batch.created_at + 86400

    done = wait_for(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed,
            done.request_counts.failed) == (4, 3, 1)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    output = jsonl(client, done.output_file_id)
    assert sorted(r["custom_id"] for r in output) == ["req-0", "req-1", "req-2"]
    for result in output:
        assert result["response"]["status_code"] == 200 and result["error"] is None
        # Upstream writes the answer as JSON text.
        body = json.loads(result["response"]["body"])
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["role"] == "assistant"
    errors = jsonl(client, done.error_file_id)
    assert [e["custom_id"] for e in errors] == ["bad-temperature"]
    assert errors[0]["error"]["code"] == "invalid_request_error" and "temperature" in errors[0]["error"]["message"]
    assert client.files.retrieve(done.output_file_id).purpose == "batch"

    listed = client.batches.list(limit=100)
    assert batch.id in [b.id for b in listed.data]


def test_completions_and_embeddings_on_a_remote_upstream(remote, upstream):
    client = sdk(remote)
    lines = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
              "body": {"model": UPSTREAM_MODEL, "prompt": f"complete {i}", "max_tokens": 5}}
             for i in range(5)]
    lines.append({"custom_id": "refused", "method": "POST", "url": "/v1/completions",
                  "body": {"model": UPSTREAM_MODEL, "prompt": "fail-upstream"}})
    # Turned away for load once: the batch waits and tries again, and it counts as done.
    lines.append({"custom_id": "busy", "method": "POST", "url": "/v1/completions",
                  "body": {"model": UPSTREAM_MODEL, "prompt": "busy-once"}})
    done = wait_for(client, client.batches.create(
        input_file_id=upload_jsonl(client, lines).id, endpoint="/v1/completions",
        completion_window="24h").id)
    assert done.status == "completed"
    assert (done.request_counts.completed, done.request_counts.failed) == (6, 1)
    texts = {r["custom_id"]: json.loads(r["response"]["body"])["choices"][0]["text"]
             for r in jsonl(client, done.output_file_id)}
    assert texts == {**{f"c{i}": f"echo: complete {i}" for i in range(5)}, "busy": "echo: busy-once"}
    assert upstream.seen["busy-once"] == 2
    assert jsonl(client, done.error_file_id)[0]["custom_id"] == "refused"

    embed = [{"custom_id": f"e{i}", "method": "POST", "url": "/v1/embeddings",
              "body": {"model": "canned-embed", "input": [f"text {i}", "more"]}} for i in range(2)]
    done = wait_for(client, client.batches.create(
        input_file_id=upload_jsonl(client, embed).id, endpoint="/v1/embeddings",
        completion_window="24h").id)
    assert done.status == "completed" and done.error_file_id is None
    for result in jsonl(client, done.output_file_id):
        body = json.loads(result["response"]["body"])
        assert body["object"] == "list" and len(body["data"]) == 2


def test_input_problems_are_reported_per_line(remote):
    client = sdk(remote)
    missing = chat_line("no-url", "x")
    del missing["url"]
    lines = "\n".join([
        json.dumps(chat_line("ok", "fine")),
        "{not json",
        json.dumps(chat_line("s", "x", stream=True)),
        json.dumps(chat_line("m", "x", model="no-such-model")),
        json.dumps(missing),
        json.dumps({**chat_line("u", "x"), "url": "/v1/embeddings"}),
    ])
    done = wait_for(client, client.batches.create(
        input_file_id=upload_jsonl(client, lines).id, endpoint="/v1/chat/completions",
        completion_window="24h").id)
    assert done.status == "failed" and done.failed_at
    found = [(e.code, e.line, e.param) for e in done.errors.data]
    assert found == [
        ("invalid_json_line", 2, None),
        ("streaming_unsupported", 3, "body.stream"),
        ("model_not_found", 4, "body.model"),
        ("missing_required_parameter", 5, "url"),
        ("invalid_url", 6, "url"),
    ]
    assert "no-such-model" in done.errors.data[2].message
    assert done.output_file_id is None and done.request_counts.completed == 0

    gone = wait_for(client, client.batches.create(
        input_file_id="file-does-not-exist", endpoint="/v1/chat/completions",
        completion_window="24h").id)
    assert gone.status == "failed"
    assert gone.errors.data[0].param == "input_file_id"
    assert "cannot find file" in gone.errors.data[0].message.lower()


def test_bad_requests_get_a_4xx_naming_the_problem(remote):
    client = sdk(remote)
    base = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    for change, status, words in [
        ({"endpoint": "/v1/invalid/endpoint"}, 400, ["/v1/invalid/endpoint", "supported values"]),
        ({"completion_window": "1h"}, 400, ["completion_window"]),
        ({"metadata": {"tags": ["a"]}}, 400, ["tags", "string"]),
        ({"input_file_id": None}, 400, ["input_file_id"]),
    ]:
        body = {k: v for k, v in {**base, **change}.items() if v is not None}
        resp = requests.post(f"{remote.url}/v1/batches", json=body, timeout=30)
        error = assert_openai_error(resp, status)
        assert all(w in json.dumps(error).lower() for w in words), (change, error)

    for method, path in [("get", "/v1/batches/batch_missing"), ("post", "/v1/batches/batch_missing/cancel")]:
        resp = requests.request(method, f"{remote.url}{path}", timeout=30)
        assert "batch_missing" in json.dumps(assert_openai_error(resp, 404))
    resp = requests.get(f"{remote.url}/v1/batches?limit=0", timeout=30)
    assert_openai_error(resp, 400)


def test_idempotency_key_answers_the_first_batch_and_refuses_other_parameters(remote):
    client = sdk(remote)
    upload = upload_jsonl(client, [chat_line("one", "idem")])
    first = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"a": "1"},
                                  extra_body={"idempotency_key": "nightly-42"})
    again = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"a": "1"},
                                  extra_body={"idempotency_key": "nightly-42"})
    assert again.id == first.id and again.created_at == first.created_at
    with pytest.raises(openai.ConflictError) as conflict:
        client.batches.create(input_file_id="file-other", endpoint="/v1/chat/completions",
                              completion_window="24h", extra_body={"idempotency_key": "nightly-42"})
    assert "idempotency key" in str(conflict.value).lower()
    done = wait_for(client, first.id)
    assert done.status == "completed"
    with pytest.raises(openai.ConflictError) as late:
        client.batches.cancel(first.id)
    assert "cannot cancel" in str(late.value).lower()


def test_cancel_stops_the_batch_and_keeps_what_was_done(tmp_path_factory, llama_stack_bin):
    slow = CannedUpstream(delay_s=0.3)
    server = canned_server(tmp_path_factory, llama_stack_bin, slow, "batches-cancel",
                           batches_config={"max_concurrent_requests_per_batch": 1})
    try:
        client = sdk(server)
        upload = upload_jsonl(client, [chat_line(f"r{i}", f"cancel {i}") for i in range(40)])
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        wait_for(client, batch.id, until=lambda b: b.request_counts.completed >= 2)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
        done = wait_for(client, batch.id)
        assert done.status == "cancelled" and done.cancelled_at
        kept = jsonl(client, done.output_file_id)
        assert 2 <= len(kept) < 40 and done.request_counts.completed == len(kept)
        assert sum(slow.seen.values()) < 40
        assert client.batches.cancel(batch.id).status == "cancelled"
    finally:
        server.stop()
        slow.stop()


def test_a_killed_server_resumes_its_batch_without_resending_stored_requests(
        tmp_path_factory, llama_stack_bin):
    slow = CannedUpstream(delay_s=0.15)
    server = canned_server(tmp_path_factory, llama_stack_bin, slow, "batches-resume",
                           batches_config={"max_concurrent_requests_per_batch": 2},
                           extra_env={"LLAMA_STACK_LEASE_SECONDS": "1.5"})
    try:
        client = sdk(server)
        texts = [f"resume {i}" for i in range(30)]
        upload = upload_jsonl(client, [chat_line(f"r{i}", t) for i, t in enumerate(texts)])
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        wait_for(client, batch.id, until=lambda b: b.request_counts.completed >= 6)
        server.kill()
        server.start()
        client = sdk(server)
        done = wait_for(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts.completed == 30
        output = jsonl(client, done.output_file_id)
        assert sorted(r["custom_id"] for r in output) == sorted(f"r{i}" for i in range(30))
        # Only the requests under way at the kill (at most two) may have been sent again.
        assert all(slow.seen[t] >= 1 for t in texts)
        assert sum(slow.seen[t] - 1 for t in texts) <= 2, slow.seen
    finally:
        server.stop()
        slow.stop()


def test_responses_batches_and_openai_shaped_bodies(tmp_path_factory, llama_stack_bin, upstream,
                                                    remote):
    server = canned_server(tmp_path_factory, llama_stack_bin, upstream, "batches-object",
                           batches_config={"response_body": "object"}, responses=True)
    try:
        client = sdk(server)
        done = wait_for(client, client.batches.create(
            input_file_id=upload_jsonl(client, [chat_line("o", "object body")]).id,
            endpoint="/v1/chat/completions", completion_window="24h").id)
        body = jsonl(client, done.output_file_id)[0]["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "echo: object body"

        lines = [{"custom_id": f"resp{i}", "method": "POST", "url": "/v1/responses",
                  "body": {"model": UPSTREAM_MODEL, "input": f"respond {i}"}} for i in range(3)]
        lines.append({"custom_id": "bg", "method": "POST", "url": "/v1/responses",
                      "body": {"model": UPSTREAM_MODEL, "input": "x", "background": True}})
        refused = wait_for(client, client.batches.create(
            input_file_id=upload_jsonl(client, lines).id, endpoint="/v1/responses",
            completion_window="24h").id)
        assert [(e.line, e.param) for e in refused.errors.data] == [(4, "body.background")]
        done = wait_for(client, client.batches.create(
            input_file_id=upload_jsonl(client, lines[:3]).id, endpoint="/v1/responses",
            completion_window="24h").id)
        assert done.status == "completed" and done.request_counts.completed == 3, done
        for result in jsonl(client, done.output_file_id):
            response = result["response"]["body"]
            assert response["object"] == "response" and response["status"] == "completed"
            i = result["custom_id"].removeprefix("resp")
            assert response["output"][0]["content"][0]["text"] == f"echo: respond {i}"
            # Stored like any other response.
            assert client.responses.retrieve(response["id"]).id == response["id"]
    finally:
        server.stop()
    # A distribution without the responses API refuses the endpoint at once.
    resp = requests.post(f"{remote.url}/v1/batches", json={
        "input_file_id": "file-x", "endpoint": "/v1/responses", "completion_window": "24h"},
        timeout=30)
    assert "responses" in assert_openai_error(resp, 400)["message"]


def test_a_batch_of_a_killed_replica_is_finished_by_another(tmp_path_factory, llama_stack_bin):
    """Two replicas on one PostgreSQL (records and file bytes in it), each with its own empty
    directory, behind a round-robin proxy; the replica that took the batch is killed with
    SIGKILL while the batch runs."""
    db = postgres_database("replica_batches")
    pg = {"host": db["POSTGRES_HOST"], "port": int(db["POSTGRES_PORT"]), "db": db["POSTGRES_DB"],
          "user": db["POSTGRES_USER"], "password": db["POSTGRES_PASSWORD"]}
    slow = CannedUpstream(delay_s=0.15)
    replicas: list[Server] = []
    proxy = None
    try:
        for name in ("batch-replica-a", "batch-replica-b"):
            directory = tmp_path_factory.mktemp(name)
            run_yaml = batch_run_yaml(
                directory, batches_config={"max_concurrent_requests_per_batch": 2},
                metadata_store={"type": "postgres", **pg},
                files={"provider_id": "pg", "provider_type": "remote::postgres", "config": pg})
            replicas.append(Server(name=name, binary=llama_stack_bin, run_config=str(run_yaml),
                                   env={"UPSTREAM_URL": slow.url, "LLAMA_STACK_LEASE_SECONDS": "1.5"},
                                   log_path=directory / "server.log").start())
        proxy = RoundRobinProxy([r.url for r in replicas])
        client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="none", max_retries=0)
        texts = [f"replica {i}" for i in range(30)]
        upload = upload_jsonl(client, [chat_line(f"r{i}", t) for i, t in enumerate(texts)])
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        runner = next(i for m, p, i in proxy.routed if m == "POST" and p == "/v1/batches")
        wait_for(client, batch.id, until=lambda b: b.request_counts.completed >= 4)
        replicas[runner].kill()
        done = wait_for(client, batch.id, timeout=60)
        assert done.status == "completed" and done.request_counts.completed == 30, done
        output = jsonl(client, done.output_file_id)
        assert sorted(r["custom_id"] for r in output) == sorted(f"r{i}" for i in range(30))
        assert sum(slow.seen[t] - 1 for t in texts) <= 2, slow.seen
        assert "Taking up a batch left unfinished" in replicas[1 - runner].log_tail(200)
    finally:
        if proxy:
            proxy.stop()
        for server in replicas:
            server.kill()
        slow.stop()
