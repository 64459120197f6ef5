"""OpenAI files and vector stores end to end with the openai SDK (base URL `/v1`, and
`/v1/openai/v1` for the 0.2.x spelling), on inline::sqlite-vec and on remote::pgvector, with
the real all-MiniLM-L6-v2: upload, list, read back and delete files; create vector stores from
files, attach files with attributes, search by meaning, keyword and hybrid with filters and a
score threshold; update and delete stores and files."""

from __future__ import annotations

import openai
import pytest

from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    PROVIDERS,
    classic_client,
    fetch_minilm,
    memory_server,
    openai_client,
    postgres_database,
)

FILES = {
    "fruit.txt": "Apples and pears grow on trees in temperate orchards. They are picked in autumn "
                 "and keep for months in a cool cellar.",
    "space.txt": "The Moon orbits the Earth about once every 27 days, and the same side always "
                 "faces us because of tidal locking.",
    "ocean.txt": "Coral reefs are built by colonies of tiny animals and shelter a quarter of all "
                 "marine species, although they cover a tiny fraction of the sea floor.",
}


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


@pytest.fixture(scope="module", params=PROVIDERS)
def provider(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(provider, server_factory, tmp_path_factory, minilm, tokenizer_model):
    pg_env = postgres_database("openai_shared") if provider == "pgvector" else None
    server = memory_server(
        server_factory, tmp_path_factory, name=f"openai-{provider}", provider=provider,
        minilm=minilm, tokenizer=tokenizer_model, pg_env=pg_env,
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oai(stack) -> openai.OpenAI:
    return openai_client(stack, "/v1")


@pytest.fixture(scope="module")
def uploaded(oai) -> dict[str, str]:
    """The three text files, uploaded once: filename -> file id."""
    ids = {}
    for name, text in FILES.items():
        created = oai.files.create(file=(name, text.encode(), "text/plain"), purpose="assistants")
        ids[name] = created.id
    return ids


def store_body(provider: str) -> dict:
    return {
        "embedding_model": EMBEDDING_MODEL,
        "embedding_dimension": EMBEDDING_DIMENSION,
        "provider_id": provider,
    }


def search(oai, store_id: str, query: str, **kwargs) -> list:
    page = oai.vector_stores.search(store_id, query=query, **kwargs)
    return list(page.data)


# --- files -----------------------------------------------------------------------------------


def test_file_upload_list_content_delete(oai):
    payload = "Grüße aus Köln — bytes as uploaded.\n".encode() + bytes(range(256))
    created = oai.files.create(file=("raw.bin", payload, "application/octet-stream"),
                               purpose="assistants")
    assert created.id.startswith("file-"), created.id
    assert created.object == "file"
    assert created.bytes == len(payload)
    assert created.filename == "raw.bin"
    assert created.purpose == "assistants"
    assert created.created_at > 0

    listed = {f.id: f for f in oai.files.list(purpose="assistants").data}
    assert created.id in listed
    assert listed[created.id].filename == "raw.bin"

    got = oai.files.retrieve(created.id)
    assert (got.id, got.bytes, got.filename) == (created.id, len(payload), "raw.bin")
    content = oai.files.content(created.id)
    assert content.content == payload
    # Served as a download a browser never sniffs into something it would run.
    assert content.response.headers["x-content-type-options"] == "nosniff"

    deleted = oai.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        oai.files.content(created.id)
    assert created.id not in {f.id for f in oai.files.list().data}


# --- vector stores -----------------------------------------------------------------------------


def test_store_from_files_lists_and_searches(oai, uploaded, provider, stack):
    store = oai.vector_stores.create(
        name="three topics", file_ids=list(uploaded.values()), extra_body=store_body(provider)
    )
    assert store.id.startswith("vs_") and store.object == "vector_store"
    assert store.name == "three topics"
    assert store.status == "completed"
    assert store.file_counts.completed == 3 and store.file_counts.total == 3
    assert store.file_counts.failed == 0 and store.file_counts.in_progress == 0
    assert store.usage_bytes > 0

    assert oai.vector_stores.retrieve(store.id).file_counts.completed == 3
    assert store.id in {s.id for s in oai.vector_stores.list().data}

    attached = oai.vector_stores.files.list(vector_store_id=store.id).data
    assert sorted(f.id for f in attached) == sorted(uploaded.values())
    assert all(f.status == "completed" and f.vector_store_id == store.id for f in attached)
    one = oai.vector_stores.files.retrieve(uploaded["space.txt"], vector_store_id=store.id)
    assert one.object == "vector_store.file" and one.status == "completed"
    assert one.last_error is None

    hits = search(oai, store.id, "How long does the Moon take to go around the Earth?",
                  max_num_results=2)
    assert len(hits) == 2
    assert hits[0].file_id == uploaded["space.txt"], [h.filename for h in hits]
    assert hits[0].filename == "space.txt"
    assert hits[0].content[0].type == "text" and "27 days" in hits[0].content[0].text
    assert hits[0].score >= hits[1].score

    page = oai.vector_stores.search(store.id, query="reef animals")
    assert page.search_query == ["reef animals"] and page.has_more is False
    assert page.data[0].file_id == uploaded["ocean.txt"]
    assert len(page.data) == 3, "max_num_results defaults to 10; all three chunks come back"

    # A threshold between the best and second-best score keeps only the best.
    scores = [h.score for h in search(oai, store.id, "orchard fruit harvest")]
    threshold = (scores[0] + scores[1]) / 2
    cut = search(oai, store.id, "orchard fruit harvest",
                 ranking_options={"score_threshold": threshold})
    assert [h.file_id for h in cut] == [uploaded["fruit.txt"]], (scores, threshold)

    keyword = search(oai, store.id, "tidal locking", extra_body={"search_mode": "keyword"})
    assert [h.file_id for h in keyword] == [uploaded["space.txt"]]
    hybrid = search(oai, store.id, "Which fruit keeps in a cellar?",
                    extra_body={"search_mode": "hybrid"}, max_num_results=3)
    assert hybrid[0].file_id == uploaded["fruit.txt"]

    # A vector store id is also a vector DB id for the classic vector-io routes (§9).
    classic = classic_client(stack)
    chunks = classic.vector_io.query(vector_db_id=store.id, query="coral", params={"max_chunks": 1})
    assert "Coral reefs" in chunks.chunks[0].content


def test_attributes_filter_search(oai, uploaded, provider):
    store = oai.vector_stores.create(name="filtered", extra_body=store_body(provider))
    assert store.file_counts.total == 0
    topics = {"fruit.txt": ("food", 2023), "space.txt": ("science", 2024), "ocean.txt": ("science", 2025)}
    for name, (topic, year) in topics.items():
        attached = oai.vector_stores.files.create(
            vector_store_id=store.id, file_id=uploaded[name],
            attributes={"topic": topic, "year": year},
        )
        assert attached.status == "completed", attached.last_error
        assert attached.attributes == {"topic": topic, "year": year}
    assert oai.vector_stores.retrieve(store.id).file_counts.completed == 3

    # The fruit file matches the query best, but the filter leaves only science.
    science = search(oai, store.id, "apples and pears",
                     filters={"type": "eq", "key": "topic", "value": "science"})
    assert {h.file_id for h in science} == {uploaded["space.txt"], uploaded["ocean.txt"]}
    assert all(h.attributes["topic"] == "science" for h in science)

    recent = search(oai, store.id, "apples and pears", filters={
        "type": "and", "filters": [
            {"type": "eq", "key": "topic", "value": "science"},
            {"type": "gte", "key": "year", "value": 2025},
        ]})
    assert [h.file_id for h in recent] == [uploaded["ocean.txt"]]

    food = search(oai, store.id, "moon", filters={"type": "ne", "key": "topic", "value": "science"})
    assert [h.file_id for h in food] == [uploaded["fruit.txt"]]
    assert food[0].attributes["year"] == 2023

    # New attributes apply to later searches.
    updated = oai.vector_stores.files.update(
        uploaded["fruit.txt"], vector_store_id=store.id, attributes={"topic": "science", "year": 2030}
    )
    assert updated.attributes == {"topic": "science", "year": 2030}
    now_science = search(oai, store.id, "apples and pears",
                         filters={"type": "eq", "key": "topic", "value": "science"})
    assert now_science[0].file_id == uploaded["fruit.txt"]


def test_deleting_a_file_removes_its_chunks(oai, uploaded, provider):
    store = oai.vector_stores.create(
        name="shrinking", file_ids=list(uploaded.values()), extra_body=store_body(provider)
    )
    before = search(oai, store.id, "coral reefs")
    assert before[0].file_id == uploaded["ocean.txt"]

    deleted = oai.vector_stores.files.delete(uploaded["ocean.txt"], vector_store_id=store.id)
    assert deleted.deleted is True and deleted.id == uploaded["ocean.txt"]
    after = search(oai, store.id, "coral reefs")
    assert uploaded["ocean.txt"] not in {h.file_id for h in after}
    assert len(after) == 2
    keyword = search(oai, store.id, "coral", extra_body={"search_mode": "keyword"})
    assert keyword == []
    assert oai.vector_stores.retrieve(store.id).file_counts.total == 2
    with pytest.raises(openai.NotFoundError):
        oai.vector_stores.files.retrieve(uploaded["ocean.txt"], vector_store_id=store.id)
    # The uploaded file itself is untouched.
    assert oai.files.retrieve(uploaded["ocean.txt"]).filename == "ocean.txt"


def test_update_and_delete_store(oai, uploaded, provider):
    store = oai.vector_stores.create(
        name="temporary", file_ids=[uploaded["fruit.txt"]], extra_body=store_body(provider),
        metadata={"team": "a"},
    )
    updated = oai.vector_stores.update(store.id, name="renamed", metadata={"team": "b"})
    assert updated.id == store.id
    assert updated.name == "renamed"
    assert updated.metadata.get("team") == "b"
    assert updated.last_active_at is not None and updated.last_active_at >= store.created_at
    assert oai.vector_stores.retrieve(store.id).name == "renamed"

    deleted = oai.vector_stores.delete(store.id)
    assert deleted.deleted is True and deleted.id == store.id
    with pytest.raises(openai.NotFoundError):
        oai.vector_stores.retrieve(store.id)
    with pytest.raises(openai.NotFoundError):
        oai.vector_stores.search(store.id, query="apples")
    assert store.id not in {s.id for s in oai.vector_stores.list().data}


def test_openai_v1_prefix_spelling(stack, uploaded, provider):
    legacy = openai_client(stack, "/v1/openai/v1")
    assert set(uploaded.values()) <= {f.id for f in legacy.files.list().data}
    store = legacy.vector_stores.create(
        name="legacy prefix", file_ids=[uploaded["space.txt"]], extra_body=store_body(provider)
    )
    hits = search(legacy, store.id, "moon orbit")
    assert hits[0].file_id == uploaded["space.txt"]


# --- what upstream's own v0.2.14 tests rely on -----------------------------------------------


def test_numbers_sent_as_strings_register_a_vector_db(stack, provider):
    import requests

    resp = requests.post(f"{stack.url}/v1/vector-dbs", json={
        "vector_db_id": f"strings-{provider}", "embedding_model": EMBEDDING_MODEL,
        "embedding_dimension": str(EMBEDDING_DIMENSION), "provider_id": provider})
    assert resp.status_code == 200, resp.text
    assert resp.json()["embedding_dimension"] == EMBEDDING_DIMENSION
    bad = requests.post(f"{stack.url}/v1/vector-dbs", json={
        "vector_db_id": "bad", "embedding_model": EMBEDDING_MODEL,
        "embedding_dimension": "many", "provider_id": provider})
    assert bad.status_code == 400 and "embedding_dimension" in bad.text


def test_files_read_back_their_chunking_strategy_and_text(oai, uploaded, provider):
    store = oai.vector_stores.create(name="auto", file_ids=[uploaded["space.txt"]],
                                     extra_body=store_body(provider))
    files = oai.vector_stores.files.list(store.id).data
    assert files[0].chunking_strategy.type == "auto"
    # The file's text, in OpenAI's page shape and upstream 0.2's.
    import requests

    for prefix in ("/v1", "/v1/openai/v1"):
        content = requests.get(
            f"{oai.base_url.scheme}://{oai.base_url.host}:{oai.base_url.port}{prefix}"
            f"/vector_stores/{store.id}/files/{uploaded['space.txt']}/content").json()
        assert content["data"][0]["text"] == FILES["space.txt"]
        assert content["content"][0]["type"] == "text"
        assert content["filename"] == "space.txt"
    oai.vector_stores.delete(store.id)


def test_a_missing_file_fails_alone_when_a_store_is_created(oai, uploaded, provider):
    store = oai.vector_stores.create(name="partial",
                                     file_ids=[uploaded["fruit.txt"], "file-does-not-exist"],
                                     extra_body=store_body(provider))
    assert store.file_counts.completed == 1 and store.file_counts.failed == 1
    failed = [f for f in oai.vector_stores.files.list(store.id).data if f.status == "failed"]
    assert failed[0].id == "file-does-not-exist" and failed[0].last_error.code == "invalid_file"
    oai.vector_stores.delete(store.id)


def test_listing_the_files_of_an_unknown_store_is_a_400(oai):
    with pytest.raises(openai.BadRequestError):
        oai.vector_stores.files.list("vs_missing")


def test_plain_map_filters_and_the_search_query_shape_of_each_prefix(stack, oai, uploaded,
                                                                     provider):
    store = oai.vector_stores.create(name="filters", extra_body=store_body(provider))
    oai.vector_stores.files.create(store.id, file_id=uploaded["fruit.txt"],
                                   attributes={"topic": "food"})
    oai.vector_stores.files.create(store.id, file_id=uploaded["space.txt"],
                                   attributes={"topic": "science"})
    hits = search(oai, store.id, "what orbits the earth", filters={"topic": "food"})
    assert hits and all(h.attributes["topic"] == "food" for h in hits)
    # /v1 answers OpenAI's list; the 0.2-era prefix answers the string 0.2 clients read.
    assert oai.vector_stores.search(store.id, query="moon").search_query == ["moon"]
    legacy = openai_client(stack, "/v1/openai/v1")
    assert legacy.vector_stores.search(store.id, query="moon").search_query == "moon"
    oai.vector_stores.delete(store.id)


def test_the_last_id_of_a_file_page_under_each_prefix(stack, oai, uploaded, provider):
    names = ["fruit.txt", "space.txt", "ocean.txt"]
    store = oai.vector_stores.create(name="pages", file_ids=[uploaded[n] for n in names],
                                     extra_body=store_body(provider))
    page = oai.vector_stores.files.list(store.id, limit=2)
    assert page.has_more and page.last_id == page.data[-1].id
    # 0.2-era `last_id`: the last file past the page, as upstream's v0.2.14 tests pin it.
    legacy = openai_client(stack, "/v1/openai/v1").vector_stores.files.list(store.id, limit=2)
    every = oai.vector_stores.files.list(store.id, limit=10).data
    assert legacy.has_more and legacy.last_id == every[-1].id != legacy.data[-1].id
    oai.vector_stores.delete(store.id)


def test_a_file_batch_attaches_its_files_in_the_background(oai, uploaded, provider):
    store = oai.vector_stores.create(name="batched", extra_body=store_body(provider))
    ids = [uploaded["fruit.txt"], uploaded["ocean.txt"], "file-missing"]
    batch = oai.vector_stores.file_batches.create(store.id, file_ids=ids,
                                                  attributes={"source": "batch"})
    assert batch.object == "vector_store.files_batch" and batch.file_counts.total == 3
    import time

    deadline = time.monotonic() + 60
    while batch.status == "in_progress":
        assert time.monotonic() < deadline, "the batch never finished"
        time.sleep(0.2)
        batch = oai.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert batch.status == "completed"
    assert (batch.file_counts.completed, batch.file_counts.failed) == (2, 1)
    files = oai.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id).data
    assert {f.id for f in files} == set(ids)
    done = [f for f in files if f.status == "completed"]
    assert all(f.attributes == {"source": "batch"} for f in done)
    assert search(oai, store.id, "coral reefs")[0].file_id == uploaded["ocean.txt"]
    # A finished batch stays as it ended.
    cancelled = oai.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "completed"
    with pytest.raises(openai.NotFoundError):
        oai.vector_stores.file_batches.retrieve("vsfb_missing", vector_store_id=store.id)
    with pytest.raises(openai.BadRequestError):
        oai.vector_stores.file_batches.create(store.id, file_ids=[])
    oai.vector_stores.delete(store.id)
