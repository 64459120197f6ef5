"""Document QA with the official llama-stack-client (0.2.23) against a running server.

Registers a vector DB, inserts every .txt/.md/.html/.htm/.pdf file of a folder with the RAG
tool, then asks an agent that searches them with `builtin::rag` and prints each answer and the
documents it retrieved.

    .venv/bin/python examples/doc-qa/python/doc_qa.py http://localhost:8321 ./my-docs \
        "What is the refund policy?" "Who signs the contract?"
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import sys
from pathlib import Path

from llama_stack_client import LlamaStackClient
from llama_stack_client.lib.agents.agent import Agent

FILE_TYPES = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}

INSTRUCTIONS = (
    "You answer questions about a collection of documents. For every question, call the "
    "knowledge_search tool to retrieve the relevant passages, and answer only from what it "
    "returns. Cite the documents you used by their document_id in square brackets. If the "
    "passages do not contain the answer, say that the documents do not say."
)


def document_files(root: Path) -> list[Path]:
    """Every file of a known type under `root`, sorted, skipping hidden entries."""
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in FILE_TYPES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def pick_model(client: LlamaStackClient, requested: str | None, model_type: str) -> str:
    if requested:
        return requested
    models = client.models.list()
    for model in models:
        if model.model_type == model_type:
            return model.identifier
    names = ", ".join(m.identifier for m in models) or "none"
    sys.exit(f"error: the server has no {model_type} model (models: {names})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="the server, e.g. http://localhost:8321")
    parser.add_argument("docs", type=Path, help="a folder of documents (read recursively)")
    parser.add_argument("questions", nargs="+", help="the questions to answer")
    parser.add_argument("--model", help="the LLM (default: the server's first LLM)")
    parser.add_argument("--embedding-model", help="default: the server's first embedding model")
    parser.add_argument("--vector-db", help="default: doc-qa-<hash of the documents>")
    args = parser.parse_args()

    files = document_files(args.docs) if args.docs.is_dir() else []
    if not files:
        sys.exit(f"error: no {', '.join(FILE_TYPES)} files in {args.docs}")

    client = LlamaStackClient(base_url=args.base_url)
    model = pick_model(client, args.model, "llm")
    embedding_model = pick_model(client, args.embedding_model, "embedding")

    # Named after the documents' contents, so different folders never share a vector DB.
    digest = hashlib.sha256(embedding_model.encode())
    for path in files:
        digest.update(f"{path.relative_to(args.docs).as_posix()}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    vector_db_id = args.vector_db or f"doc-qa-{digest.hexdigest()[:12]}"
    # Registering again with the same settings returns the existing DB.
    client.vector_dbs.register(vector_db_id=vector_db_id, embedding_model=embedding_model)

    # One document per call, so a bad one is reported and the others still go in. Chunk ids
    # are derived from the content, so inserting a document again replaces it.
    inserted = 0
    for path in files:
        doc_id = path.relative_to(args.docs).as_posix()
        mime = FILE_TYPES[path.suffix.lower()]
        data = base64.b64encode(path.read_bytes()).decode()
        try:
            client.tool_runtime.rag_tool.insert(
                vector_db_id=vector_db_id,
                chunk_size_in_tokens=512,
                documents=[{
                    "document_id": doc_id,
                    "content": f"data:{mime};base64,{data}",
                    "mime_type": mime,
                    "metadata": {},
                }],
            )
            inserted += 1
        except Exception as exc:  # noqa: BLE001 (report and go on with the next document)
            print(f"error: document `{doc_id}` not inserted: {exc}", file=sys.stderr)
    if inserted == 0:
        sys.exit(f"error: none of the {len(files)} documents could be inserted")
    print(f"Inserted {inserted} of {len(files)} documents into `{vector_db_id}`", file=sys.stderr)

    agent = Agent(
        client,
        model=model,
        instructions=INSTRUCTIONS,
        tools=[{"name": "builtin::rag/knowledge_search", "args": {"vector_db_ids": [vector_db_id]}}],
    )
    try:
        session_id = agent.create_session("doc-qa")
        for i, question in enumerate(args.questions):
            if i:
                print()
            answer_one(agent, session_id, question)
    finally:
        # Agents are stored on the server; this one was only for this run.
        client.agents.delete(agent.agent_id)
    return 0


def answer_one(agent: Agent, session_id: str, question: str) -> None:
    """Streams one turn: the answer as it arrives, then the documents knowledge_search found."""
    answer = ""
    sources: list[str] = []
    for chunk in agent.create_turn(
        messages=[{"role": "user", "content": question}], session_id=session_id, stream=True
    ):
        payload = chunk.event.payload
        if (payload.event_type == "step_progress" and payload.step_type == "inference"
                and payload.delta.type == "text"):
            print(payload.delta.text, end="", flush=True)
            answer += payload.delta.text
        elif payload.event_type == "step_complete" and payload.step_type == "tool_execution":
            for response in payload.step_details.tool_responses:
                if response.tool_name != "knowledge_search":
                    continue
                for doc_id in (response.metadata or {}).get("document_ids", []):
                    if doc_id not in sources:
                        sources.append(doc_id)
    if not answer.endswith("\n"):
        print()
    print(f"Sources: {', '.join(sources)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
