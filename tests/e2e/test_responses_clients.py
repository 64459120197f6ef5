"""The Responses and Conversations APIs driven by real agent frameworks, unchanged, against the
real binary:

* llama-stack-client 0.7's `Agent` (sessions are conversations, turns are streamed responses,
  client tools answered with function_call_output items), in `.venv-client07`;
* the OpenAI Agents SDK (`openai-agents`), which resends the whole history as input items, in
  `.venv-agents`.

Both venvs are made by scripts/setup-python.sh; each script prints one JSON object of what its
client saw. The model is the stub upstream of `agents_support`: `[[call]]` makes it call the
client tool `get_weather`, and after the tool result it answers "The weather is <result>.".
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import REPO_ROOT, Server
from memory_support import fetch_minilm

HERE = Path(__file__).parent
CLIENT07_VENV = Path(os.environ.get("LLAMA_STACK_VENV_CLIENT07", REPO_ROOT / ".venv-client07"))
AGENTS_VENV = Path(os.environ.get("LLAMA_STACK_VENV_AGENTS", REPO_ROOT / ".venv-agents"))


@pytest.fixture(scope="module")
def upstream():
    up = ToolCallingUpstream()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def responses_server(server_factory, upstream, tmp_path_factory) -> Server:
    path = tmp_path_factory.mktemp("responses-clients") / "run.yaml"
    store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
    return server_factory(
        "responses-clients",
        run_config=agents_run_yaml(path, upstream.url, fetch_minilm(), store)).start()


def run_check(venv: Path, script: str, *args: str) -> dict:
    python = venv / "bin" / "python"
    assert python.is_file(), f"{python} is missing: run scripts/setup-python.sh"
    proc = subprocess.run(
        [str(python), str(HERE / script), *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"{script} failed ({proc.returncode})\n--- stderr ---\n{proc.stderr[-8000:]}"
        f"\n--- stdout ---\n{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def tool_message_reached_model(requests: list[dict], result: str) -> bool:
    """Whether a chat request the server sent upstream ends with the tool's result, after the
    assistant's call of get_weather."""
    for body in requests:
        messages = body["messages"]
        if len(messages) >= 2 and messages[-1]["role"] == "tool" \
                and messages[-1]["content"] == result:
            call = messages[-2]
            if call["role"] == "assistant" and \
                    call["tool_calls"][0]["function"]["name"] == "get_weather" and \
                    call["tool_calls"][0]["id"] == messages[-1]["tool_call_id"]:
                return True
    return False


@pytest.fixture(scope="module")
def client07_run(responses_server, upstream) -> tuple[dict, list[dict]]:
    """What 0.7's Agent saw, and the chat requests the server sent the model meanwhile."""
    before = len(upstream.requests)
    seen = run_check(CLIENT07_VENV, "client07_agent_check.py", responses_server.url, MODEL)
    return seen, upstream.requests[before:]


@pytest.fixture(scope="module")
def agents_sdk_run(responses_server, upstream) -> tuple[dict, list[dict]]:
    """What the OpenAI Agents SDK saw, and the chat requests the server sent the model."""
    before = len(upstream.requests)
    seen = run_check(AGENTS_VENV, "openai_agents_check.py", responses_server.url, MODEL)
    return seen, upstream.requests[before:]


# --- llama-stack-client 0.7 -----------------------------------------------------------------

WEATHER_07 = 'The weather is "sunny".'  # ClientTool.run JSON-encodes the function's result


def test_client_0_7_reads_every_stream_event_as_its_type(client07_run):
    # 0.7 reads an event its types reject as another member of the union (the first one,
    # response.created), so the Agent would silently miss the function calls these events carry.
    seen, _ = client07_run
    errors = seen["stream_parse_errors"]
    assert errors == [], json.dumps(errors, indent=1)


def test_client_0_7_agent_session_is_a_conversation(client07_run):
    seen, _ = client07_run
    assert seen["session_id"].startswith("conv_")
    assert seen["conversation_metadata"] == {"name": "e2e-session"}
    assert seen["tool_session_id"].startswith("conv_")
    assert seen["tool_session_id"] != seen["session_id"]


def test_client_0_7_agent_plain_turns(client07_run):
    seen, sent = client07_run
    # Not streamed: create_turn gives the final response.
    assert seen["plain_status"] == "completed"
    assert seen["plain_text"] == GREETING
    assert seen["plain_model"] == MODEL
    # Streamed: the turn and step events of the synthesizer.
    streamed = seen["streamed"]
    assert streamed["failed"] is None
    assert streamed["events"] == [
        "turn_started", "step_started:inference", "step_progress:inference",
        "step_completed:inference", "turn_completed"]
    assert streamed["streamed_text"] == GREETING
    completed = streamed["completed"]
    assert completed["final_text"] == GREETING
    assert completed["response_status"] == "completed"
    assert len(completed["response_ids"]) == 1
    assert completed["response_ids"][0] == completed["response_id"]
    assert completed["response_id"].startswith("resp_")

    # The second turn of the session continued the first: the model read the instructions,
    # both user messages and the first answer.
    second = next(b for b in sent if b["messages"][-1].get("content") == "Hi again")
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][0]["content"] == "You are terse."
    assert second["messages"][1]["content"] == "Hi"
    assert second["messages"][2]["content"] == GREETING
    # The agent offers its client tool on every response.
    assert [t["function"]["name"] for t in second["tools"]] == ["get_weather"]


def test_client_0_7_agent_conversation_items_of_plain_turns(client07_run):
    seen, _ = client07_run
    assert [(i["type"], i.get("role"), i.get("text")) for i in seen["plain_items"]] == [
        ("message", "user", "Hi"),
        ("message", "assistant", GREETING),
        ("message", "user", "Hi again"),
        ("message", "assistant", GREETING),
    ]


def test_client_0_7_agent_runs_a_client_tool(client07_run):
    seen, sent = client07_run
    turn = seen["tool_turn"]
    assert turn["failed"] is None, turn
    assert turn["issued"] == [{"tool_name": "get_weather", "call_id": "call_1"}], turn
    assert turn["tool_results"] == [{"call_id": "call_1", "content": '"sunny"'}]
    assert turn["events"] == [
        "turn_started",
        "step_started:inference", "step_progress:inference", "step_completed:inference",
        "step_started:tool_execution", "step_completed:tool_execution",
        "step_started:inference", "step_progress:inference", "step_completed:inference",
        "turn_completed",
    ]
    # The tool's result reached the model, which quotes it.
    assert turn["streamed_text"] == WEATHER_07
    assert turn["completed"]["final_text"] == WEATHER_07
    assert len(turn["completed"]["response_ids"]) == 2
    assert tool_message_reached_model(sent, '"sunny"')
    # The same turn, not streamed.
    assert seen["tool_final_status"] == "completed"
    assert seen["tool_final_text"] == WEATHER_07
    assert seen["tool_calls_run"] == [{"city": "Paris"}, {"city": "Paris"}]


def test_client_0_7_agent_conversation_items_of_a_tool_turn(client07_run):
    seen, _ = client07_run
    items = seen["tool_items"]
    assert [i["type"] for i in items] == [
        "message", "function_call", "function_call_output", "message"], items
    user, call, output, answer = items
    assert user["role"] == "user"
    assert user["text"] == "What is the weather in Paris? [[call]]"
    assert call["name"] == "get_weather" and call["call_id"] == "call_1"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert output["call_id"] == "call_1" and output["output"] == '"sunny"'
    assert answer["role"] == "assistant" and answer["text"] == WEATHER_07


# --- OpenAI Agents SDK ----------------------------------------------------------------------

TOOL_ITEMS = ["tool_call_item", "tool_call_output_item", "message_output_item"]


def test_openai_agents_sdk_requests_are_accepted(agents_sdk_run):
    seen, _ = agents_sdk_run
    assert seen["requests"] and all(r["status"] == 200 for r in seen["requests"]), \
        seen["requests"]
    assert {r["path"] for r in seen["requests"]} == {"/v1/responses"}


def test_openai_agents_sdk_plain_run(agents_sdk_run):
    seen, _ = agents_sdk_run
    assert seen["plain_output"] == GREETING


def test_openai_agents_sdk_runs_a_function_tool(agents_sdk_run):
    seen, sent = agents_sdk_run
    # Runner.run_sync: the stub calls get_weather, the SDK runs it and sends the history back;
    # the answer quotes the tool's result.
    assert "The weather is sunny" in seen["tool_output"]
    assert seen["tool_output"] == "The weather is sunny."
    assert seen["tool_items"] == TOOL_ITEMS
    assert len(seen["tool_response_ids"]) == 2
    assert all(r.startswith("resp_") for r in seen["tool_response_ids"])
    assert tool_message_reached_model(sent, "sunny")
    assert seen["tool_calls_run"] == [{"city": "Paris"}] * 3


def test_openai_agents_sdk_sends_the_history_as_input_items(agents_sdk_run):
    seen, sent = agents_sdk_run
    follow_up = seen["request_bodies"][2]
    assert "previous_response_id" not in follow_up and "conversation" not in follow_up
    assert [i.get("type", "message") for i in follow_up["input"]] == [
        "message", "function_call", "function_call_output"]
    # The server turned the items into the chat history the model read.
    answered = next(b for b in sent if b["messages"][-1]["role"] == "tool")
    assert [m["role"] for m in answered["messages"]] == ["system", "user", "assistant", "tool"]
    assert answered["messages"][1]["content"] == "What is the weather? [[call]]"


def test_openai_agents_sdk_streamed_run(agents_sdk_run):
    stream = agents_sdk_run[0]["stream"]
    assert stream["final_output"] == "The weather is sunny."
    assert stream["streamed_text"] == "The weather is sunny."
    assert stream["items"] == TOOL_ITEMS
    assert "raw_response_event" in stream["event_types"]
    assert "run_item_stream_event" in stream["event_types"]


def test_openai_agents_sdk_model_settings(agents_sdk_run, responses_server):
    seen, sent = agents_sdk_run
    assert seen["tuned_output"] == "The weather is sunny."
    assert seen["tuned_items"] == TOOL_ITEMS
    first, follow_up = seen["request_bodies"][-2:]
    for body in (first, follow_up):
        assert body["store"] is False and body["truncation"] == "auto"
        assert body["reasoning"] == {"effort": "low"} and body["text"] == {"verbosity": "low"}
        assert body["metadata"] == {"suite": "e2e"}
    assert first["tool_choice"] == {"type": "function", "name": "get_weather"}
    # What reached the model.
    tuned = [b for b in sent if "Oslo" in json.dumps(b["messages"])]
    assert len(tuned) == 2
    for body in tuned:
        assert body["temperature"] == 0.2 and body["top_p"] == 0.9
        assert body["max_tokens"] == 200
        assert body["parallel_tool_calls"] is False
    assert tuned[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    # store: false: the responses were not kept.
    for response_id in seen["tuned_response_ids"]:
        got = requests.get(f"{responses_server.url}/v1/responses/{response_id}", timeout=30)
        assert got.status_code == 404, got.text
