"""Drives a server's Responses API with the OpenAI Agents SDK (`openai-agents`); run by
test_responses_clients.py inside `.venv-agents` (made by scripts/setup-python.sh).

The SDK keeps the history itself: after a function call it sends the whole run so far as
`input` items (the user message, the function_call and its function_call_output), without
previous_response_id.

Usage: openai_agents_check.py BASE_URL MODEL
Prints one JSON object with what the SDK saw and the requests it sent; exits non-zero on any
error, after printing the requests and answers so far to stderr.
"""

import asyncio
import json
import sys

from agents import (Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool,
                    set_tracing_disabled)
from openai import AsyncOpenAI
from openai.types.shared import Reasoning

try:  # openai 3.x is built on httpx2, earlier releases on httpx
    import httpx2 as httpx
except ImportError:
    import httpx

base_url, model_id = sys.argv[1], sys.argv[2]
set_tracing_disabled(True)  # no exporting of traces: there is no network

exchanges: list[dict] = []


async def on_request(request: httpx.Request) -> None:
    body = request.content.decode() if request.content else ""
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = body
    exchanges.append({"method": request.method, "path": request.url.path, "body": parsed})


async def on_response(response: httpx.Response) -> None:
    entry = next((e for e in reversed(exchanges) if e["path"] == response.request.url.path
                  and "status" not in e), None)
    if entry is None:
        return
    entry["status"] = response.status_code
    if response.status_code >= 400:
        await response.aread()
        entry["answer"] = response.text


tool_calls_run: list[dict] = []


@function_tool
def get_weather(city: str) -> str:
    """Tells the weather in a city.

    Args:
        city: the city to look up.
    """
    tool_calls_run.append({"city": city})
    return "sunny"


# The settings an application commonly sets; each becomes a field of the request.
SETTINGS = ModelSettings(
    temperature=0.2, top_p=0.9, max_tokens=200, tool_choice="get_weather", parallel_tool_calls=False,
    truncation="auto", store=False, metadata={"suite": "e2e"}, verbosity="low",
    reasoning=Reasoning(effort="low"),
)


def make_agent(settings: ModelSettings | None = None) -> Agent:
    client = AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key="none", max_retries=0, timeout=120,
        http_client=httpx.AsyncClient(
            event_hooks={"request": [on_request], "response": [on_response]}),
    )
    return Agent(name="weather", instructions="You are terse.",
                 model=OpenAIResponsesModel(model=model_id, openai_client=client),
                 tools=[get_weather], model_settings=settings or ModelSettings())


def item_types(result) -> list[str]:
    return [item.type for item in result.new_items]


async def streamed(agent: Agent, prompt: str) -> dict:
    run = Runner.run_streamed(agent, prompt)
    kinds = []
    text = []
    async for event in run.stream_events():
        kinds.append(event.type)
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            text.append(event.data.delta)
    return {"final_output": run.final_output, "event_types": sorted(set(kinds)),
            "streamed_text": "".join(text), "items": item_types(run)}


try:
    plain = Runner.run_sync(make_agent(), "Hi")
    tool = Runner.run_sync(make_agent(), "What is the weather? [[call]]")
    stream = asyncio.run(streamed(make_agent(), "What is the weather in Rome? [[call]]"))
    tuned = Runner.run_sync(make_agent(SETTINGS), "What is the weather in Oslo? [[call]]")
except Exception:
    print(json.dumps({"exchanges": exchanges}, indent=1)[-20000:], file=sys.stderr)
    raise

print(json.dumps({
    "plain_output": plain.final_output,
    "tool_output": tool.final_output,
    "tool_items": item_types(tool),
    "tool_response_ids": [r.response_id for r in tool.raw_responses],
    "stream": stream,
    "tuned_output": tuned.final_output,
    "tuned_items": item_types(tuned),
    "tuned_response_ids": [r.response_id for r in tuned.raw_responses],
    "tool_calls_run": tool_calls_run,
    "requests": [{k: e.get(k) for k in ("method", "path", "status")} for e in exchanges],
    "request_bodies": [e["body"] for e in exchanges if e["path"].endswith("/responses")],
}))
