"""Background jobs across replicas: two replicas of the real binary on one PostgreSQL; the one
running a background response is killed with SIGKILL, and the other takes the response over
once its lease runs out and completes it.
"""

from __future__ import annotations

import time

import openai

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from memory_support import fetch_minilm, postgres_database

# A short lease so the takeover comes within seconds; the server reads it from the environment.
LEASE_S = 2.0


def test_a_background_response_of_a_killed_replica_is_finished_by_another(
        server_factory, tmp_path_factory):
    upstream = ToolCallingUpstream()
    try:
        db = postgres_database("replica_jobs")
        store = {"type": "postgres", "host": db["POSTGRES_HOST"], "port": int(db["POSTGRES_PORT"]),
                 "db": db["POSTGRES_DB"], "user": db["POSTGRES_USER"],
                 "password": db["POSTGRES_PASSWORD"]}
        path = tmp_path_factory.mktemp("replica-jobs") / "run.yaml"
        config = agents_run_yaml(path, upstream.url, fetch_minilm(), store)
        env = {"LLAMA_STACK_LEASE_SECONDS": str(LEASE_S)}
        a = server_factory("jobs-a", run_config=config, extra_env=env).start()
        b = server_factory("jobs-b", run_config=config, extra_env=env).start()
        on_a = openai.OpenAI(base_url=a.url + "/v1", api_key="none", max_retries=0)
        on_b = openai.OpenAI(base_url=b.url + "/v1", api_key="none", max_retries=0)

        upstream.slow_s = 3.0
        queued = on_a.responses.create(model=MODEL, input="Hi [[slow]]", background=True)
        time.sleep(0.5)
        assert on_b.responses.retrieve(queued.id).status in ("queued", "in_progress")
        a.kill()

        killed_at = time.monotonic()
        r = on_b.responses.retrieve(queued.id)
        while r.status in ("queued", "in_progress"):
            assert time.monotonic() - killed_at < 30, "replica B never finished the response"
            time.sleep(0.2)
            r = on_b.responses.retrieve(queued.id)
        assert r.status == "completed" and r.output_text == GREETING
        b.stop()
    finally:
        upstream.stop()
