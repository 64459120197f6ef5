"""Bad requests: status codes and error-body shapes on classic and OpenAI routes (§1.0).

Classic routes answer `{"error": {"detail": ...}}` (unknown model is 400, validation errors
carry `{"errors": [{"loc", "msg", "type"}]}`); OpenAI routes answer
`{"error": {"message", "type", "code"}}` (unknown model is 404)."""

from __future__ import annotations

import json

import llama_stack_client
import openai
import pytest
import requests

from e2e_support import (
    HTTP_TIMEOUT_S,
    MODEL_IDENTIFIER,
    OPENAI_PREFIXES,
    assert_classic_error,
    assert_openai_error,
    post_oversized,
    validation_errors,
)

CHAT = "/v1/inference/chat-completion"
COMPLETION = "/v1/inference/completion"
MESSAGES = [{"role": "user", "content": "Hi"}]
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 4}


def post(base_url, path, body) -> requests.Response:
    return requests.post(f"{base_url}{path}", json=body, timeout=HTTP_TIMEOUT_S)


def locs(errors) -> list[list]:
    return [[str(part) for part in e["loc"]] for e in errors]


# --- classic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,body,field",
    [
        (CHAT, {"messages": MESSAGES}, "model_id"),
        (CHAT, {"model_id": MODEL_IDENTIFIER}, "messages"),
        (COMPLETION, {"model_id": MODEL_IDENTIFIER}, "content"),
    ],
    ids=["chat-without-model_id", "chat-without-messages", "completion-without-content"],
)
def test_classic_missing_field_is_400_validation_error(base_url, path, body, field):
    detail = assert_classic_error(post(base_url, path, body), 400)
    errors = validation_errors(detail)
    assert any(field in loc for loc in locs(errors)), errors


@pytest.mark.parametrize(
    "body,field",
    [
        ({"model_id": MODEL_IDENTIFIER, "messages": "Hi"}, "messages"),
        (
            {"model_id": MODEL_IDENTIFIER, "messages": MESSAGES,
             "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": "many"}},
            "max_tokens",
        ),
        ({"model_id": MODEL_IDENTIFIER, "messages": MESSAGES, "stream": "sometimes"}, "stream"),
    ],
    ids=["messages-as-string", "max_tokens-as-string", "stream-as-string"],
)
def test_classic_wrong_type_is_400_validation_error(base_url, body, field):
    detail = assert_classic_error(post(base_url, CHAT, body), 400)
    errors = validation_errors(detail)
    assert any(field in loc for loc in locs(errors)), errors


@pytest.mark.parametrize("path", [CHAT, COMPLETION, "/v1/models"])
def test_classic_malformed_json_is_400(base_url, path):
    resp = requests.post(
        f"{base_url}{path}",
        data=b'{"model_id": "x", "messages": [',
        headers={"Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert_classic_error(resp, 400)


def test_classic_unknown_model_is_400(base_url, client):
    detail = assert_classic_error(
        post(base_url, CHAT, {"model_id": "no-such/model", "messages": MESSAGES}), 400
    )
    assert "no-such/model" in str(detail)
    assert_classic_error(post(base_url, COMPLETION, {"model_id": "no-such/model", "content": "Hi"}), 400)
    with pytest.raises(llama_stack_client.BadRequestError) as info:
        client.inference.chat_completion(model_id="no-such/model", messages=MESSAGES)
    assert info.value.status_code == 400


def test_classic_empty_messages_is_400(base_url):
    assert_classic_error(
        post(base_url, CHAT, {"model_id": MODEL_IDENTIFIER, "messages": [], "sampling_params": GREEDY}), 400
    )


def test_classic_oversized_body_is_413(server):
    status, body = post_oversized(server.port, CHAT)
    assert status == 413, body[:300]
    assert "detail" in json.loads(body)["error"], body[:300]


def test_unknown_route_is_404(base_url):
    assert requests.get(f"{base_url}/v1/no-such-route", timeout=HTTP_TIMEOUT_S).status_code == 404
    assert requests.post(f"{base_url}/v1/inference/no-such-op", json={}, timeout=HTTP_TIMEOUT_S).status_code == 404


def test_classic_routes_accept_client_headers(base_url):
    # What llama-stack-client and the OpenAI SDK always send must not be rejected (§9).
    resp = requests.post(
        f"{base_url}{CHAT}",
        json={"model_id": MODEL_IDENTIFIER, "messages": MESSAGES, "sampling_params": GREEDY},
        headers={
            "X-LlamaStack-Provider-Data": "{}",
            "X-LlamaStack-Client-Version": "0.0.1",
            "Authorization": "Bearer anything",
        },
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text


# --- OpenAI -----------------------------------------------------------------------------------


@pytest.fixture(params=OPENAI_PREFIXES, ids=["openai-v1-prefix", "v1-prefix"])
def prefix(request) -> str:
    return request.param


def sdk(base_url, prefix) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + prefix, api_key="none", timeout=HTTP_TIMEOUT_S, max_retries=0)


def test_openai_unknown_model_is_404(base_url, prefix):
    err = assert_openai_error(
        post(base_url, f"{prefix}/chat/completions", {"model": "no-such/model", "messages": MESSAGES}), 404
    )
    assert "no-such/model" in err["message"]
    assert_openai_error(post(base_url, f"{prefix}/completions", {"model": "no-such/model", "prompt": "Hi"}), 404)
    with pytest.raises(openai.NotFoundError):
        sdk(base_url, prefix).chat.completions.create(model="no-such/model", messages=MESSAGES)


def test_openai_empty_messages_is_400(base_url, prefix):
    assert_openai_error(
        post(base_url, f"{prefix}/chat/completions", {"model": MODEL_IDENTIFIER, "messages": []}), 400
    )
    with pytest.raises(openai.BadRequestError):
        sdk(base_url, prefix).chat.completions.create(model=MODEL_IDENTIFIER, messages=[])


@pytest.mark.parametrize(
    "route,body",
    [
        ("/chat/completions", {"messages": MESSAGES}),
        ("/chat/completions", {"model": MODEL_IDENTIFIER}),
        ("/chat/completions", {"model": MODEL_IDENTIFIER, "messages": MESSAGES, "max_tokens": "many"}),
        ("/chat/completions", {"model": MODEL_IDENTIFIER, "messages": "Hi"}),
        ("/completions", {"prompt": "Hi"}),
        ("/completions", {"model": MODEL_IDENTIFIER, "prompt": "Hi", "max_tokens": "many"}),
    ],
    ids=[
        "chat-without-model", "chat-without-messages", "chat-max_tokens-as-string",
        "chat-messages-as-string", "completions-without-model", "completions-max_tokens-as-string",
    ],
)
def test_openai_invalid_request_is_400(base_url, prefix, route, body):
    assert_openai_error(post(base_url, f"{prefix}{route}", body), 400)


@pytest.mark.parametrize("route", ["/chat/completions", "/completions"])
def test_openai_malformed_json_is_400(base_url, prefix, route):
    resp = requests.post(
        f"{base_url}{prefix}{route}",
        data=b'{"model": "x", "messages": [',
        headers={"Content-Type": "application/json"},
        timeout=HTTP_TIMEOUT_S,
    )
    assert_openai_error(resp, 400)


def test_openai_oversized_body_is_413(server, prefix):
    status, body = post_oversized(server.port, f"{prefix}/chat/completions")
    assert status == 413, body[:300]
    assert "message" in json.loads(body)["error"], body[:300]
