"""Files shared by replicas: two servers of the shipped `postgres` distribution on one
PostgreSQL database, each with its own empty home and store directory, driven with the openai
SDK. A file uploaded through one is listed, read, attached to a vector store and deleted
through the other; bytes live in PostgreSQL (`remote::postgres`, the default) or, with
S3_BUCKET_NAME set, in an S3 bucket (`remote::s3`) served here by moto. Nothing is written to
either replica's local directories.

moto comes from scripts/setup-python.sh (`moto[server]`); without it the S3 case is skipped
with the reason. PostgreSQL comes from pg_support (LLAMA_STACK_SKIP_PG_TESTS=1 skips).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from e2e_support import REPO_ROOT, Server, free_port
from memory_support import (
    EMBEDDING_DIMENSION,
    EMBEDDING_MODEL,
    fetch_minilm,
    openai_client,
    postgres_database,
)

POSTGRES_RUN_YAML = REPO_ROOT / "distributions" / "postgres" / "run.yaml"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"
TEXT = ("Llamas are social animals that live in herds in the Andes. A baby llama is called a "
        "cria and stands within an hour of birth.\n")


@pytest.fixture(scope="module")
def minilm() -> Path:
    return fetch_minilm()


@pytest.fixture(scope="module")
def moto_endpoint():
    """An S3-compatible server on a free port of 127.0.0.1 for this module."""
    if not MOTO_SERVER.is_file():
        pytest.skip(f"{MOTO_SERVER} is missing: run scripts/setup-python.sh (it installs "
                    "moto[server]) to run the S3 case")
    port = free_port()
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"moto_server exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not listen within 30 s"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def start_replicas(server_factory, tmp_path_factory, name: str, env: dict[str, str]):
    """Two `postgres`-distribution servers with the same settings, each with an empty HOME."""
    replicas = []
    for side in ("a", "b"):
        home = tmp_path_factory.mktemp(f"home-{name}-{side}")
        server = server_factory(f"{name}-{side}", run_config=str(POSTGRES_RUN_YAML),
                                extra_env={**env, "HOME": str(home)})
        replicas.append((server.start(), home))
    return replicas


def files_written(server: Server, home: Path) -> list[str]:
    """Files the replica left in its home or store directory."""
    store = Path(server.env["SQLITE_STORE_DIR"])
    return [str(p) for root in (home, store) for p in root.rglob("*") if p.is_file()]


def check_shared_files(a: Server, b: Server) -> str:
    """Upload through `a`; list, read, attach and search through `b`; returns the file id."""
    oa, ob = openai_client(a), openai_client(b)
    payload = TEXT.encode() + bytes(range(256))
    created = oa.files.create(file=("llamas.txt", payload, "text/plain"), purpose="assistants")
    assert created.bytes == len(payload)

    assert created.id in {f.id for f in ob.files.list().data}
    got = ob.files.retrieve(created.id)
    assert (got.filename, got.bytes, got.purpose) == ("llamas.txt", len(payload), "assistants")
    assert ob.files.content(created.id).content == payload

    text = oa.files.create(file=("cria.txt", TEXT.encode(), "text/plain"), purpose="assistants")
    store = ob.vector_stores.create(
        name="shared", file_ids=[text.id],
        extra_body={"embedding_model": EMBEDDING_MODEL,
                    "embedding_dimension": EMBEDDING_DIMENSION, "provider_id": "pgvector"},
    )
    assert store.file_counts.completed == 1, store.file_counts
    hits = list(ob.vector_stores.search(store.id, query="What is a baby llama called?").data)
    assert hits and "cria" in hits[0].content[0].text, hits

    ob.files.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        oa.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        oa.files.content(created.id)
    assert created.id not in {f.id for f in oa.files.list().data}
    return text.id


def test_files_in_postgres_are_shared_by_replicas(server_factory, tmp_path_factory, minilm,
                                                  tokenizer_model):
    env = {**postgres_database("files_shared_pg"), "EMBEDDING_MODEL_PATH": str(minilm),
           "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model)}
    (a, home_a), (b, home_b) = start_replicas(server_factory, tmp_path_factory, "files-pg", env)
    check_shared_files(a, b)
    assert files_written(a, home_a) == [] and files_written(b, home_b) == []
    a.stop()
    b.stop()


def test_files_in_s3_are_shared_by_replicas(server_factory, tmp_path_factory, minilm,
                                            tokenizer_model, moto_endpoint):
    bucket = "llama-stack-files-e2e"
    env = {**postgres_database("files_shared_s3"), "EMBEDDING_MODEL_PATH": str(minilm),
           "LLAMA3_TOKENIZER_MODEL": str(tokenizer_model), "S3_BUCKET_NAME": bucket,
           "S3_ENDPOINT_URL": moto_endpoint, "S3_AUTO_CREATE_BUCKET": "true",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    (a, home_a), (b, home_b) = start_replicas(server_factory, tmp_path_factory, "files-s3", env)
    kept = check_shared_files(a, b)
    # The bytes are objects in the bucket, named by file id; the deleted file's object is gone.
    import boto3  # installed with moto

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [kept], keys
    assert s3.get_object(Bucket=bucket, Key=kept)["Body"].read() == TEXT.encode()
    assert files_written(a, home_a) == [] and files_written(b, home_b) == []
    a.stop()
    b.stop()
