"""The Anthropic Messages API with the official anthropic SDK against the real binary: the
local engine on the generated model, and a remote upstream the test controls (tool use)."""

from __future__ import annotations

import anthropic
import pytest

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import SERVED_MODEL
from memory_support import fetch_minilm

WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


@pytest.fixture
def local(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)


def test_a_message_from_the_local_engine(local):
    message = local.messages.create(model=SERVED_MODEL, max_tokens=3, system="Be brief.",
                                    messages=[{"role": "user", "content": "Hi"}])
    assert message.type == "message" and message.role == "assistant"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3 and message.usage.input_tokens > 0
    counted = local.messages.count_tokens(model=SERVED_MODEL, system="Be brief.",
                                          messages=[{"role": "user", "content": "Hi"}])
    assert counted.input_tokens == message.usage.input_tokens


def test_a_streamed_message_from_the_local_engine(local):
    with local.messages.stream(model=SERVED_MODEL, max_tokens=4,
                               messages=[{"role": "user", "content": "Hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    assert final.stop_reason == "max_tokens"


def test_bad_requests_are_anthropic_errors(local):
    with pytest.raises(anthropic.BadRequestError) as caught:
        local.messages.create(model=SERVED_MODEL, max_tokens=0,
                              messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["type"] == "error"
    assert "max_tokens" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        local.messages.create(model="no-such-model", max_tokens=2,
                              messages=[{"role": "user", "content": "Hi"}])
    import requests

    missing = requests.post(f"{local.base_url}/v1/messages".replace("//v1", "/v1"), json={})
    assert missing.status_code == 400 and "model" in missing.json()["error"]["message"]


def test_tool_use_round_trip_on_a_remote_upstream(server_factory, tmp_path_factory):
    upstream = ToolCallingUpstream()
    try:
        path = tmp_path_factory.mktemp("anthropic-remote") / "run.yaml"
        store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
        srv = server_factory("anthropic-remote", run_config=agents_run_yaml(
            path, upstream.url, fetch_minilm(), store)).start()
        client = anthropic.Anthropic(base_url=srv.url, api_key="none", max_retries=0)
        asked = [{"role": "user", "content": "What is the weather? [[call]]"}]
        first = client.messages.create(model=MODEL, max_tokens=64, tools=[WEATHER],
                                       messages=asked)
        assert first.stop_reason == "tool_use"
        use = [b for b in first.content if b.type == "tool_use"][0]
        assert use.name == "get_weather" and use.input == {"city": "Paris"}
        second = client.messages.create(model=MODEL, max_tokens=64, tools=[WEATHER], messages=[
            *asked,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "sunny"}]},
        ])
        assert second.content[0].text == "The weather is sunny."
        with client.messages.stream(model=MODEL, max_tokens=64, tools=[WEATHER],
                                    messages=asked) as stream:
            streamed = stream.get_final_message()
        assert [b.type for b in streamed.content] == ["tool_use"]
        assert streamed.content[0].input == {"city": "Paris"}
        plain = client.messages.create(model=MODEL, max_tokens=64,
                                       messages=[{"role": "user", "content": "Hi"}])
        assert plain.content[0].text == GREETING and plain.stop_reason == "end_turn"
        srv.stop()
    finally:
        upstream.stop()
