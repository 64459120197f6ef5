"""Classic memory APIs end to end with llama-stack-client 0.2.23, on inline::sqlite-vec and on
remote::pgvector, with the real all-MiniLM-L6-v2: vector DB registration, vector-io insert and
query (vector, keyword and hybrid modes, precomputed embeddings, TTL), the RAG tool (text,
data: URLs, HTML, refused private URLs, partial failures, the exact knowledge_search framing
of §5.3, 512/128-token chunking), tool groups, and stores surviving a SIGKILL."""

from __future__ import annotations

import json
import time

import pytest
from llama_stack_client import APIStatusError

from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    PROVIDERS,
    LocalDocumentServer,
    classic_client,
    data_url,
    fetch_minilm,
    item_texts,
    knowledge_search_texts,
    memory_server,
    postgres_database,
    single_token_words,
)

# Upstream's tests/integration/vector_io/test_vector_io.py sample chunks and questions.
SAMPLE_CHUNKS = [
    ("doc1", "Python is a high-level programming language that emphasizes code readability and "
     "allows programmers to express concepts in fewer lines of code than would be possible in "
     "languages such as C++ or Java."),
    ("doc2", "Machine learning is a subset of artificial intelligence that enables systems to "
     "automatically learn and improve from experience without being explicitly programmed, using "
     "statistical techniques to give computer systems the ability to progressively improve "
     "performance on a specific task."),
    ("doc3", "Data structures are fundamental to computer science because they provide organized "
     "ways to store and access data efficiently, enable faster processing of large datasets, and "
     "help solve complex computational problems."),
    ("doc4", "Neural networks are inspired by biological neural networks found in animal brains, "
     "using interconnected nodes called artificial neurons to process information through "
     "weighted connections that can be trained to recognize patterns and solve complex problems "
     "through iterative learning."),
]
QUESTIONS = [
    ("What makes Python different from C++ and Java?", "doc1"),
    ("How do systems learn without explicit programming?", "doc2"),
    ("Why are data structures important in computer science?", "doc3"),
    ("What is the biological inspiration for neural networks?", "doc4"),
    ("How does machine learning improve over time?", "doc2"),
]


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


@pytest.fixture(scope="module", params=PROVIDERS)
def provider(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def stack(provider, server_factory, tmp_path_factory, minilm, tokenizer_model):
    pg_env = postgres_database("classic_shared") if provider == "pgvector" else None
    server = memory_server(
        server_factory, tmp_path_factory, name=f"classic-{provider}", provider=provider,
        minilm=minilm, tokenizer=tokenizer_model, pg_env=pg_env,
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(stack):
    return classic_client(stack)


_counter = iter(range(1_000_000))


@pytest.fixture
def vector_db(client, provider) -> str:
    """A fresh vector DB on the module's provider, unregistered afterwards."""
    db_id = f"test-db-{next(_counter)}"
    client.vector_dbs.register(
        vector_db_id=db_id, embedding_model=EMBEDDING_MODEL,
        embedding_dimension=EMBEDDING_DIMENSION, provider_id=provider,
    )
    yield db_id
    try:
        client.vector_dbs.unregister(db_id)
    except APIStatusError:
        pass


def error_text(exc: APIStatusError) -> str:
    return json.dumps(exc.body) if exc.body is not None else str(exc)


def insert_samples(client, db_id: str) -> None:
    client.vector_io.insert(
        vector_db_id=db_id,
        chunks=[{"content": text, "metadata": {"document_id": doc}} for doc, text in SAMPLE_CHUNKS],
    )


def doc_ids(response) -> list[str]:
    return [c.metadata["document_id"] for c in response.chunks]


# --- vector DBs ------------------------------------------------------------------------------


def test_register_list_retrieve_unregister(client, provider):
    db_id = f"registry-{provider}"
    registered = client.vector_dbs.register(
        vector_db_id=db_id, embedding_model=EMBEDDING_MODEL,
        embedding_dimension=EMBEDDING_DIMENSION, provider_id=provider,
        vector_db_name="Registry test",
    )
    assert registered.identifier == db_id
    assert registered.provider_resource_id == db_id
    assert registered.provider_id == provider
    assert registered.type == "vector_db"
    assert registered.embedding_dimension == EMBEDDING_DIMENSION
    assert registered.embedding_model in (EMBEDDING_MODEL, f"sentence-transformers/{EMBEDDING_MODEL}")

    listed = {db.identifier: db for db in client.vector_dbs.list()}
    assert db_id in listed, sorted(listed)
    assert listed[db_id].provider_resource_id == db_id

    got = client.vector_dbs.retrieve(db_id)
    assert got.identifier == db_id
    assert got.provider_id == provider
    assert got.embedding_dimension == EMBEDDING_DIMENSION

    client.vector_dbs.unregister(db_id)
    assert db_id not in {db.identifier for db in client.vector_dbs.list()}
    with pytest.raises(APIStatusError) as err:
        client.vector_dbs.retrieve(db_id)
    assert err.value.status_code in (400, 404), error_text(err.value)
    assert db_id in error_text(err.value)


def test_unknown_vector_db_is_an_error(client):
    for call in (
        lambda: client.vector_io.query(vector_db_id="no-such-db", query="anything"),
        lambda: client.vector_io.insert(
            vector_db_id="no-such-db", chunks=[{"content": "x", "metadata": {"document_id": "d"}}]
        ),
        lambda: client.tool_runtime.rag_tool.query(content="anything", vector_db_ids=["no-such-db"]),
    ):
        with pytest.raises(APIStatusError) as err:
            call()
        assert err.value.status_code in (400, 404), error_text(err.value)
        assert "no-such-db" in error_text(err.value)


# --- vector IO -------------------------------------------------------------------------------


def test_vector_query_finds_the_semantically_closest_chunk(client, vector_db):
    insert_samples(client, vector_db)
    for question, expected in QUESTIONS:
        response = client.vector_io.query(
            vector_db_id=vector_db, query=question, params={"max_chunks": 2}
        )
        assert len(response.chunks) == len(response.scores) == 2
        assert doc_ids(response)[0] == expected, (question, doc_ids(response), response.scores)
        assert response.scores[0] >= response.scores[1]
        assert response.chunks[0].content == dict(SAMPLE_CHUNKS)[expected]

    # No threshold means no cut-off: an unrelated question still gets chunks back (§9).
    unrelated = client.vector_io.query(vector_db_id=vector_db, query="Recipe for banana bread")
    assert len(unrelated.chunks) == 3, "max_chunks defaults to 3"
    assert len(unrelated.chunks) > 1


def test_score_threshold_cuts_results(client, vector_db):
    insert_samples(client, vector_db)
    question = QUESTIONS[0][0]
    all_hits = client.vector_io.query(vector_db_id=vector_db, query=question, params={"max_chunks": 4})
    scores = all_hits.scores
    assert len(scores) == 4 and scores == sorted(scores, reverse=True), scores
    threshold = (scores[0] + scores[1]) / 2
    cut = client.vector_io.query(
        vector_db_id=vector_db, query=question,
        params={"max_chunks": 4, "score_threshold": threshold},
    )
    assert doc_ids(cut) == ["doc1"], (threshold, cut.scores)
    assert all(s >= threshold for s in cut.scores)


def test_keyword_and_hybrid_modes(client, vector_db):
    insert_samples(client, vector_db)
    keyword = client.vector_io.query(
        vector_db_id=vector_db, query="readability", params={"mode": "keyword", "max_chunks": 3}
    )
    assert doc_ids(keyword) == ["doc1"], "only doc1 contains the word"
    assert keyword.scores[0] > 0

    neurons = client.vector_io.query(
        vector_db_id=vector_db, query="artificial neurons weighted connections",
        params={"mode": "keyword", "max_chunks": 4},
    )
    assert doc_ids(neurons)[0] == "doc4", (doc_ids(neurons), neurons.scores)
    assert neurons.scores == sorted(neurons.scores, reverse=True)

    for question, expected in QUESTIONS[:3]:
        hybrid = client.vector_io.query(
            vector_db_id=vector_db, query=question, params={"mode": "hybrid", "max_chunks": 3}
        )
        assert 1 <= len(hybrid.chunks) <= 3
        assert doc_ids(hybrid)[0] == expected, (question, doc_ids(hybrid), hybrid.scores)
        assert hybrid.scores == sorted(hybrid.scores, reverse=True)

    with pytest.raises(APIStatusError) as err:
        client.vector_io.query(vector_db_id=vector_db, query="x", params={"mode": "semantic"})
    assert err.value.status_code == 400
    assert "semantic" in error_text(err.value)


def test_precomputed_embeddings_are_used_as_given(client, vector_db):
    vectors = client.inference.embeddings(
        model_id=EMBEDDING_MODEL,
        contents=["The ocean is deep, cold and blue.", "Mountains are covered in snow."],
    ).embeddings
    assert len(vectors[0]) == EMBEDDING_DIMENSION
    # The text says apples, the vector says ocean: a search by meaning must follow the vector.
    client.vector_io.insert(
        vector_db_id=vector_db,
        chunks=[
            {"content": "Apples are sweet red fruit.", "metadata": {"document_id": "ocean-vector"},
             "embedding": vectors[0]},
            {"content": "Bananas are yellow.", "metadata": {"document_id": "snow-vector"},
             "embedding": vectors[1]},
        ],
    )
    response = client.vector_io.query(
        vector_db_id=vector_db, query="deep blue sea water", params={"max_chunks": 2}
    )
    assert doc_ids(response)[0] == "ocean-vector", (doc_ids(response), response.scores)
    assert response.chunks[0].content == "Apples are sweet red fruit."


def test_wrong_embedding_dimension_is_rejected(client, vector_db):
    with pytest.raises(APIStatusError) as err:
        client.vector_io.insert(
            vector_db_id=vector_db,
            chunks=[{"content": "short vector", "metadata": {"document_id": "bad"},
                     "embedding": [0.1, 0.2, 0.3]}],
        )
    assert err.value.status_code == 400, error_text(err.value)
    text = error_text(err.value)
    assert "3" in text and str(EMBEDDING_DIMENSION) in text and "dimension" in text, text
    # Nothing of the rejected request was stored.
    response = client.vector_io.query(
        vector_db_id=vector_db, query="short vector", params={"mode": "keyword"}
    )
    assert response.chunks == []


def test_ttl_seconds_expires_chunks(client, vector_db):
    client.vector_io.insert(
        vector_db_id=vector_db,
        chunks=[{"content": "Ephemeral note about hummingbirds.", "metadata": {"document_id": "ttl"}}],
        ttl_seconds=2,
    )
    client.vector_io.insert(
        vector_db_id=vector_db,
        chunks=[{"content": "Permanent note about hummingbirds.", "metadata": {"document_id": "keep"}}],
    )
    first = client.vector_io.query(vector_db_id=vector_db, query="hummingbirds", params={"max_chunks": 5})
    assert sorted(doc_ids(first)) == ["keep", "ttl"]
    deadline = time.monotonic() + 15
    while True:
        time.sleep(1)
        later = client.vector_io.query(
            vector_db_id=vector_db, query="hummingbirds", params={"max_chunks": 5}
        )
        if doc_ids(later) == ["keep"]:
            break
        assert time.monotonic() < deadline, f"the 2 s TTL chunk is still returned: {doc_ids(later)}"
    keyword = client.vector_io.query(
        vector_db_id=vector_db, query="Ephemeral", params={"mode": "keyword"}
    )
    assert keyword.chunks == [], "an expired chunk is gone from keyword search too"


# --- the RAG tool ----------------------------------------------------------------------------

RAG_DOCS = [
    {"document_id": "rag-paris",
     "content": "Paris is the capital of France. The Eiffel Tower stands on the Champ de Mars.",
     "mime_type": "text/plain",
     "metadata": {"source": "handbook", "author": "O'Brien", "year": 2024, "reviewed": True}},
    {"document_id": "rag-tokyo", "content": "Tokyo is the capital of Japan and its largest city.",
     "metadata": {}},
    {"document_id": "rag-bread",
     "content": "Sourdough bread rises with wild yeast and lactic acid bacteria.",
     "metadata": {"source": "kitchen"}},
]


def expected_results(document_ids: list[str]) -> list[tuple[str, dict]]:
    by_id = {d["document_id"]: d for d in RAG_DOCS}
    return [
        (by_id[i]["content"], {**by_id[i]["metadata"], "document_id": i}) for i in document_ids
    ]


def test_rag_query_text_is_framed_like_upstream(client, vector_db):
    client.tool_runtime.rag_tool.insert(
        vector_db_id=vector_db, documents=RAG_DOCS, chunk_size_in_tokens=512
    )
    query = "What is the capital of France?"
    result = client.tool_runtime.rag_tool.query(
        content=query, vector_db_ids=[vector_db], query_config={"max_chunks": 2}
    )
    ids = result.metadata["document_ids"]
    assert len(ids) == 2 and ids[0] == "rag-paris", ids
    assert ids[1] in ("rag-tokyo", "rag-bread")
    texts = item_texts(result.content)
    assert texts == knowledge_search_texts(query, expected_results(ids))
    # Spelled out once, so a mistake in the helper cannot hide one in the server.
    assert texts[0] == (
        "knowledge_search tool found 2 chunks:\nBEGIN of knowledge_search tool results.\n"
    )
    assert texts[1] == (
        "Result 1\nContent: Paris is the capital of France. The Eiffel Tower stands on the Champ "
        "de Mars.\nMetadata: {'source': 'handbook', 'author': \"O'Brien\", 'year': 2024, "
        "'reviewed': True, 'document_id': 'rag-paris'}\n"
    )
    assert texts[-2] == "END of knowledge_search tool results.\n"
    assert texts[-1] == (
        "The above results were retrieved to help answer the user's query: \"What is the capital "
        "of France?\". Use them as supporting information only in answering this query.\n"
    )


def test_invoke_knowledge_search(client, vector_db):
    client.tool_runtime.rag_tool.insert(
        vector_db_id=vector_db, documents=RAG_DOCS, chunk_size_in_tokens=512
    )
    query = "How is sourdough bread leavened?"
    result = client.tool_runtime.invoke_tool(
        tool_name="knowledge_search", kwargs={"query": query, "vector_db_ids": [vector_db]}
    )
    assert result.error_message is None and result.error_code is None
    ids = result.metadata["document_ids"]
    assert ids[0] == "rag-bread" and sorted(ids) == sorted(d["document_id"] for d in RAG_DOCS), ids
    assert item_texts(result.content) == knowledge_search_texts(query, expected_results(ids))


def test_rag_query_on_an_empty_db_has_no_content(client, vector_db):
    result = client.tool_runtime.rag_tool.query(content="anything at all", vector_db_ids=[vector_db])
    assert result.content is None


HTML_PAGE = """<!doctype html><html><head><title>Glaciers</title>
<script>var tracking = "SCRIPT-SHOULD-NOT-BE-INDEXED";</script>
<style>body { color: red }</style></head>
<body><h1>Glaciers</h1><p>Glaciers are slow rivers of ice that carve valleys.</p></body></html>"""


def test_rag_insert_loads_data_urls_and_reports_bad_documents(client, vector_db):
    documents = [
        {"document_id": "plain", "content": "Volcanoes erupt molten rock called lava."},
        {"document_id": "data-text",
         "content": data_url("Coral reefs are built by tiny marine animals.", "text/plain"),
         "mime_type": "text/plain", "metadata": {}},
        {"document_id": "data-html", "content": data_url(HTML_PAGE, "text/html"),
         "mime_type": "text/html", "metadata": {}},
        {"document_id": "broken", "content": "data:text/plain;base64,@@not base64@@",
         "metadata": {}},
    ]
    with pytest.raises(APIStatusError) as err:
        client.tool_runtime.rag_tool.insert(
            vector_db_id=vector_db, documents=documents, chunk_size_in_tokens=512
        )
    text = error_text(err.value)
    assert err.value.status_code == 400, text
    assert "broken" in text and "base64" in text, text
    for good in ("plain", "data-text", "data-html"):
        assert f"'{good}'" not in text, text

    found = client.vector_io.query(vector_db_id=vector_db, query="nature", params={"max_chunks": 10})
    by_doc = {c.metadata["document_id"]: c.content for c in found.chunks}
    assert set(by_doc) == {"plain", "data-text", "data-html"}, by_doc
    assert by_doc["data-text"] == "Coral reefs are built by tiny marine animals."
    assert "Glaciers are slow rivers of ice" in by_doc["data-html"]
    assert "SCRIPT-SHOULD-NOT-BE-INDEXED" not in by_doc["data-html"]
    assert "<p>" not in by_doc["data-html"] and "color: red" not in by_doc["data-html"]


def test_rag_insert_refuses_private_addresses(client, vector_db):
    with LocalDocumentServer() as local:
        url = f"{local.url}/intranet.txt"
        with pytest.raises(APIStatusError) as err:
            client.tool_runtime.rag_tool.insert(
                vector_db_id=vector_db, chunk_size_in_tokens=512,
                documents=[{"document_id": "intranet", "content": {"uri": url}, "metadata": {}}],
            )
        with pytest.raises(APIStatusError) as err_plain:
            client.tool_runtime.rag_tool.insert(
                vector_db_id=vector_db, chunk_size_in_tokens=512,
                documents=[{"document_id": "intranet2", "content": url, "metadata": {}}],
            )
        assert local.hits == [], "the server fetched a loopback URL"
    for e in (err.value, err_plain.value):
        text = error_text(e)
        assert e.status_code in (400, 403), text
        assert "127.0.0.1" in text and "private" in text.lower(), text
    assert client.vector_io.query(vector_db_id=vector_db, query="intranet").chunks == []


def test_chunks_are_512_tokens_overlapping_by_128(client, vector_db, tokenizer_model):
    # One Llama 3 token per word, so windows are predictable: 1500 tokens give windows at
    # 0, 384, 768 and 1152 of 512, 512, 512 and 348 tokens.
    pieces = single_token_words(tokenizer_model, 1500)
    tokens = [pieces[0]] + [" " + w for w in pieces[1:]]
    text = "".join(tokens)
    client.tool_runtime.rag_tool.insert(
        vector_db_id=vector_db, chunk_size_in_tokens=512,
        documents=[{"document_id": "long", "content": text, "metadata": {"kind": "words"}}],
    )
    response = client.vector_io.query(
        vector_db_id=vector_db, query=" ".join(pieces[:20]), params={"max_chunks": 10}
    )
    expected = {
        "".join(tokens[start:start + 512]): min(512, 1500 - start) for start in (0, 384, 768, 1152)
    }
    got = {c.content: c.metadata for c in response.chunks}
    assert len(got) == 4, [m for m in got.values()]
    assert set(got) == set(expected), "chunk texts are not the 512-token windows"
    for content, metadata in got.items():
        assert metadata["token_count"] == expected[content]
        assert metadata["document_id"] == "long" and metadata["kind"] == "words"
        # The client's metadata type turns JSON integers into floats.
        assert float(metadata["metadata_token_count"]).is_integer()
        assert metadata["metadata_token_count"] > 0
    ordered = sorted(got, key=lambda c: text.index(c))
    assert [got[c]["token_count"] for c in ordered] == [512, 512, 512, 348]
    for a, b in zip(ordered, ordered[1:]):
        assert a.split()[-128:] == b.split()[:128], "consecutive chunks share 128 tokens"
        assert a.split()[-129:] != b.split()[:129]


# --- tool groups -----------------------------------------------------------------------------


def test_builtin_rag_tool_group_and_tools(client):
    groups = {g.identifier: g for g in client.toolgroups.list()}
    assert "builtin::rag" in groups, sorted(groups)
    assert groups["builtin::rag"].provider_id == "rag-runtime"
    assert client.toolgroups.get("builtin::rag").identifier == "builtin::rag"

    tools = {t.identifier: t for t in client.tools.list(toolgroup_id="builtin::rag")}
    assert {"knowledge_search", "insert_into_memory"} <= set(tools), sorted(tools)
    search = tools["knowledge_search"]
    assert search.toolgroup_id == "builtin::rag"
    assert [(p.name, p.parameter_type) for p in search.parameters] == [("query", "string")]
    assert tools["insert_into_memory"].parameters == []

    runtime = {t.name for t in client.tool_runtime.list_tools(tool_group_id="builtin::rag")}
    assert {"knowledge_search", "insert_into_memory"} <= runtime


# --- restart -------------------------------------------------------------------------------


def test_stores_survive_sigkill(provider, server_factory, tmp_path_factory, minilm, tokenizer_model):
    pg_env = postgres_database("classic_restart") if provider == "pgvector" else None
    server = memory_server(
        server_factory, tmp_path_factory, name=f"restart-{provider}", provider=provider,
        minilm=minilm, tokenizer=tokenizer_model, pg_env=pg_env,
    ).start()
    client = classic_client(server)
    client.vector_dbs.register(
        vector_db_id="durable", embedding_model=EMBEDDING_MODEL,
        embedding_dimension=EMBEDDING_DIMENSION, provider_id=provider,
    )
    client.tool_runtime.rag_tool.insert(
        vector_db_id="durable", documents=RAG_DOCS, chunk_size_in_tokens=512
    )
    insert_samples(client, "durable")
    # No chance to flush anything on the way out.
    server.kill()
    server.start()

    client = classic_client(server)
    assert "durable" in {db.identifier for db in client.vector_dbs.list()}
    assert client.vector_dbs.retrieve("durable").provider_id == provider
    response = client.vector_io.query(
        vector_db_id="durable", query=QUESTIONS[0][0], params={"max_chunks": 7}
    )
    assert doc_ids(response)[0] == "doc1"
    assert len(response.chunks) == 7, "all seven chunks are back"
    keyword = client.vector_io.query(
        vector_db_id="durable", query="Sourdough", params={"mode": "keyword"}
    )
    assert doc_ids(keyword) == ["rag-bread"]
    rag = client.tool_runtime.rag_tool.query(content="capital of Japan", vector_db_ids=["durable"])
    assert rag.metadata["document_ids"][0] == "rag-tokyo"
    server.stop()


def test_inline_html_is_read_as_a_page(client, vector_db):
    client.tool_runtime.rag_tool.insert(
        vector_db_id=vector_db, chunk_size_in_tokens=512,
        documents=[{"document_id": "inline-html", "content": HTML_PAGE,
                    "mime_type": "text/html", "metadata": {}}])
    found = client.vector_io.query(vector_db_id=vector_db, query="glaciers",
                                   params={"max_chunks": 10})
    texts = [c.content for c in found.chunks if c.metadata["document_id"] == "inline-html"]
    assert texts and "Glaciers are slow rivers of ice" in texts[0]
    assert "SCRIPT-SHOULD-NOT-BE-INDEXED" not in texts[0] and "<p>" not in texts[0]


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF showing `text` in Helvetica, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
            .encode())
    return bytes(out)


def test_an_inline_pdf_data_url_is_read_as_a_pdf(client, vector_db):
    import base64

    pdf = base64.b64encode(minimal_pdf("Basalt forms when lava cools quickly")).decode()
    client.tool_runtime.rag_tool.insert(
        vector_db_id=vector_db, chunk_size_in_tokens=512,
        documents=[{"document_id": "inline-pdf", "content": f"data:application/pdf;base64,{pdf}",
                    "mime_type": "application/pdf", "metadata": {}}])
    found = client.vector_io.query(vector_db_id=vector_db, query="basalt lava",
                                   params={"max_chunks": 10})
    texts = [c.content for c in found.chunks if c.metadata["document_id"] == "inline-pdf"]
    assert texts and "Basalt forms when lava cools quickly" in texts[0], texts
    assert "%PDF" not in texts[0]
