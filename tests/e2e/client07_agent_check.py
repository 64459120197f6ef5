"""Drives a server's Responses and Conversations APIs with llama-stack-client 0.7.x's `Agent`;
run by test_responses_clients.py inside `.venv-client07`.

0.7's Agent is built on those APIs: create_session is conversations.create, and create_turn
streams responses.create(conversation=..., stream=True), running client tools between
responses and sending their results back as function_call_output items.

Usage: client07_agent_check.py BASE_URL MODEL
Prints one JSON object with what the client saw; exits non-zero on any client error.
"""

import json
import sys
import typing

import pydantic
from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent
from llama_stack_client.lib.agents.client_tool import client_tool
from llama_stack_client.types import response_object_stream
from llama_stack_client.lib.agents.turn_events import (
    StepCompleted,
    StepProgress,
    TextDelta,
    ToolCallIssuedDelta,
    TurnCompleted,
    TurnFailed,
)

base_url, model = sys.argv[1], sys.argv[2]
client = LlamaStackClient(base_url=base_url, timeout=120, max_retries=0)
tool_calls_run: list[dict] = []


@client_tool
def get_weather(city: str) -> str:
    """Tells the weather in a city.

    :param city: the city to look up
    :returns: the weather there
    """
    tool_calls_run.append({"city": city})
    return "sunny"


def field(obj, name):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def describe(chunks) -> dict:
    """The turn's events in short, and what its last chunk carries."""
    events = []
    text = []
    issued = []
    failed = None
    completed = None
    for chunk in chunks:
        event = chunk.event
        kind = event.event_type
        step = getattr(event, "step_type", None)
        events.append(f"{kind}:{step}" if step else kind)
        if isinstance(event, StepProgress) and isinstance(event.delta, TextDelta):
            text.append(event.delta.text)
        if isinstance(event, StepProgress) and isinstance(event.delta, ToolCallIssuedDelta):
            issued.append({"tool_name": event.delta.tool_name, "call_id": event.delta.call_id})
        if isinstance(event, TurnFailed):
            failed = event.error_message
        if isinstance(event, TurnCompleted):
            completed = {"final_text": event.final_text, "response_ids": event.response_ids,
                         "num_steps": event.num_steps,
                         "response_id": chunk.response.id if chunk.response else None,
                         "response_status": chunk.response.status if chunk.response else None}
    tool_results = [
        r for chunk in chunks
        if isinstance(chunk.event, StepCompleted) and chunk.event.step_type == "tool_execution"
        for r in chunk.event.result.tool_responses
    ]
    return {"events": events, "streamed_text": "".join(text), "issued": issued,
            "tool_results": [{"call_id": r["call_id"], "content": r["content"]}
                             for r in tool_results],
            "failed": failed, "completed": completed}


def conversation_items(conversation_id: str) -> list[dict]:
    page = client.conversations.items.list(conversation_id, order="asc")
    out = []
    for item in page.data:
        entry = {"type": field(item, "type")}
        for name in ("role", "call_id", "name", "arguments", "output"):
            value = field(item, name)
            if value is not None:
                entry[name] = value
        content = field(item, "content")
        if isinstance(content, list):
            entry["text"] = "".join(field(p, "text") or "" for p in content)
        out.append(entry)
    return out


def stream_event_classes() -> dict:
    """Each event type of 0.7's ResponseObjectStream union, and the class that reads it."""
    union = typing.get_args(typing.get_args(response_object_stream.ResponseObjectStream)[0])
    classes = {}
    for cls in union:
        literal = next(a for a in typing.get_args(cls.model_fields["type"].annotation)
                       if a is not type(None))
        classes[typing.get_args(literal)[0]] = cls
    return classes


def stream_parse_errors() -> list[dict]:
    """The events of a streamed text answer and of a streamed function call that 0.7's event
    types do not accept. The client does not fail on them: it reads such an event as another
    type of the union, and the Agent then misses what the event carries (a function call)."""
    classes = stream_event_classes()
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    errors = []
    for text in ("Hi", "What is the weather? [[call]]"):
        for event in client.responses.create(model=model, input=text, tools=tools, stream=True):
            raw = event.to_dict()
            cls = classes.get(raw.get("type"))
            if cls is None:
                errors.append({"type": raw.get("type"), "errors": ["no such event type"]})
                continue
            try:
                cls.model_validate(raw)
            except pydantic.ValidationError as e:
                errors.append({"type": raw["type"], "class": cls.__name__,
                               "errors": [f"{'.'.join(map(str, x['loc']))}: {x['msg']}"
                                          for x in e.errors()][:5]})
    return errors


agent = Agent(client, model=model, instructions="You are terse.", tools=[get_weather])
session_id = agent.create_session("e2e-session")
conversation = client.conversations.retrieve(session_id)

# A plain turn, not streamed: create_turn gives the final response object.
plain = agent.create_turn(messages=[{"role": "user", "content": "Hi"}], session_id=session_id,
                          stream=False)

# A plain turn, streamed, in the same session: the conversation carries the first turn.
streamed = describe(list(agent.create_turn(
    messages=[{"role": "user", "content": "Hi again"}], session_id=session_id, stream=True)))

# A turn that calls the client tool: the agent runs it and continues the conversation.
tool_session = agent.create_session("e2e-tools")
tool_turn = describe(list(agent.create_turn(
    messages=[{"role": "user", "content": "What is the weather in Paris? [[call]]"}],
    session_id=tool_session, stream=True)))

# The same, not streamed: the final response after the tool ran.
tool_session_2 = agent.create_session("e2e-tools-2")
tool_final = agent.create_turn(
    messages=[{"role": "user", "content": "And now? [[call]]"}], session_id=tool_session_2,
    stream=False)

print(json.dumps({
    "stream_parse_errors": stream_parse_errors(),
    "session_id": session_id,
    "conversation_metadata": dict(conversation.metadata or {}),
    "plain_status": plain.status,
    "plain_text": plain.output_text,
    "plain_model": plain.model,
    "streamed": streamed,
    "tool_session_id": tool_session,
    "tool_turn": tool_turn,
    "tool_final_text": tool_final.output_text,
    "tool_final_status": tool_final.status,
    "tool_calls_run": tool_calls_run,
    "plain_items": conversation_items(session_id),
    "tool_items": conversation_items(tool_session),
}))
