"""Health, version, providers (ProviderInfo, config redaction) and inspect routes (§1.9)."""

from __future__ import annotations

import json
import os
import subprocess

import llama_stack_client
import pytest
import requests
import yaml
from llama_stack_client import LlamaStackClient

from e2e_support import (
    HTTP_TIMEOUT_S,
    PROVIDER_ID,
    PROVIDER_TYPE,
    REPO_ROOT,
    assert_classic_error,
)

HEALTH_STATUSES = {"OK", "Error", "Not Implemented"}
PROVIDER_INFO_KEYS = {"api", "provider_id", "provider_type", "config", "health"}


def test_health_is_ok(client, base_url):
    assert client.inspect.health().status == "OK"
    resp = requests.get(f"{base_url}/v1/health", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"status": "OK"}


def test_version_is_reported(client, base_url):
    assert client.inspect.version().version.strip()
    body = requests.get(f"{base_url}/v1/version", timeout=HTTP_TIMEOUT_S).json()
    assert set(body) == {"version"} and isinstance(body["version"], str) and body["version"]


def test_trailing_slash_base_url_is_tolerated(server):
    # Clients given "http://host:port/" request "//v1/..." (§9).
    slashed = LlamaStackClient(base_url=server.url + "/", timeout=HTTP_TIMEOUT_S, max_retries=0)
    assert slashed.inspect.health().status == "OK"
    assert any(m.provider_id == PROVIDER_ID for m in slashed.models.list())


def test_providers_list_has_candle_provider_info(client, base_url, tiny_model_dir):
    providers = client.providers.list()
    candle = [p for p in providers if p.provider_id == PROVIDER_ID]
    assert len(candle) == 1, [p.provider_id for p in providers]
    info = candle[0]
    assert info.api == "inference"
    assert info.provider_type == PROVIDER_TYPE
    assert isinstance(info.config, dict)
    assert info.health["status"] in HEALTH_STATUSES

    raw = requests.get(f"{base_url}/v1/providers", timeout=HTTP_TIMEOUT_S).json()
    assert set(raw) == {"data"}
    for entry in raw["data"]:
        assert set(entry) == PROVIDER_INFO_KEYS, entry
        assert entry["health"]["status"] in HEALTH_STATUSES
    # The config is the run.yaml block after ${env.*} interpolation: the model path shows.
    candle_raw = next(e for e in raw["data"] if e["provider_id"] == PROVIDER_ID)
    assert str(tiny_model_dir) in json.dumps(candle_raw["config"])


def test_provider_retrieve_matches_list(client):
    listed = next(p for p in client.providers.list() if p.provider_id == PROVIDER_ID)
    got = client.providers.retrieve(PROVIDER_ID)
    assert got.to_dict() == listed.to_dict()


def test_unknown_provider_is_400_classic_error(client, base_url):
    resp = requests.get(f"{base_url}/v1/providers/no-such-provider", timeout=HTTP_TIMEOUT_S)
    detail = assert_classic_error(resp, 400)
    assert "no-such-provider" in json.dumps(detail)
    with pytest.raises(llama_stack_client.BadRequestError):
        client.providers.retrieve("no-such-provider")


def test_inspect_routes_lists_inference_routes(client, base_url):
    routes = client.routes.list()
    by_key = {(r.route, r.method): r for r in routes}
    for path in ("/v1/inference/chat-completion", "/v1/inference/completion"):
        assert (path, "POST") in by_key, sorted(by_key)
        assert PROVIDER_TYPE in by_key[(path, "POST")].provider_types
    assert ("/v1/models", "GET") in by_key
    assert ("/v1/health", "GET") in by_key

    raw = requests.get(f"{base_url}/v1/inspect/routes", timeout=HTTP_TIMEOUT_S).json()
    for entry in raw["data"]:
        assert set(entry) == {"route", "method", "provider_types"}, entry
        assert entry["route"].startswith("/v1")
        assert entry["method"] in {"GET", "POST", "DELETE", "PUT", "PATCH"}


# --- config redaction -------------------------------------------------------------------------

SECRET = "e2e-very-secret-token-5d1c"


def remote_provider_candidates(openai_base: str) -> list[tuple[str, dict, str]]:
    """Remote inference providers whose config carries a secret: (type, config, secret key)."""
    return [
        ("remote::vllm", {"url": openai_base, "api_token": SECRET}, "api_token"),
        ("remote::openai", {"api_key": SECRET}, "api_key"),
    ]


def test_provider_config_secrets_are_redacted(server, server_factory, llama_stack_bin, tmp_path):
    """A provider whose config holds a secret: ProviderInfo shows `********`, and the secret
    appears in neither the providers responses nor the server log."""
    base = yaml.safe_load((REPO_ROOT / "distributions/local/run.yaml").read_text())
    rejected = []
    for provider_type, config, secret_key in remote_provider_candidates(
        server.url + "/v1/openai/v1"
    ):
        run_config = dict(base)
        run_config["providers"] = dict(base["providers"])
        run_config["providers"]["inference"] = list(base["providers"]["inference"]) + [
            {"provider_id": "with-secret", "provider_type": provider_type, "config": config}
        ]
        path = tmp_path / f"run-{provider_type.split('::')[1]}.yaml"
        path.write_text(yaml.safe_dump(run_config))
        secret_server = server_factory(f"redaction-{provider_type.split('::')[1]}", run_config=str(path))
        check = subprocess.run(
            [str(llama_stack_bin), "validate", str(path)],
            cwd=REPO_ROOT,
            env={**os.environ, **secret_server.env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check.returncode != 0:
            rejected.append(f"{provider_type}: {check.stdout.strip()} {check.stderr.strip()}")
            continue
        secret_server.start()
        try:
            one = requests.get(f"{secret_server.url}/v1/providers/with-secret", timeout=HTTP_TIMEOUT_S)
            listed = requests.get(f"{secret_server.url}/v1/providers", timeout=HTTP_TIMEOUT_S)
            assert one.status_code == 200, one.text
            info = one.json()
            assert info["provider_type"] == provider_type
            assert info["config"][secret_key] == "********"
            for other_key, value in config.items():
                if other_key != secret_key:
                    assert info["config"][other_key] == value
            assert SECRET not in one.text
            assert SECRET not in listed.text
        finally:
            secret_server.stop()
        assert SECRET not in secret_server.log_path.read_text(errors="replace")
        return
    pytest.skip("no remote provider with a secret config field is available: " + " | ".join(rejected))
