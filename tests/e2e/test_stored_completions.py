"""Stored chat completions with the openai SDK against the real binary: `store: true` keeps the
request's messages and the answer (plain or streamed, from the local engine or forwarded from
a remote upstream), and `chat.completions.list`, `retrieve` and `messages.list` read them back.
"""

from __future__ import annotations

import openai
import pytest

from agents_support import GREETING, MODEL, ToolCallingUpstream, agents_run_yaml
from e2e_support import HTTP_TIMEOUT_S, SERVED_MODEL
from memory_support import fetch_minilm

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


@pytest.fixture
def local(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none",
                         timeout=HTTP_TIMEOUT_S, max_retries=0)


def test_a_stored_completion_reads_back_with_its_messages(local):
    done = local.chat.completions.create(model=SERVED_MODEL, messages=MESSAGES, max_tokens=3,
                                         store=True, metadata={"case": "plain"})
    got = local.chat.completions.retrieve(done.id)
    assert got.choices[0].message.content == done.choices[0].message.content
    assert got.metadata == {"case": "plain"}
    messages = local.chat.completions.messages.list(done.id).data
    assert [(m.role, m.content) for m in messages] == [("system", "Be brief."), ("user", "Hi")]
    listed = local.chat.completions.list(model=SERVED_MODEL, limit=100)
    assert done.id in [c.id for c in listed.data]
    local.chat.completions.delete(done.id)
    with pytest.raises(openai.NotFoundError):
        local.chat.completions.retrieve(done.id)


def test_a_streamed_completion_is_stored_when_it_ends(local):
    chunks = list(local.chat.completions.create(model=SERVED_MODEL, messages=MESSAGES,
                                                max_tokens=3, stream=True, store=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    got = local.chat.completions.retrieve(chunks[0].id)
    assert got.choices[0].message.content == text
    assert got.choices[0].finish_reason == "length"


def test_without_store_nothing_is_kept(local):
    done = local.chat.completions.create(model=SERVED_MODEL, messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.NotFoundError):
        local.chat.completions.retrieve(done.id)
    with pytest.raises(openai.BadRequestError):
        local.chat.completions.create(model=SERVED_MODEL, messages=MESSAGES, max_tokens=2,
                                      store=True, metadata={"n": 1})


def test_forwarded_answers_are_stored_too(server_factory, tmp_path_factory):
    upstream = ToolCallingUpstream()
    try:
        path = tmp_path_factory.mktemp("stored-remote") / "run.yaml"
        store = {"type": "sqlite", "db_path": str(path.parent / "registry.db")}
        srv = server_factory("stored-remote", run_config=agents_run_yaml(
            path, upstream.url, fetch_minilm(), store)).start()
        oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0)
        plain = oa.chat.completions.create(model=MODEL, messages=MESSAGES, store=True)
        streamed = list(oa.chat.completions.create(model=MODEL, messages=MESSAGES,
                                                   stream=True, store=True))
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == GREETING
        listed = oa.chat.completions.list(model=MODEL).data
        assert [c.choices[0].message.content for c in listed] == [GREETING, GREETING]
        assert listed[0].id == plain.id
        # The stub names no id in its chunks: the stored answer gets one.
        assert oa.chat.completions.retrieve(listed[1].id).model == MODEL
        srv.stop()
    finally:
        upstream.stop()
