"""OpenAI-compatible routes through the official `openai` SDK, on both base URLs
(`/v1/openai/v1` for 0.2.x clients and `/v1` for newer ones)."""

from __future__ import annotations

import pytest
import requests

from e2e_support import HTTP_TIMEOUT_S, MODEL_IDENTIFIER, OPENAI_PREFIXES, SERVED_MODEL, post_sse

MAX_TOKENS = 8
MESSAGES = [{"role": "user", "content": "Write a haiku about rust."}]
PROMPT = "Once upon a time"


def chat(sdk, **kwargs):
    args = {"model": MODEL_IDENTIFIER, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0}
    args.update(kwargs)
    return sdk.chat.completions.create(**args)


def complete(sdk, **kwargs):
    args = {"model": MODEL_IDENTIFIER, "prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0}
    args.update(kwargs)
    return sdk.completions.create(**args)


def assert_usage(usage, max_tokens=MAX_TOKENS):
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == max_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# --- chat completions -------------------------------------------------------------------------


def test_chat_completion(openai_client):
    resp = chat(openai_client)
    assert resp.object == "chat.completion"
    assert isinstance(resp.id, str) and resp.id
    assert isinstance(resp.created, int) and resp.created > 0
    assert isinstance(resp.model, str) and resp.model
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason == "length"
    assert_usage(resp.usage)


def test_chat_completion_ids_are_unique(openai_client):
    assert chat(openai_client).id != chat(openai_client).id


def test_chat_completion_by_bare_model_id(openai_client):
    by_bare = chat(openai_client, model=SERVED_MODEL)
    by_identifier = chat(openai_client)
    assert by_bare.choices[0].message.content == by_identifier.choices[0].message.content


@pytest.mark.parametrize("max_tokens", [1, 3])
def test_chat_completion_honours_max_tokens(openai_client, max_tokens):
    resp = chat(openai_client, max_tokens=max_tokens)
    assert_usage(resp.usage, max_tokens=max_tokens)
    assert resp.choices[0].finish_reason == "length"


def test_chat_temperature_zero_is_deterministic(openai_client):
    first = chat(openai_client).choices[0].message.content
    assert chat(openai_client).choices[0].message.content == first


def test_chat_same_seed_gives_same_sampled_output(openai_client):
    args = {"temperature": 0.9, "top_p": 0.9, "seed": 42}
    first = chat(openai_client, **args).choices[0].message.content
    assert chat(openai_client, **args).choices[0].message.content == first


def test_chat_stream_chunks_match_non_stream(openai_client):
    full = chat(openai_client)
    chunks = list(chat(openai_client, stream=True))
    assert chunks, "empty stream"
    ids = {c.id for c in chunks}
    assert len(ids) == 1 and next(iter(ids)), ids
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert isinstance(c.created, int) and c.created > 0
        assert len(c.choices) <= 1
    with_choice = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in with_choice)
    assert text == full.choices[0].message.content
    reasons = [c.choices[0].finish_reason for c in with_choice]
    assert reasons[-1] == "length"
    assert all(r is None for r in reasons[:-1]), reasons


def test_llama_stack_client_openai_chat_route(client):
    resp = client.chat.completions.create(
        model=MODEL_IDENTIFIER, messages=MESSAGES, max_tokens=MAX_TOKENS, temperature=0
    )
    assert resp.choices[0].message.role == "assistant"
    assert resp.choices[0].finish_reason == "length"
    # The 0.2.23 client's model has no typed `usage`; it keeps the field as received.
    assert resp.to_dict()["usage"]["completion_tokens"] == MAX_TOKENS


# --- completions ------------------------------------------------------------------------------


def test_completion(openai_client):
    resp = complete(openai_client)
    assert resp.object == "text_completion"
    assert isinstance(resp.id, str) and resp.id
    assert isinstance(resp.created, int) and resp.created > 0
    assert len(resp.choices) == 1
    assert resp.choices[0].index == 0
    assert isinstance(resp.choices[0].text, str)
    assert resp.choices[0].finish_reason == "length"
    assert_usage(resp.usage)


def test_completion_is_deterministic_and_seeded(openai_client):
    assert complete(openai_client).choices[0].text == complete(openai_client).choices[0].text
    args = {"temperature": 1.0, "top_p": 0.95, "seed": 7}
    assert complete(openai_client, **args).choices[0].text == complete(openai_client, **args).choices[0].text


def test_completion_stream_matches_non_stream(openai_client):
    full = complete(openai_client)
    chunks = list(complete(openai_client, stream=True))
    assert chunks, "empty stream"
    assert len({c.id for c in chunks}) == 1
    for c in chunks:
        assert c.object == "text_completion"
    with_choice = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in with_choice) == full.choices[0].text
    assert with_choice[-1].choices[0].finish_reason == "length"


# --- wire framing -----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", OPENAI_PREFIXES)
@pytest.mark.parametrize(
    "route,body",
    [
        ("/chat/completions", {"messages": MESSAGES}),
        ("/completions", {"prompt": PROMPT}),
    ],
    ids=["chat", "completions"],
)
def test_openai_stream_raw_sse_framing(base_url, prefix, route, body):
    sse = post_sse(
        f"{base_url}{prefix}{route}",
        {"model": MODEL_IDENTIFIER, "max_tokens": MAX_TOKENS, "temperature": 0, "stream": True, **body},
    )
    assert sse.content_type.startswith("text/event-stream")
    assert "[DONE]" not in sse.text
    assert not any(line.startswith("event:") for line in sse.text.splitlines())
    events = sse.events()
    expected_object = "chat.completion.chunk" if route == "/chat/completions" else "text_completion"
    assert all(e["object"] == expected_object for e in events), events


@pytest.mark.parametrize("prefix", OPENAI_PREFIXES)
def test_openai_chat_raw_response_fields(base_url, prefix):
    resp = requests.post(
        f"{base_url}{prefix}/chat/completions",
        json={"model": MODEL_IDENTIFIER, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0},
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert set(body["choices"][0]) >= {"index", "message", "finish_reason"}
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
