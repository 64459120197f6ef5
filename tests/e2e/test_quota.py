"""Request quotas (`server.quota`) against the real binary: a budget per client per window,
429 with `Retry-After` past it, health checks never counted, and two servers on one metadata
store sharing the budget as replicas do.
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
import requests
import yaml

from e2e_support import LOCAL_RUN_YAML, SERVED_MODEL


def quota_run_yaml(tmp_path_factory, budget: int) -> str:
    config = yaml.safe_load(Path(LOCAL_RUN_YAML).read_text())
    config["server"] = {**(config.get("server") or {}), "quota": {
        # Upstream's shape; kvstore is accepted, counts live in the metadata store.
        "kvstore": {"type": "sqlite", "db_path": "/tmp/unused-quota.db"},
        "anonymous_max_requests": budget,
        "authenticated_max_requests": 1000,
        "period": "hour",
    }}
    path = tmp_path_factory.mktemp("quota") / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def test_a_client_over_its_budget_gets_429_until_the_window_ends(server_factory,
                                                                  tmp_path_factory):
    server = server_factory("quota", run_config=quota_run_yaml(tmp_path_factory, 3)).start()
    for _ in range(5):
        assert requests.get(f"{server.url}/v1/health").status_code == 200
    for _ in range(3):
        assert requests.get(f"{server.url}/v1/models").status_code == 200
    over = requests.get(f"{server.url}/v1/models")
    assert over.status_code == 429, over.text
    assert 0 < int(over.headers["Retry-After"]) <= 3600
    assert "Quota exceeded" in over.json()["error"]["message"]
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        oa.chat.completions.create(model=SERVED_MODEL, max_tokens=1,
                                   messages=[{"role": "user", "content": "hi"}])
    # Health checks are still answered.
    assert requests.get(f"{server.url}/v1/health").status_code == 200
    server.stop()


def test_replicas_on_one_store_share_the_budget(server_factory, tmp_path_factory, llama_stack_bin,
                                                tiny_model_dir):
    config = quota_run_yaml(tmp_path_factory, 4)
    first = server_factory("quota-a", run_config=config).start()
    second = server_factory("quota-b", run_config=config)
    # The same store directory: one registry database, as replicas share one PostgreSQL.
    second.env["SQLITE_STORE_DIR"] = first.env["SQLITE_STORE_DIR"]
    second.start()
    answers = [requests.get(f"{s.url}/v1/models").status_code
               for s in (first, second, first, second, first, second)]
    assert answers == [200, 200, 200, 200, 429, 429]
    first.stop()
    second.stop()
