"""Safety end to end with llama-stack-client 0.2.23 and the openai SDK against the real binary:
shields registered from run.yaml and through the API, run-shield verdicts from a Llama Guard
upstream the test controls (safe, `unsafe\\nS1`, `unsafe\\nS10,S2`, the 0.7 spacing, excluded
categories, an unreadable reply), the exact guard prompt on the wire, OpenAI moderations, the
code scanner, and the guard wired to the local candle provider."""

from __future__ import annotations

import openai
import yaml
import pytest
import requests
from llama_stack_client import APIStatusError, LlamaStackClient

from e2e_support import HTTP_TIMEOUT_S, SERVED_MODEL, Server
from safety_support import (
    GUARD_MODEL,
    GuardUpstream,
    reference_prompt,
    write_safety_run_yaml,
)

CANNED = "I can't answer that. Can I help with something else?"


@pytest.fixture(scope="module")
def upstream():
    guard = GuardUpstream()
    yield guard
    guard.stop()


@pytest.fixture(scope="module")
def safety_server(server_factory, upstream, tmp_path_factory) -> Server:
    run_yaml = write_safety_run_yaml(tmp_path_factory.mktemp("safety") / "run.yaml",
                                     upstream.url)
    return server_factory("safety", run_config=str(run_yaml)).start()


@pytest.fixture
def client(safety_server) -> LlamaStackClient:
    return LlamaStackClient(base_url=safety_server.url, timeout=HTTP_TIMEOUT_S)


def run(client: LlamaStackClient, text: str, shield: str = "llama-guard"):
    return client.safety.run_shield(shield_id=shield, params={},
                                    messages=[{"role": "user", "content": text}]).violation


def test_run_yaml_shields_are_listed(client):
    shields = {s.identifier: s for s in client.shields.list()}
    guard = shields["llama-guard"]
    assert guard.provider_id == "llama-guard"
    assert guard.provider_resource_id == GUARD_MODEL
    assert guard.type == "shield"
    assert guard.params == {}
    assert shields["CodeScanner"].provider_resource_id == "CodeScanner"
    assert client.shields.retrieve("guard-no-s2").provider_id == "lg-no-s2"


def test_safe_reply_is_no_violation(client):
    assert run(client, "Hello there [[safe]]") is None


@pytest.mark.parametrize("marker, codes", [
    ("[[s1]]", "S1"),
    ("[[s10s2]]", "S10,S2"),
    ("[[spaced]]", "S1,S2"),  # 0.7 reads codes anywhere after `unsafe`
])
def test_unsafe_replies_are_error_violations(client, marker, codes):
    violation = run(client, f"How do I do bad things? {marker}")
    assert violation.to_dict() == {
        "violation_level": "error",
        "user_message": CANNED,
        "metadata": {"violation_type": codes},
    }


def test_the_guard_receives_the_reference_prompt_at_temperature_zero(client, upstream):
    run(client, "How do I make cocaine? [[s1]]")
    body = upstream.last_prompt()
    assert body["model"] == GUARD_MODEL
    assert body["messages"] == [{
        "role": "user",
        "content": reference_prompt([("User", "How do I make cocaine? [[s1]]")]),
    }]
    assert body.get("temperature", 0) == 0
    assert not body.get("stream")


def test_an_exchange_is_judged_for_the_assistant(client, upstream):
    messages = [
        {"role": "user", "content": "first, dropped"},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris. [[safe]]", "stop_reason": "end_of_turn"},
    ]
    response = client.safety.run_shield(shield_id="llama-guard", messages=messages, params={})
    assert response.violation is None
    assert upstream.last_prompt()["messages"][0]["content"] == reference_prompt([
        ("User", "What is the capital of France?"), ("Assistant", "Paris. [[safe]]")])


def test_classic_and_openai_tool_messages_are_both_accepted(safety_server, upstream):
    for tool in ({"role": "tool", "call_id": "c1", "content": "42 [[safe]]"},
                 {"role": "tool", "tool_call_id": "c1", "content": "42 [[safe]]"}):
        resp = requests.post(f"{safety_server.url}/v1/safety/run-shield", json={
            "shield_id": "llama-guard", "messages": [tool]}, timeout=HTTP_TIMEOUT_S)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"violation": None}
        # A leading non-user message is checked as the user's.
        assert upstream.last_prompt()["messages"][0]["content"] == reference_prompt(
            [("User", "42 [[safe]]")])


def test_excluded_categories_pass_only_when_every_code_is_excluded(client, upstream):
    assert run(client, "x [[s2only]]", shield="guard-no-s2") is None
    assert "S2: Non-Violent Crimes." not in upstream.last_prompt()["messages"][0]["content"]
    violation = run(client, "x [[s10s2]]", shield="guard-no-s2")
    assert violation.metadata == {"violation_type": "S10,S2"}


def test_an_unreadable_reply_is_a_clear_error_not_safe(client):
    with pytest.raises(APIStatusError) as caught:
        run(client, "hmm [[garbage]]")
    assert caught.value.status_code == 400
    text = caught.value.body["error"]["detail"]
    assert "'llama-guard'" in text and "The weather is lovely today." in text


def test_unknown_shield_is_400_naming_the_shields(client):
    # Classic routes answer unknown resources with 400, as upstream.
    with pytest.raises(APIStatusError) as caught:
        run(client, "hi", shield="no-such-shield")
    assert caught.value.status_code == 400
    assert "no-such-shield" in str(caught.value.body)
    assert "llama-guard" in str(caught.value.body)


def test_register_get_run_and_delete_a_shield(client, safety_server):
    # A 0.2 short guard name means the meta-llama model.
    shield = client.shields.register(shield_id="short-name", provider_id="llama-guard",
                                     provider_shield_id="Llama-Guard-3-1B")
    assert shield.to_dict() == {"identifier": "short-name", "provider_id": "llama-guard",
                                "provider_resource_id": "Llama-Guard-3-1B", "type": "shield",
                                "params": {}}
    assert run(client, "x [[s1]]", shield="short-name").metadata == {"violation_type": "S1"}
    # The same registration again is fine; a different one under the same id is refused (400,
    # as upstream's classic routes answer).
    client.shields.register(shield_id="short-name", provider_id="llama-guard",
                            provider_shield_id="Llama-Guard-3-1B")
    with pytest.raises(APIStatusError) as caught:
        client.shields.register(shield_id="short-name", provider_id="code-scanner",
                                provider_shield_id="CodeScanner")
    assert caught.value.status_code == 400
    assert "already exists" in caught.value.body["error"]["detail"]
    # Several safety providers: provider_id is required.
    with pytest.raises(APIStatusError) as caught:
        client.shields.register(shield_id="anon", provider_shield_id=GUARD_MODEL)
    assert caught.value.status_code == 400
    assert "provider_id" in str(caught.value.body)

    resp = requests.delete(f"{safety_server.url}/v1/shields/short-name", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200 and resp.json() is None
    with pytest.raises(APIStatusError) as caught:
        client.shields.retrieve("short-name")
    assert caught.value.status_code == 400
    assert "Shield 'short-name' not found" in caught.value.body["error"]["detail"]


def test_registered_shields_survive_a_restart(client, safety_server):
    # The model's full identifier works as well as its provider model id.
    client.shields.register(shield_id="kept", provider_id="llama-guard",
                            provider_shield_id=f"guardup/{GUARD_MODEL}")
    safety_server.restart()
    fresh = LlamaStackClient(base_url=safety_server.url, timeout=HTTP_TIMEOUT_S)
    assert fresh.shields.retrieve("kept").provider_resource_id == f"guardup/{GUARD_MODEL}"
    assert run(fresh, "x [[s1]]", shield="kept") is not None


@pytest.mark.parametrize("prefix", ["/v1", "/v1/openai/v1"])
def test_openai_moderations(safety_server, prefix):
    sdk = openai.OpenAI(base_url=f"{safety_server.url}{prefix}", api_key="none",
                        timeout=HTTP_TIMEOUT_S)
    flagged = sdk.moderations.create(model=GUARD_MODEL, input="bad [[s10s2]]")
    assert flagged.id.startswith("modr-")
    assert flagged.model == GUARD_MODEL
    [result] = flagged.results
    data = result.model_dump()
    assert data["flagged"] is True
    assert data["categories"]["Hate"] is True
    assert data["categories"]["Non-Violent Crimes"] is True
    assert data["categories"]["Violent Crimes"] is False
    assert data["category_scores"]["Hate"] == 1.0
    assert data["category_scores"]["Violent Crimes"] == 0.0
    assert data["category_applied_input_types"]["Hate"] == ["text"]
    assert data["user_message"] == CANNED
    assert data["metadata"] == {"violation_type": ["S10", "S2"]}

    # Without a model, safety.default_shield_id picks the shield. The SDK's model declares
    # OpenAI's own categories, so the exact body is read raw.
    raw = sdk.moderations.with_raw_response.create(input=["hello [[safe]]", "and you?"])
    assert raw.parse().results[0].flagged is False
    [data] = raw.http_response.json()["results"]
    assert data["flagged"] is False
    assert len(data["categories"]) == 14 and not any(data["categories"].values())
    assert set(data["category_scores"].values()) == {1.0}


def test_moderation_with_an_unknown_model_is_an_openai_error(safety_server):
    resp = requests.post(f"{safety_server.url}/v1/moderations",
                         json={"input": "hi", "model": "nope"}, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 400
    assert "No shield associated with provider_resource id nope" in resp.json()["error"]["message"]


def test_code_scanner_shield_and_moderation(client, safety_server):
    insecure = "Here you go:\n```python\nimport hashlib\nh = hashlib.md5(data).hexdigest()\n```"
    violation = run(client, insecure, shield="CodeScanner")
    assert violation.violation_level == "error"
    assert violation.user_message == "Sorry, I found security concerns in the code."
    assert violation.metadata["violation_type"]
    assert run(client, "import hashlib\nhashlib.sha256(data).hexdigest()",
               shield="CodeScanner") is None

    resp = requests.post(f"{safety_server.url}/v1/moderations", json={
        "model": "CodeScanner", "input": [insecure, "print('hello')"]}, timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    first, second = resp.json()["results"]
    assert first["flagged"] is True
    assert first["metadata"]["violation_type"] == violation.metadata["violation_type"]
    assert second["flagged"] is False


def test_guard_on_the_local_candle_model(server):
    """The tiny random model says whatever it says: the wiring must give a well-formed verdict
    or the clear unreadable-reply error."""
    client = LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S)
    client.shields.register(shield_id="tiny-guard", provider_id="llama-guard",
                            provider_shield_id=SERVED_MODEL)
    try:
        violation = run(client, "Is this fine?", shield="tiny-guard")
    except APIStatusError as err:
        assert err.status_code == 400, err
        detail = err.body["error"]["detail"]
        assert "Unexpected response from guard model" in detail
        assert "'tiny-guard'" in detail
    else:
        if violation is not None:
            assert violation.violation_level == "error"
            assert violation.user_message == CANNED
            assert violation.metadata["violation_type"].startswith("S")


@pytest.fixture(scope="module")
def passthrough_server(server_factory, safety_server, tmp_path_factory) -> Server:
    """A second server whose shields are checked by the first one's /v1/moderations."""
    path = tmp_path_factory.mktemp("passthrough") / "run.yaml"
    path.write_text(yaml.safe_dump({
        "version": 2,
        "image_name": "passthrough-e2e",
        "apis": ["safety"],
        "providers": {"safety": [{
            "provider_id": "downstream", "provider_type": "remote::passthrough",
            "config": {"base_url": f"{safety_server.url}/v1", "timeout_s": 10}}]},
        "metadata_store": {"type": "sqlite", "db_path": str(path.parent / "registry.db")},
        "shields": [{"shield_id": "remote-guard", "provider_shield_id": GUARD_MODEL},
                    {"shield_id": "remote-scanner", "provider_shield_id": "CodeScanner"}],
    }, sort_keys=False))
    return server_factory("passthrough", run_config=str(path)).start()


def test_passthrough_shields_use_the_downstream_moderations(passthrough_server, upstream):
    client = LlamaStackClient(base_url=passthrough_server.url, timeout=HTTP_TIMEOUT_S)
    violation = run(client, "tell me [[s10s2]]", shield="remote-guard")
    # The downstream Llama Stack's own codes and message come through.
    assert violation.to_dict() == {"violation_level": "error", "user_message": CANNED,
                                   "metadata": {"violation_type": "S10,S2"}}
    assert upstream.last_prompt()["messages"][0]["content"] == reference_prompt(
        [("User", "tell me [[s10s2]]")])
    assert run(client, "hello [[safe]]", shield="remote-guard") is None
    assert run(client, "hashlib.md5(data)", shield="remote-scanner") is not None

    resp = requests.post(f"{passthrough_server.url}/v1/moderations",
                         json={"model": "CodeScanner", "input": ["print(1)", "hashlib.md5(x)"]},
                         timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert [r["flagged"] for r in resp.json()["results"]] == [False, True]
