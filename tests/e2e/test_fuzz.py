"""A bounded schemathesis run of docs/openapi.json against the real binary: every operation,
generated and mutated inputs, and the stateful phase that chains operations through their
responses. No request may get a 5xx answer, every answer must match what the document says
of it (status code, content type, headers and body schema), and the server must still be up
afterwards.

schemathesis lives in its own venv (`.venv-fuzz`, made by scripts/setup-python.sh). The seed is
fixed so a failure reproduces: rerun the printed command by hand.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT

VENV = Path(os.environ.get("LLAMA_STACK_VENV_FUZZ", REPO_ROOT / ".venv-fuzz"))
SEED = "20261206"
MAX_EXAMPLES = "5"


def test_no_operation_answers_a_server_error_or_off_its_schema(server_factory):
    binary = VENV / "bin" / "schemathesis"
    assert binary.is_file(), f"{binary} is missing: run scripts/setup-python.sh"
    # Its own server: the run registers and deletes resources at random.
    server = server_factory("fuzz").start()
    command = [
        str(binary), "run", str(REPO_ROOT / "docs" / "openapi.json"),
        "--url", server.url,
        "--checks", ",".join([
            "not_a_server_error", "status_code_conformance", "content_type_conformance",
            "response_schema_conformance", "response_headers_conformance",
        ]),
        "--max-examples", MAX_EXAMPLES,
        "--seed", SEED,
        # One worker: with two, CPython 3.11's ast module (which hypothesis calls to describe
        # lambdas) races on its recursion counter and the run dies with a SystemError.
        "--workers", "1",
        "--request-timeout", "30",
        "--no-color",
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, cwd=server.log_path.parent)
    report = _errors_section(proc.stdout) + proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, f"{' '.join(command)}\n{report}"
    assert " passed" in proc.stdout and "failed" not in proc.stdout.split("SUMMARY")[-1], report
    health = requests.get(f"{server.url}/v1/health", timeout=HTTP_TIMEOUT_S)
    assert health.status_code == 200, "the server did not survive the run"


def _errors_section(stdout: str) -> str:
    """The head of schemathesis's ERRORS and FAILURES sections, which the long warnings list
    would otherwise push out of the assertion message."""
    parts = []
    for title in ("ERRORS", "FAILURES"):
        start = stdout.find(f" {title} ===")
        if start >= 0:
            parts.append(stdout[start:start + 3000] + "\n[...]\n")
    return "".join(parts)
