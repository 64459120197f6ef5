"""The local engine through the official clients: GGUF serving with the tokenizer embedded in
the file, structured output, log-probabilities, and concurrent requests.

The models are random-weight test models, so the assertions are about form (valid JSON that
matches the schema, well-formed log-probabilities, every stream finishing), never about content.
"""

from __future__ import annotations

import json
import subprocess
import threading

import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient

from e2e_support import FORECAST_TOOL, HTTP_TIMEOUT_S, MODEL_IDENTIFIER, SERVED_MODEL

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 16},
        "population": {"type": "integer", "minimum": 0, "maximum": 100000000},
        "capital": {"type": "boolean"},
        "rivers": {"type": "array", "items": {"enum": ["Seine", "Loire", "Rhone"]}, "maxItems": 3},
    },
    "required": ["city", "population", "capital", "rivers"],
    "additionalProperties": False,
}
MESSAGES = [{"role": "user", "content": "Describe Paris as JSON."}]


def check_against_schema(text: str) -> dict:
    value = json.loads(text)
    assert set(value) == {"city", "population", "capital", "rivers"}, text
    assert isinstance(value["city"], str) and len(value["city"]) <= 16
    assert isinstance(value["population"], int) and value["population"] >= 0
    assert isinstance(value["capital"], bool)
    assert len(value["rivers"]) <= 3 and set(value["rivers"]) <= {"Seine", "Loire", "Rhone"}
    return value


@pytest.fixture(scope="module")
def gguf_server(server_factory, llama_stack_bin, tokenizer_model, tmp_path_factory):
    """A server on a Q4_0 GGUF test model that carries its own tokenizer."""
    out = tmp_path_factory.mktemp("gguf-model")
    proc = subprocess.run(
        [str(llama_stack_bin), "model", "create-test", str(out), "--preset", "tiny", "--format",
         "gguf", "--quant", "q4_0", "--tokenizer", str(tokenizer_model)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    (out / "tokenizer.json").unlink()
    return server_factory("gguf", extra_env={"LLAMA_MODEL_PATH": str(out / "model.gguf")}).start()


def test_a_gguf_model_is_served_with_its_embedded_tokenizer(gguf_server):
    client = LlamaStackClient(base_url=gguf_server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)
    response = client.inference.completion(
        model_id=MODEL_IDENTIFIER,
        content="The quick brown fox",
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 6},
    )
    assert response.stop_reason in {"end_of_turn", "end_of_message", "out_of_tokens"}
    metrics = {m.metric: m.value for m in response.metrics}
    # <|begin_of_text|> and the four words: the embedded tokenizer is the Llama 3 one.
    assert metrics["prompt_tokens"] == 5
    chat = client.inference.chat_completion(
        model_id=MODEL_IDENTIFIER, messages=MESSAGES,
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 4},
    )
    assert chat.completion_message.role == "assistant"


def test_classic_json_schema_output_parses(client):
    response = client.inference.chat_completion(
        model_id=MODEL_IDENTIFIER,
        messages=MESSAGES,
        sampling_params={"strategy": {"type": "top_p", "temperature": 1.2, "top_p": 0.95},
                         "max_tokens": 300, "seed": 5},
        response_format={"type": "json_schema", "json_schema": SCHEMA},
    )
    check_against_schema(response.completion_message.content)
    assert response.completion_message.stop_reason == "end_of_turn"


def test_openai_json_schema_output_parses_streamed_and_not(openai_client):
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}
    done = openai_client.chat.completions.create(
        model=SERVED_MODEL, messages=MESSAGES, max_tokens=300, temperature=0,
        response_format=response_format,
    )
    check_against_schema(done.choices[0].message.content)
    assert done.choices[0].finish_reason == "stop"
    stream = openai_client.chat.completions.create(
        model=SERVED_MODEL, messages=MESSAGES, max_tokens=300, temperature=0.9, seed=2,
        response_format=response_format, stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    check_against_schema(text)
    # Any object: nothing bounds its strings, so a random model may run out of tokens inside
    # one; what was written is still the start of an object, and a finished reply parses.
    any_object = openai_client.chat.completions.create(
        model=SERVED_MODEL, messages=MESSAGES, max_tokens=200, temperature=0,
        response_format={"type": "json_object"},
    )
    choice = any_object.choices[0]
    assert choice.message.content.startswith("{")
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)


def test_unsupported_schemas_are_400_with_the_keyword(server):
    body = {
        "model_id": MODEL_IDENTIFIER,
        "messages": MESSAGES,
        "response_format": {"type": "json_schema",
                            "json_schema": {"type": "object", "if": {"type": "object"}}},
    }
    resp = requests.post(f"{server.url}/v1/inference/chat-completion", json=body,
                         timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 400, resp.text
    assert "`if`" in resp.json()["error"]["detail"] or "if" in resp.text


def test_openai_chat_logprobs(openai_client):
    done = openai_client.chat.completions.create(
        model=SERVED_MODEL, messages=MESSAGES, max_tokens=5, temperature=0,
        logprobs=True, top_logprobs=3,
    )
    content = done.choices[0].logprobs.content
    assert content, "logprobs were asked for"
    text = done.choices[0].message.content
    assert "".join(entry.token for entry in content) == text
    for entry in content:
        assert entry.logprob <= 0.0
        assert 1 <= len(entry.top_logprobs) <= 3
        # Greedy: the chosen token is the most likely alternative.
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob, abs=1e-6)
        assert bytes(entry.bytes) == entry.token.encode()


def test_openai_completion_logprobs(openai_client):
    done = openai_client.completions.create(
        model=SERVED_MODEL, prompt="The quick brown fox", max_tokens=5, temperature=0,
        logprobs=2,
    )
    lp = done.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert "".join(lp.tokens) == done.choices[0].text
    assert all(len(alternatives) <= 2 for alternatives in lp.top_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


def test_classic_logprobs(client):
    response = client.inference.completion(
        model_id=MODEL_IDENTIFIER,
        content="The quick brown fox",
        sampling_params={"strategy": {"type": "greedy"}, "max_tokens": 5},
        logprobs={"top_k": 2},
    )
    assert response.logprobs
    for entry in response.logprobs:
        assert 1 <= len(entry.logprobs_by_token) <= 3
        assert all(v <= 0.0 for v in entry.logprobs_by_token.values())


def test_concurrent_streams_all_finish(server):
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="none",
                                   timeout=HTTP_TIMEOUT_S, max_retries=0)
            stream = client.chat.completions.create(
                model=SERVED_MODEL, max_tokens=16, temperature=0, stream=True,
                messages=[{"role": "user", "content": f"Request number {i}"}],
            )
            finish = [c.choices[0].finish_reason for c in stream if c.choices]
            results[i] = finish[-1]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert len(results) == 6 and all(r in {"stop", "length"} for r in results.values()), results




def test_openai_required_tool_choice_returns_tool_calls(openai_client):
    done = openai_client.chat.completions.create(
        model=SERVED_MODEL, messages=[{"role": "user", "content": "Forecast, please."}],
        max_tokens=200, temperature=0, tools=[FORECAST_TOOL], tool_choice="required",
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_forecast"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["hourly"], bool) and isinstance(arguments["metric"], bool)


def test_classic_streamed_tool_call_deltas(server):
    body = {
        "model_id": MODEL_IDENTIFIER,
        "messages": [{"role": "user", "content": "Forecast, please."}],
        "sampling_params": {"strategy": {"type": "greedy"}, "max_tokens": 200},
        "tools": [{"tool_name": "get_forecast", "description": "Weather forecast",
                   "parameters": {"hourly": {"param_type": "bool", "required": True},
                                  "metric": {"param_type": "bool", "required": True}}}],
        "tool_config": {"tool_choice": "required"},
        "stream": True,
    }
    with requests.post(f"{server.url}/v1/inference/chat-completion", json=body, stream=True,
                       timeout=HTTP_TIMEOUT_S) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[len("data: "):]) for line in resp.iter_lines(decode_unicode=True)
                  if line and line.startswith("data: ")]
    deltas = [e["event"]["delta"] for e in events if e["event"]["delta"]["type"] == "tool_call"]
    assert [d["parse_status"] for d in deltas] == ["succeeded"], deltas
    call = deltas[0]["tool_call"]
    assert call["tool_name"] == "get_forecast"
    assert json.loads(call["arguments_json"]) == call["arguments"]
    assert events[-1]["event"]["event_type"] == "complete"
    assert events[-1]["event"]["stop_reason"] == "end_of_turn"
