"""`server.auth` against the real binary with the official clients: API keys, JWTs from a JWKS
issuer, a custom endpoint and gateway headers; the access policy on every kind of resource
(including inside a tool call); the route policy; and quotas per principal.
"""

from __future__ import annotations

import hashlib
import time

import openai
import pytest
import requests
from llama_stack_client import LlamaStackClient
import llama_stack_client

from auth_support import CustomEndpoint, Issuer, run_yaml_with_auth
from e2e_support import HTTP_TIMEOUT_S, MODEL_IDENTIFIER, SERVED_MODEL
from memory_support import fetch_minilm

KEYS = {
    "alice": "alice-key-0123456789abcdef",
    "bob": "bob-key-0123456789abcdef",
    "carol": "carol-key-0123456789abcdef",
    "root": "root-key-0123456789abcdef",
}

# Everyone reads models and shields; only admins change them. Owners do anything to their
# resources, their team mates only read them, and run.yaml's unowned resources are read-only.
POLICY = [
    {"forbid": {"actions": ["create", "update", "delete"], "resource": "model::*"},
     "unless": "user with admin in roles", "description": "only admins change models"},
    {"forbid": {"actions": ["create", "update", "delete"], "resource": "shield::*"},
     "unless": "user with admin in roles"},
    {"permit": {"actions": ["read"], "resource": "model::*"}},
    {"permit": {"actions": ["create", "read", "update", "delete"]},
     "when": "user with admin in roles"},
    {"permit": {"actions": ["create", "read", "update", "delete"]}, "when": "user is owner"},
    {"permit": {"actions": ["read"]}, "when": "user in owners teams"},
    {"permit": {"actions": ["read"]}, "when": "resource is unowned"},
    {"permit": {"actions": ["create"]}},
]


@pytest.fixture(scope="module")
def keyed(server_factory, tmp_path_factory):
    keys = [
        # A key from the environment, the others by their SHA-256 only.
        {"principal": "alice", "key": "${env.ALICE_KEY}", "attributes": {"teams": ["ml"]}},
        {"principal": "bob", "sha256": hashlib.sha256(KEYS["bob"].encode()).hexdigest(),
         "attributes": {"teams": ["web"]}},
        {"principal": "carol", "sha256": hashlib.sha256(KEYS["carol"].encode()).hexdigest(),
         "attributes": {"teams": ["ml"]}},
        {"principal": "root", "sha256": hashlib.sha256(KEYS["root"].encode()).hexdigest(),
         "attributes": {"roles": ["admin"]}},
    ]
    config = run_yaml_with_auth(tmp_path_factory, "auth-keys", {
        "provider_config": {"type": "api_keys", "keys": keys}, "access_policy": POLICY})
    return server_factory("auth-keys", run_config=config, extra_env={
        "ALICE_KEY": KEYS["alice"], "EMBEDDING_MODEL_PATH": str(fetch_minilm())}).start()


def oai(server, who: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEYS.get(who, who),
                         timeout=HTTP_TIMEOUT_S, max_retries=0)


def ls(server, who: str) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, api_key=KEYS[who], timeout=HTTP_TIMEOUT_S,
                            max_retries=0)


def get(server, path: str, who: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {KEYS[who]}"} if who else {}
    return requests.get(f"{server.url}{path}", headers=headers, timeout=HTTP_TIMEOUT_S)


def test_requests_need_a_valid_key_except_health_and_version(keyed):
    for path in ("/v1/health", "/v1/version"):
        assert get(keyed, path).status_code == 200
    missing = get(keyed, "/v1/models")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "Authentication required" in missing.json()["error"]["message"]
    wrong = requests.get(f"{keyed.url}/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid API key"
    basic = requests.get(f"{keyed.url}/v1/models", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        oai(keyed, "not-a-key").models.list()
    with pytest.raises(llama_stack_client.AuthenticationError):
        LlamaStackClient(base_url=keyed.url, api_key="nope", max_retries=0).models.list()
    # The key never reaches the log.
    assert KEYS["alice"] not in keyed.log_path.read_text()


def test_files_and_vector_stores_belong_to_their_owner_and_team(keyed):
    alice, bob, carol, root = (oai(keyed, w) for w in ("alice", "bob", "carol", "root"))
    f = alice.files.create(file=("notes.txt", b"Paris is the capital of France.", "text/plain"),
                           purpose="assistants")
    store = alice.vector_stores.create(name="alice-notes", file_ids=[f.id])
    assert f.id not in {x.id for x in bob.files.list().data}
    assert store.id not in {x.id for x in bob.vector_stores.list().data}
    for call in (lambda: bob.files.retrieve(f.id), lambda: bob.files.content(f.id),
                 lambda: bob.files.delete(f.id), lambda: bob.vector_stores.retrieve(store.id),
                 lambda: bob.vector_stores.delete(store.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
        bob.vector_stores.search(vector_store_id=store.id, query="capital")
    # Nor can a response's file_search tool reach it.
    with pytest.raises(openai.NotFoundError, match="not found"):
        bob.responses.create(model=SERVED_MODEL, input="What is the capital?",
                             tools=[{"type": "file_search", "vector_store_ids": [store.id]}])
    # A team mate reads but may not delete; an admin may do anything.
    assert f.id in {x.id for x in carol.files.list().data}
    assert carol.vector_stores.search(vector_store_id=store.id, query="capital").data
    with pytest.raises(openai.PermissionDeniedError) as denied:
        carol.files.delete(f.id)
    assert "'carol' cannot perform action 'delete'" in str(denied.value)
    assert store.id in {x.id for x in root.vector_stores.list().data}
    assert alice.vector_stores.delete(store.id).deleted
    assert alice.files.delete(f.id).deleted


def test_run_yaml_models_are_shared_and_only_admins_change_models(keyed):
    bob, root = oai(keyed, "bob"), oai(keyed, "root")
    assert MODEL_IDENTIFIER in {m.id for m in bob.models.list().data}
    answer = bob.chat.completions.create(model=SERVED_MODEL, max_tokens=2,
                                         messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message is not None
    register = {"model_id": "team-alias", "provider_id": "candle",
                "provider_model_id": SERVED_MODEL, "model_type": "llm"}
    as_bob = requests.post(f"{keyed.url}/v1/models", json=register,
                           headers={"Authorization": f"Bearer {KEYS['bob']}"})
    assert as_bob.status_code == 403, as_bob.text
    delete = requests.delete(f"{keyed.url}/v1/models/{MODEL_IDENTIFIER}",
                             headers={"Authorization": f"Bearer {KEYS['bob']}"})
    assert delete.status_code == 403, delete.text
    as_root = requests.post(f"{keyed.url}/v1/models", json=register,
                            headers={"Authorization": f"Bearer {KEYS['root']}"})
    assert as_root.status_code == 200, as_root.text
    assert "team-alias" in {m.id for m in bob.models.list().data}
    root.models.delete("team-alias")


def test_responses_conversations_and_prompts_are_private(keyed):
    alice, bob, carol = oai(keyed, "alice"), oai(keyed, "bob"), oai(keyed, "carol")
    response = alice.responses.create(model=SERVED_MODEL, input="hi", max_output_tokens=4,
                                      store=True)
    conversation = alice.conversations.create(items=[{"type": "message", "role": "user",
                                                      "content": "hello"}])
    prompt = requests.post(f"{keyed.url}/v1/prompts", json={"prompt": "Say {{ x }}",
                           "variables": ["x"]}, headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert prompt.status_code == 200, prompt.text
    prompt_id = prompt.json()["prompt_id"]
    for call in (lambda: bob.responses.retrieve(response.id),
                 lambda: bob.responses.delete(response.id),
                 lambda: bob.responses.input_items.list(response.id),
                 lambda: bob.conversations.retrieve(conversation.id),
                 lambda: bob.conversations.items.list(conversation.id),
                 lambda: bob.conversations.delete(conversation.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    with pytest.raises((openai.NotFoundError, openai.BadRequestError)):
        bob.responses.create(model=SERVED_MODEL, input="go on", max_output_tokens=2,
                             previous_response_id=response.id)
    assert get(keyed, f"/v1/prompts/{prompt_id}", "bob").status_code == 404
    assert prompt_id not in {p["prompt_id"] for p in get(keyed, "/v1/prompts", "bob").json()["data"]}
    assert get(keyed, f"/v1/prompts/{prompt_id}", "carol").status_code == 200
    assert carol.responses.retrieve(response.id).id == response.id
    assert alice.responses.retrieve(response.id).id == response.id
    alice.conversations.delete(conversation.id)


def test_batches_are_private_and_run_as_their_owner(keyed):
    alice, bob, carol = oai(keyed, "alice"), oai(keyed, "bob"), oai(keyed, "carol")
    line = {"custom_id": "a1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": SERVED_MODEL, "max_tokens": 2,
                     "messages": [{"role": "user", "content": "hi"}]}}
    import io
    import json

    upload = alice.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())),
                                purpose="batch")
    batch = alice.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                 completion_window="24h")
    for call in (lambda: bob.batches.retrieve(batch.id), lambda: bob.batches.cancel(batch.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert batch.id not in {b.id for b in bob.batches.list().data}
    assert carol.batches.retrieve(batch.id).id == batch.id  # alice's team reads it
    deadline = time.monotonic() + 60
    while (done := alice.batches.retrieve(batch.id)).status not in ("completed", "failed"):
        assert time.monotonic() < deadline, done
        time.sleep(0.2)
    assert done.status == "completed" and done.request_counts.completed == 1, done
    # The output file is alice's: bob cannot read it.
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(done.output_file_id)
    # A batch runs as its creator: bob's batch cannot read alice's input file.
    theirs = bob.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                completion_window="24h")
    while (failed := bob.batches.retrieve(theirs.id)).status not in ("completed", "failed"):
        assert time.monotonic() < deadline + 30, failed
        time.sleep(0.2)
    assert failed.status == "failed" and failed.errors.data[0].param == "input_file_id"
    # Idempotency keys are per user: bob's "nightly" is not alice's.
    mine = alice.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                completion_window="24h", extra_body={"idempotency_key": "nightly"})
    his = bob.batches.create(input_file_id="file-other", endpoint="/v1/chat/completions",
                             completion_window="24h", extra_body={"idempotency_key": "nightly"})
    assert his.id != mine.id


def test_agents_and_sessions_are_private(keyed):
    alice, bob, carol = ls(keyed, "alice"), ls(keyed, "bob"), ls(keyed, "carol")
    agent_id = alice.agents.create(agent_config={"model": SERVED_MODEL, "instructions": "",
                                                 "sampling_params": {"max_tokens": 2}}).agent_id
    session_id = alice.agents.session.create(agent_id=agent_id, session_name="mine").session_id
    # Hidden exactly as a missing agent is: the classic routes answer 400 "not found" for both.
    missing = (llama_stack_client.NotFoundError, llama_stack_client.BadRequestError)
    with pytest.raises(missing, match="not found"):
        bob.agents.retrieve(agent_id)
    with pytest.raises(missing, match="not found"):
        bob.agents.session.retrieve(session_id=session_id, agent_id=agent_id)
    with pytest.raises(missing, match="not found"):
        bob.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                               messages=[{"role": "user", "content": "hi"}])
    listed = get(keyed, "/v1/agents", "bob").json()["data"]
    assert agent_id not in {a["agent_id"] for a in listed}
    # A team mate reads the session but may not add turns to it.
    assert carol.agents.session.retrieve(session_id=session_id, agent_id=agent_id)
    with pytest.raises(llama_stack_client.PermissionDeniedError):
        carol.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                 messages=[{"role": "user", "content": "hi"}])
    turn = alice.agents.turn.create(agent_id=agent_id, session_id=session_id, stream=False,
                                    messages=[{"role": "user", "content": "hi"}])
    assert turn.turn_id


def test_a_tool_call_cannot_reach_a_vector_db_its_user_may_not_read(keyed):
    alice, bob = ls(keyed, "alice"), ls(keyed, "bob")
    alice.vector_dbs.register(vector_db_id="alice-kb", embedding_model="all-MiniLM-L6-v2",
                              embedding_dimension=384, provider_id="sqlite-vec")
    alice.tool_runtime.rag_tool.insert(vector_db_id="alice-kb", chunk_size_in_tokens=128,
                                       documents=[{"document_id": "d1", "metadata": {},
                                                   "content": "The vault code is 4711."}])
    found = alice.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={
        "query": "vault code", "vector_db_ids": ["alice-kb"]})
    assert "4711" in str(found.content)
    with pytest.raises((llama_stack_client.NotFoundError, llama_stack_client.BadRequestError)):
        bob.tool_runtime.invoke_tool(tool_name="knowledge_search", kwargs={
            "query": "vault code", "vector_db_ids": ["alice-kb"]})
    assert "alice-kb" not in {d.identifier for d in bob.vector_dbs.list()}
    with pytest.raises((llama_stack_client.NotFoundError, llama_stack_client.BadRequestError),
                       match="not found"):
        bob.vector_dbs.unregister("alice-kb")
    assert [d.identifier for d in alice.vector_dbs.list()].count("alice-kb") == 1


@pytest.fixture(scope="module")
def issuer():
    served = Issuer()
    yield served
    served.close()


def test_jwts_from_a_jwks_issuer(server_factory, tmp_path_factory, issuer):
    config = run_yaml_with_auth(tmp_path_factory, "auth-jwt", {"provider_config": {
        "type": "oauth2_token", "audience": issuer.audience, "issuer": issuer.issuer,
        "leeway_seconds": 0,
        "jwks": {"uri": issuer.jwks_uri, "refresh_min_interval_seconds": 0}}})
    server = server_factory("auth-jwt", run_config=config).start()

    def status(token: str) -> int:
        return requests.get(f"{server.url}/v1/models",
                            headers={"Authorization": f"Bearer {token}"}).status_code

    good = issuer.token("dana", groups=["ml"])
    assert status(good) == 200
    assert oai(server, good).models.list().data
    assert status(issuer.token("dana", exp_in=-30)) == 401
    assert status(issuer.token("dana", aud="someone-else")) == 401
    assert status(issuer.token("dana", iss="https://evil.test")) == 401
    assert status(Issuer.unsigned("dana", issuer.audience, issuer.issuer)) == 401
    from cryptography.hazmat.primitives.asymmetric import ec
    assert status(issuer.token("dana", key=ec.generate_private_key(ec.SECP256R1()))) == 401
    # Key rotation: a token under the new kid is accepted, the old key is gone.
    old = issuer.token("dana")
    issuer.rotate()
    assert status(issuer.token("dana")) == 200
    assert status(old) in (200, 401)  # the old key is cached until the key set is re-read
    # The principal and its groups become the owner: a file of dana's is hidden from erin.
    dana, erin = oai(server, issuer.token("dana", groups=["ml"])), oai(server, issuer.token("erin"))
    f = dana.files.create(file=("d.txt", b"dana's", "text/plain"), purpose="assistants")
    with pytest.raises(openai.NotFoundError):
        erin.files.retrieve(f.id)
    mate = oai(server, issuer.token("fred", groups=["ml"]))
    assert mate.files.retrieve(f.id).id == f.id
    server.stop()


def test_custom_endpoint_and_its_outage(server_factory, tmp_path_factory):
    endpoint = CustomEndpoint({"tok-gina": {"principal": "gina",
                                            "attributes": {"roles": ["user"]}}})
    config = run_yaml_with_auth(tmp_path_factory, "auth-custom", {
        "provider_config": {"type": "custom", "endpoint": endpoint.endpoint},
        "cache_ttl_seconds": 0})
    server = server_factory("auth-custom", run_config=config).start()
    ok = requests.get(f"{server.url}/v1/models?limit=3",
                      headers={"Authorization": "Bearer tok-gina", "X-Team": "t1"})
    assert ok.status_code == 200
    sent = endpoint.calls[-1]
    assert sent["api_key"] == "tok-gina" and sent["request"]["path"] == "/v1/models"
    assert sent["request"]["headers"]["x-team"] == "t1"
    assert "authorization" not in sent["request"]["headers"]
    assert requests.get(f"{server.url}/v1/models",
                        headers={"Authorization": "Bearer other"}).status_code == 401
    endpoint.close()
    down = requests.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer tok-gina"})
    assert down.status_code in (401, 503), down.text
    server.stop()


def test_route_policy_limits_what_a_role_may_call(server_factory, tmp_path_factory):
    keys = [{"principal": "chatter", "key": "chatter-key-0123456789", "attributes": {"roles": ["chat"]}},
            {"principal": "ops", "key": "ops-key-0123456789abc", "attributes": {"roles": ["admin"]}}]
    config = run_yaml_with_auth(tmp_path_factory, "auth-routes", {
        "provider_config": {"type": "api_keys", "keys": keys},
        "route_policy": [
            {"permit": {"paths": "*"}, "when": "user with admin in roles"},
            {"permit": {"paths": ["/v1/models*", "/v1/chat/completions"]},
             "when": "user with chat in roles"},
        ]})
    server = server_factory("auth-routes", run_config=config).start()
    chatter = openai.OpenAI(base_url=f"{server.url}/v1", api_key="chatter-key-0123456789",
                            max_retries=0)
    assert chatter.models.list().data
    chatter.chat.completions.create(model=SERVED_MODEL, max_tokens=1,
                                    messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chatter.files.list()
    assert "/v1/files" in str(denied.value)
    ops = openai.OpenAI(base_url=f"{server.url}/v1", api_key="ops-key-0123456789abc", max_retries=0)
    assert ops.files.list() is not None
    server.stop()


def test_quota_counts_each_principal_apart(server_factory, tmp_path_factory):
    keys = [{"principal": p, "key": f"{p}-key-0123456789abcdef"} for p in ("hank", "ivy")]
    config = run_yaml_with_auth(tmp_path_factory, "auth-quota", {
        "provider_config": {"type": "api_keys", "keys": keys}},
        quota={"anonymous_max_requests": 1, "authenticated_max_requests": 3, "period": "hour"})
    server = server_factory("auth-quota", run_config=config).start()

    def call(who: str) -> requests.Response:
        return requests.get(f"{server.url}/v1/models",
                            headers={"Authorization": f"Bearer {who}-key-0123456789abcdef"})

    assert [call("hank").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert "principal hank" in call("hank").json()["error"]["message"]
    assert call("ivy").status_code == 200
    server.stop()


def test_upstream_headers_from_a_trusted_gateway(server_factory, tmp_path_factory):
    config = run_yaml_with_auth(tmp_path_factory, "auth-gateway", {"provider_config": {
        "type": "upstream_header", "principal_header": "X-Auth-User",
        "attributes_header": "X-Auth-Attributes"}})
    server = server_factory("auth-gateway", run_config=config).start()
    assert requests.get(f"{server.url}/v1/models").status_code == 401
    jo = {"X-Auth-User": "jo", "X-Auth-Attributes": '{"teams": ["ml"]}'}
    kim = {"X-Auth-User": "kim"}
    uploaded = requests.post(f"{server.url}/v1/files", headers=jo, data={"purpose": "assistants"},
                             files={"file": ("j.txt", b"jo's", "text/plain")})
    assert uploaded.status_code == 200, uploaded.text
    file_id = uploaded.json()["id"]
    assert requests.get(f"{server.url}/v1/files/{file_id}", headers=kim).status_code == 404
    assert requests.get(f"{server.url}/v1/files/{file_id}", headers=jo).status_code == 200
    server.stop()


def test_token_budget_per_principal(server_factory, tmp_path_factory):
    keys = [{"principal": p, "key": f"{p}-key-0123456789abcdef"} for p in ("lena", "mo")]
    config = run_yaml_with_auth(tmp_path_factory, "auth-tokens", {
        "provider_config": {"type": "api_keys", "keys": keys}},
        quota={"authenticated_max_requests": 1000, "authenticated_max_tokens": 15,
               "period": "hour"})
    server = server_factory("auth-tokens", run_config=config).start()

    def chat(who: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=f"{who}-key-0123456789abcdef",
                               max_retries=0)
        return client.chat.completions.create(
            model=SERVED_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hello there"}])

    first = chat("lena")
    assert first.usage.total_tokens > 15
    # The usage is counted as the answer ends; the next call is refused once it is.
    deadline = time.time() + 5
    while True:
        try:
            chat("lena")
        except openai.RateLimitError as over:
            assert "Token budget exceeded" in str(over) and "principal lena" in str(over)
            break
        assert time.time() < deadline, "the token budget was never enforced"
        time.sleep(0.2)
    assert chat("mo").choices
    server.stop()
