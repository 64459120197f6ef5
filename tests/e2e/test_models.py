"""Models API (§1.5): list, get (ids with `/`), register, delete, persistence across restarts,
and the OpenAI model list."""

from __future__ import annotations

import uuid

import llama_stack_client
import openai
import pytest
import requests

from e2e_support import (
    HTTP_TIMEOUT_S,
    MODEL_IDENTIFIER,
    OPENAI_PREFIXES,
    PROVIDER_ID,
    SERVED_MODEL,
    assert_classic_error,
    assert_token_metrics,
)

MODEL_KEYS = {"identifier", "provider_resource_id", "provider_id", "type", "metadata", "model_type"}
GREEDY_4 = {"strategy": {"type": "greedy"}, "max_tokens": 4}


def classic_fields(model: dict) -> dict:
    """The classic Model fields (list entries may also carry OpenAI model fields)."""
    return {k: model.get(k) for k in MODEL_KEYS}


def unique_alias() -> str:
    # Contains '/' on purpose: such ids must work as path parameters.
    return f"e2e/alias-{uuid.uuid4().hex[:8]}"


def test_served_model_is_listed_with_provider_prefixed_identifier(client):
    models = {m.identifier: m for m in client.models.list()}
    assert MODEL_IDENTIFIER in models, sorted(models)
    model = models[MODEL_IDENTIFIER]
    assert model.provider_id == PROVIDER_ID
    assert model.provider_resource_id == SERVED_MODEL
    assert model.api_model_type == "llm"
    assert model.type == "model"
    assert isinstance(model.metadata, dict)


def test_models_list_wire_shape(base_url):
    resp = requests.get(f"{base_url}/v1/models", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"data"}
    assert body["data"], body
    for model in body["data"]:
        assert set(model) >= MODEL_KEYS, model
        assert model["type"] == "model"
        assert model["model_type"] in {"llm", "embedding"}


def test_get_model_by_identifier_containing_slashes(client, base_url):
    model = client.models.retrieve(MODEL_IDENTIFIER)
    assert model.identifier == MODEL_IDENTIFIER
    resp = requests.get(f"{base_url}/v1/models/{MODEL_IDENTIFIER}", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.json()["identifier"] == MODEL_IDENTIFIER
    assert resp.json()["provider_resource_id"] == SERVED_MODEL


def test_get_model_by_bare_provider_resource_id(client):
    model = client.models.retrieve(SERVED_MODEL)
    assert model.identifier == MODEL_IDENTIFIER


def test_unknown_model_get_is_400_classic_error(client, base_url):
    resp = requests.get(f"{base_url}/v1/models/no-such/model", timeout=HTTP_TIMEOUT_S)
    detail = assert_classic_error(resp, 400)
    assert "no-such/model" in str(detail)
    with pytest.raises(llama_stack_client.BadRequestError):
        client.models.retrieve("no-such/model")


def test_register_alias_then_use_get_and_delete_it(client, base_url):
    alias = unique_alias()
    registered = client.models.register(
        model_id=alias, provider_id=PROVIDER_ID, provider_model_id=SERVED_MODEL, metadata={"owner": "e2e"}
    )
    try:
        # model_id != provider_model_id: the identifier is the model_id as given.
        assert registered.identifier == alias
        assert registered.provider_resource_id == SERVED_MODEL
        assert registered.provider_id == PROVIDER_ID
        assert registered.api_model_type == "llm"
        assert registered.metadata == {"owner": "e2e"}

        assert alias in {m.identifier for m in client.models.list()}
        assert classic_fields(client.models.retrieve(alias).to_dict()) == classic_fields(registered.to_dict())

        # The alias serves completions.
        resp = client.inference.chat_completion(
            model_id=alias,
            messages=[{"role": "user", "content": "Hello"}],
            sampling_params=GREEDY_4,
        )
        assert_token_metrics(resp.metrics, max_tokens=4)
    finally:
        deleted = requests.delete(f"{base_url}/v1/models/{alias}", timeout=HTTP_TIMEOUT_S)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() is None
    assert alias not in {m.identifier for m in client.models.list()}
    assert_classic_error(requests.get(f"{base_url}/v1/models/{alias}", timeout=HTTP_TIMEOUT_S), 400)


def test_unregister_via_client(client):
    alias = unique_alias()
    client.models.register(model_id=alias, provider_id=PROVIDER_ID, provider_model_id=SERVED_MODEL)
    client.models.unregister(alias)
    with pytest.raises(llama_stack_client.BadRequestError):
        client.models.retrieve(alias)


def test_register_with_unknown_provider_is_400(base_url):
    resp = requests.post(
        f"{base_url}/v1/models",
        json={"model_id": unique_alias(), "provider_id": "no-such-provider", "provider_model_id": SERVED_MODEL},
        timeout=HTTP_TIMEOUT_S,
    )
    assert_classic_error(resp, 400)


def test_delete_unknown_model_is_400(base_url):
    resp = requests.delete(f"{base_url}/v1/models/no-such/model", timeout=HTTP_TIMEOUT_S)
    assert_classic_error(resp, 400)


def test_model_registry_persists_across_restarts(server_factory):
    srv = server_factory("persistence").start()
    client = lambda: llama_stack_client.LlamaStackClient(  # noqa: E731 (url changes per start)
        base_url=srv.url, timeout=HTTP_TIMEOUT_S, max_retries=0
    )
    keep, gone = unique_alias(), unique_alias()
    kept = client().models.register(
        model_id=keep, provider_id=PROVIDER_ID, provider_model_id=SERVED_MODEL, metadata={"n": 1}
    )
    client().models.register(model_id=gone, provider_id=PROVIDER_ID, provider_model_id=SERVED_MODEL)
    client().models.unregister(gone)

    # SIGTERM is a graceful shutdown: exit status 0.
    assert srv.restart() == 0

    after = {m.identifier: m for m in client().models.list()}
    assert keep in after, sorted(after)
    assert classic_fields(after[keep].to_dict()) == classic_fields(kept.to_dict())
    assert gone not in after
    assert MODEL_IDENTIFIER in after
    resp = client().inference.chat_completion(
        model_id=keep, messages=[{"role": "user", "content": "Hi"}], sampling_params=GREEDY_4
    )
    assert_token_metrics(resp.metrics, max_tokens=4)

    # Deleting, then restarting, keeps it deleted.
    client().models.unregister(keep)
    assert srv.restart() == 0
    remaining = {m.identifier for m in client().models.list()}
    assert keep not in remaining and gone not in remaining
    assert MODEL_IDENTIFIER in remaining
    assert srv.stop() == 0


def test_run_by_distribution_name_with_cli_env(server_factory):
    srv = server_factory("by-name", run_config="local", via_cli_env=True).start()
    models = requests.get(f"{srv.url}/v1/models", timeout=HTTP_TIMEOUT_S).json()["data"]
    assert MODEL_IDENTIFIER in {m["identifier"] for m in models}
    assert srv.stop() == 0


@pytest.mark.parametrize("prefix", OPENAI_PREFIXES)
def test_openai_sdk_lists_models(server, prefix):
    sdk = openai.OpenAI(base_url=server.url + prefix, api_key="none", max_retries=0)
    models = list(sdk.models.list())
    assert MODEL_IDENTIFIER in {m.id for m in models}
    for m in models:
        assert m.object == "model"
        assert isinstance(m.created, int)
        assert isinstance(m.owned_by, str)


def test_openai_model_list_wire_shape(base_url):
    raw = requests.get(f"{base_url}/v1/openai/v1/models", timeout=HTTP_TIMEOUT_S).json()
    assert raw.get("object", "list") == "list"
    assert raw["data"]
    for entry in raw["data"]:
        assert entry["object"] == "model"
        assert isinstance(entry["id"], str) and entry["id"]
        assert isinstance(entry["created"], int)
        assert isinstance(entry["owned_by"], str)
