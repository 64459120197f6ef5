"""Retrieval quality with the real all-MiniLM-L6-v2, on inline::sqlite-vec and on
remote::pgvector: 51 Python standard library docstrings (data/stdlib_docs, PSF License) go in
through the RAG tool with upstream's 512-token chunks, and 37 questions phrased the way a user
asks them (data/retrieval_questions.json) come back through rag-tool/query. Document-level
recall@1 and recall@5 are printed as a `RETRIEVAL ...` line and must reach 0.6 and 0.8."""

from __future__ import annotations

import json

import pytest

from memory_support import (
    DATA_DIR,
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    PROVIDERS,
    classic_client,
    fetch_minilm,
    memory_server,
    postgres_database,
)

MIN_RECALL_AT_1 = 0.6
MIN_RECALL_AT_5 = 0.8
CORPUS_DIR = DATA_DIR / "stdlib_docs"


def load_corpus() -> list[dict]:
    manifest = json.loads((CORPUS_DIR / "manifest.json").read_text())
    return [
        {
            "document_id": entry["document_id"],
            "content": (CORPUS_DIR / entry["file"]).read_text(encoding="utf-8"),
            "mime_type": "text/plain",
            "metadata": {"source": entry["source"]},
        }
        for entry in manifest
    ]


def load_questions() -> list[dict]:
    return json.loads((DATA_DIR / "retrieval_questions.json").read_text())


def test_corpus_and_questions_agree():
    ids = {d["document_id"] for d in load_corpus()}
    questions = load_questions()
    assert len(ids) >= 40 and len(questions) >= 30
    missing = [q for q in questions if q["document_id"] not in ids]
    assert not missing, missing


@pytest.fixture(scope="module")
def minilm():
    return fetch_minilm()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_recall_on_stdlib_docstrings(provider, server_factory, tmp_path_factory, minilm,
                                     tokenizer_model):
    pg_env = postgres_database("quality") if provider == "pgvector" else None
    server = memory_server(
        server_factory, tmp_path_factory, name=f"quality-{provider}", provider=provider,
        minilm=minilm, tokenizer=tokenizer_model, pg_env=pg_env,
    ).start()
    client = classic_client(server)
    client.vector_dbs.register(
        vector_db_id="stdlib", embedding_model=EMBEDDING_MODEL,
        embedding_dimension=EMBEDDING_DIMENSION, provider_id=provider,
    )
    corpus = load_corpus()
    for start in range(0, len(corpus), 10):
        client.tool_runtime.rag_tool.insert(
            vector_db_id="stdlib", documents=corpus[start:start + 10], chunk_size_in_tokens=512
        )

    questions = load_questions()
    hits_at_1 = hits_at_5 = 0
    misses = []
    for q in questions:
        result = client.tool_runtime.rag_tool.query(
            content=q["question"], vector_db_ids=["stdlib"],
            query_config={"max_chunks": 20, "max_tokens_in_context": 1_000_000},
        )
        ranked = list(dict.fromkeys(result.metadata["document_ids"]))
        hits_at_1 += ranked[:1] == [q["document_id"]]
        hits_at_5 += q["document_id"] in ranked[:5]
        if ranked[:1] != [q["document_id"]]:
            misses.append(f"  {q['question']!r}: want {q['document_id']}, got {ranked[:5]}")
    server.stop()

    n = len(questions)
    recall_1, recall_5 = hits_at_1 / n, hits_at_5 / n
    print(f"\nRETRIEVAL provider={provider} recall@1={recall_1:.2f} recall@5={recall_5:.2f} n={n}")
    print("not first:\n" + "\n".join(misses))
    assert recall_5 >= MIN_RECALL_AT_5, f"recall@5 {recall_5:.2f}\n" + "\n".join(misses)
    assert recall_1 >= MIN_RECALL_AT_1, f"recall@1 {recall_1:.2f}\n" + "\n".join(misses)
