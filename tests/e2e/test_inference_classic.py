"""Classic inference routes (§1.2): chat-completion and completion, non-stream and stream, via
the official client and as raw SSE bytes; sampling strategies, seeds, max_tokens and stop.

The model has random weights: its text is meaningless, so these tests check structure, token
accounting and determinism, never wording."""

from __future__ import annotations

import pytest
import requests

from e2e_support import (
    HTTP_TIMEOUT_S,
    MODEL_IDENTIFIER,
    SERVED_MODEL,
    assert_token_metrics,
    metrics_by_name,
    post_sse,
)

MAX_TOKENS = 8
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]
PROMPT = "The quick brown fox jumps over the lazy"
STOP_REASONS = {"end_of_turn", "end_of_message", "out_of_tokens"}


def greedy(max_tokens: int = MAX_TOKENS, **extra) -> dict:
    return {"strategy": {"type": "greedy"}, "max_tokens": max_tokens, **extra}


def chat(client, sampling_params=None, messages=MESSAGES, model_id=MODEL_IDENTIFIER, **kwargs):
    return client.inference.chat_completion(
        model_id=model_id,
        messages=messages,
        sampling_params=sampling_params or greedy(),
        **kwargs,
    )


def stream_events(client, **kwargs) -> list:
    return list(chat(client, stream=True, **kwargs))


# --- chat-completion, non-stream ----------------------------------------------------------------


def test_chat_completion_response_shape(client):
    resp = chat(client)
    msg = resp.completion_message
    assert msg.role == "assistant"
    assert isinstance(msg.content, str)
    assert msg.stop_reason in STOP_REASONS
    assert msg.tool_calls == []
    by_name = assert_token_metrics(resp.metrics, max_tokens=MAX_TOKENS)
    if msg.stop_reason == "out_of_tokens":
        assert by_name["completion_tokens"] == MAX_TOKENS


def test_chat_completion_raw_body_fields(base_url):
    resp = requests.post(
        f"{base_url}/v1/inference/chat-completion",
        json={"model_id": MODEL_IDENTIFIER, "messages": MESSAGES, "sampling_params": greedy()},
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) >= {"completion_message", "logprobs", "metrics"}
    assert body["logprobs"] is None
    assert set(body["completion_message"]) >= {"role", "content", "stop_reason", "tool_calls"}
    for metric in body["metrics"]:
        assert set(metric) == {"metric", "value", "unit"}, metric
        # Token counts are integers on the wire, as upstream serialises them ("value": 23).
        assert isinstance(metric["value"], int), metric


@pytest.mark.parametrize("max_tokens", [1, 3, MAX_TOKENS])
def test_chat_completion_stops_at_max_tokens(client, max_tokens):
    # The tiny random model does not produce <|eot_id|> within a few greedy steps, so the
    # limit is what ends generation.
    resp = chat(client, sampling_params=greedy(max_tokens))
    by_name = metrics_by_name(resp.metrics)
    assert by_name["completion_tokens"] == max_tokens
    assert resp.completion_message.stop_reason == "out_of_tokens"


def test_greedy_chat_is_deterministic(client):
    first = chat(client).completion_message.content
    second = chat(client).completion_message.content
    assert first == second


def test_chat_by_identifier_and_by_bare_provider_resource_id_agree(client):
    by_identifier = chat(client, model_id=MODEL_IDENTIFIER)
    by_bare_id = chat(client, model_id=SERVED_MODEL)
    assert by_identifier.completion_message.content == by_bare_id.completion_message.content
    assert metrics_by_name(by_identifier.metrics) == metrics_by_name(by_bare_id.metrics)


def test_longer_prompt_counts_more_prompt_tokens(client):
    short = chat(client, messages=[{"role": "user", "content": "Hi"}])
    long = chat(client, messages=[{"role": "user", "content": "Hi " + "and more words " * 10}])
    assert metrics_by_name(long.metrics)["prompt_tokens"] > metrics_by_name(short.metrics)["prompt_tokens"]


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "top_p", "temperature": 0.9, "top_p": 0.9},
        {"type": "top_k", "top_k": 5},
    ],
    ids=["top_p", "top_k"],
)
def test_same_seed_gives_same_sampled_chat(client, strategy):
    params = {"strategy": strategy, "max_tokens": MAX_TOKENS, "seed": 1234}
    first = chat(client, sampling_params=params)
    second = chat(client, sampling_params=params)
    assert first.completion_message.content == second.completion_message.content
    assert_token_metrics(first.metrics, max_tokens=MAX_TOKENS)


def test_repetition_penalty_is_accepted(client):
    params = greedy(repetition_penalty=1.3)
    first = chat(client, sampling_params=params)
    assert_token_metrics(first.metrics, max_tokens=MAX_TOKENS)
    second = chat(client, sampling_params=params)
    assert first.completion_message.content == second.completion_message.content


# --- chat-completion, stream --------------------------------------------------------------------


def test_chat_stream_event_sequence_and_metrics(client):
    events = stream_events(client)
    assert len(events) >= 2
    start, *middle, last = events

    assert start.event.event_type == "start"
    assert start.event.delta.type == "text" and start.event.delta.text == ""
    assert not start.metrics

    for chunk in middle:
        assert chunk.event.event_type == "progress"
        assert chunk.event.delta.type == "text"
        assert not chunk.metrics

    assert last.event.event_type == "complete"
    assert last.event.delta.type == "text" and last.event.delta.text == ""
    assert last.event.stop_reason == "out_of_tokens"
    by_name = assert_token_metrics(last.metrics, max_tokens=MAX_TOKENS)
    assert by_name["completion_tokens"] == MAX_TOKENS


def test_chat_stream_text_and_metrics_match_non_stream(client):
    full = chat(client)
    events = stream_events(client)
    streamed = "".join(e.event.delta.text for e in events if e.event.event_type == "progress")
    assert streamed == full.completion_message.content
    assert metrics_by_name(events[-1].metrics) == metrics_by_name(full.metrics)
    if full.completion_message.content:
        assert any(e.event.event_type == "progress" for e in events)


def test_chat_stream_raw_sse_framing(base_url):
    sse = post_sse(
        f"{base_url}/v1/inference/chat-completion",
        {"model_id": MODEL_IDENTIFIER, "messages": MESSAGES, "sampling_params": greedy(), "stream": True},
    )
    assert sse.content_type.startswith("text/event-stream")
    assert "[DONE]" not in sse.text
    assert not any(line.startswith("event:") for line in sse.text.splitlines())
    events = sse.events()  # checks each block is exactly one `data: <json>` line
    for chunk in events:
        assert set(chunk) == {"event", "metrics"}, chunk
        assert set(chunk["event"]) >= {"event_type", "delta", "logprobs", "stop_reason"}, chunk
    assert events[0]["event"]["event_type"] == "start"
    assert events[0]["event"]["delta"] == {"type": "text", "text": ""}
    assert events[0]["event"]["stop_reason"] is None
    assert events[0]["metrics"] is None
    assert all(e["event"]["event_type"] == "progress" for e in events[1:-1])
    assert events[-1]["event"]["event_type"] == "complete"
    assert events[-1]["event"]["stop_reason"] == "out_of_tokens"
    names = [m["metric"] for m in events[-1]["metrics"]]
    assert names == ["prompt_tokens", "completion_tokens", "total_tokens"]
    assert all(isinstance(m["value"], int) for m in events[-1]["metrics"]), events[-1]["metrics"]


# --- completion -----------------------------------------------------------------------------


def completion(client, sampling_params=None, content=PROMPT, **kwargs):
    return client.inference.completion(
        model_id=MODEL_IDENTIFIER, content=content, sampling_params=sampling_params or greedy(), **kwargs
    )


def test_completion_response_shape(client):
    resp = completion(client)
    assert isinstance(resp.content, str)
    assert resp.stop_reason == "out_of_tokens"
    by_name = assert_token_metrics(resp.metrics, max_tokens=MAX_TOKENS)
    assert by_name["completion_tokens"] == MAX_TOKENS


def test_completion_stream_matches_non_stream(client):
    full = completion(client)
    chunks = list(completion(client, stream=True))
    assert chunks, "empty stream"
    assert "".join(c.delta for c in chunks) == full.content
    assert chunks[-1].stop_reason == "out_of_tokens"
    assert all(c.stop_reason is None for c in chunks[:-1])


def test_completion_stream_raw_sse_framing(base_url):
    sse = post_sse(
        f"{base_url}/v1/inference/completion",
        {"model_id": MODEL_IDENTIFIER, "content": PROMPT, "sampling_params": greedy(), "stream": True},
    )
    assert sse.content_type.startswith("text/event-stream")
    assert "[DONE]" not in sse.text
    events = sse.events()
    for chunk in events:
        assert set(chunk) >= {"delta", "stop_reason", "logprobs"}, chunk
        assert isinstance(chunk["delta"], str)
    assert events[-1]["stop_reason"] == "out_of_tokens"


def test_completion_stop_sequence_truncates_output(client):
    full = completion(client).content
    if len(full) < 2:
        pytest.skip(f"greedy output {full!r} too short to pick a stop sequence from")
    # A stop string taken from the middle of the deterministic greedy output: generation must
    # end where it first occurs, without including it.
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    expected = full[: full.find(stop)]
    resp = completion(client, sampling_params=greedy(stop=[stop]))
    assert resp.content == expected, (full, stop, resp.content)
    assert resp.stop_reason == "end_of_turn"
    assert metrics_by_name(resp.metrics)["completion_tokens"] <= MAX_TOKENS


def test_same_seed_gives_same_sampled_completion(client):
    params = {
        "strategy": {"type": "top_p", "temperature": 1.0, "top_p": 0.95},
        "max_tokens": MAX_TOKENS,
        "seed": 99,
    }
    first = completion(client, sampling_params=params)
    second = completion(client, sampling_params=params)
    assert first.content == second.content
