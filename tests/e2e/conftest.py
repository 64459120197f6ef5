"""Session fixtures: the real binary, a random-weight tiny Llama 3 model, and running servers.

Environment knobs:
  LLAMA_STACK_BIN         use this binary instead of running `cargo build --bin llama-stack`
  LLAMA3_TOKENIZER_MODEL  the Llama 3 tokenizer.model (default ~/.llama/tokenizer/llama3/...)
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import openai
import pytest
from llama_stack_client import LlamaStackClient

from e2e_support import (
    HTTP_TIMEOUT_S,
    LOCAL_RUN_YAML,
    OPENAI_PREFIXES,
    REPO_ROOT,
    SERVED_MODEL,
    Server,
    servers_to_report,
)


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed with status {proc.returncode}: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


@pytest.fixture(scope="session")
def llama_stack_bin() -> Path:
    given = os.environ.get("LLAMA_STACK_BIN")
    if given:
        path = Path(given).resolve()
        assert path.is_file(), f"LLAMA_STACK_BIN={given} is not a file"
        return path
    _run(["cargo", "build", "--bin", "llama-stack"], "cargo build")
    meta = _run(["cargo", "metadata", "--format-version", "1", "--no-deps"], "cargo metadata")
    path = Path(json.loads(meta.stdout)["target_directory"]) / "debug" / "llama-stack"
    assert path.is_file(), f"cargo build succeeded but {path} does not exist"
    return path


@pytest.fixture(scope="session")
def tokenizer_model() -> Path:
    script = REPO_ROOT / "scripts" / "fetch-tokenizer.sh"
    assert script.is_file(), f"{script} is missing: it provides the Llama 3 tokenizer"
    proc = _run(["bash", str(script)], "scripts/fetch-tokenizer.sh")
    # The script prints where the tokenizer is (LLAMA3_TOKENIZER_MODEL or the default path).
    printed = proc.stdout.strip().splitlines()
    path = Path(printed[-1]) if printed else Path(
        os.environ.get("LLAMA3_TOKENIZER_MODEL")
        or Path.home() / ".llama" / "tokenizer" / "llama3" / "tokenizer.model"
    )
    assert path.is_file(), f"fetch-tokenizer.sh ran but {path} does not exist"
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(llama_stack_bin, tokenizer_model, tmp_path_factory) -> Path:
    model_dir = tmp_path_factory.mktemp("models") / "tiny-llama3"
    _run(
        [
            str(llama_stack_bin), "model", "create-test", str(model_dir),
            "--preset", "tiny", "--format", "safetensors", "--tokenizer", str(tokenizer_model),
        ],
        "llama-stack model create-test",
    )
    return model_dir


@pytest.fixture(scope="session")
def vision_model_dir(llama_stack_bin, tokenizer_model, tmp_path_factory) -> Path:
    """A random-weight Llama 3.2 Vision checkpoint (`--preset vision-tiny`), real tokenizer."""
    model_dir = tmp_path_factory.mktemp("models") / "vision-tiny"
    _run(
        [
            str(llama_stack_bin), "model", "create-test", str(model_dir),
            "--preset", "vision-tiny", "--tokenizer", str(tokenizer_model),
        ],
        "llama-stack model create-test --preset vision-tiny",
    )
    return model_dir


def make_server(
    name: str,
    binary: Path,
    model_dir: Path,
    store_dir: Path,
    log_dir: Path,
    *,
    run_config: str = str(LOCAL_RUN_YAML),
    via_cli_env: bool = False,
    extra_env: dict[str, str] | None = None,
) -> Server:
    settings = {
        "LLAMA_MODEL_PATH": str(model_dir),
        "SQLITE_STORE_DIR": str(store_dir),
        "INFERENCE_MODEL": SERVED_MODEL,
        **(extra_env or {}),
    }
    return Server(
        name=name,
        binary=binary,
        run_config=run_config,
        env={} if via_cli_env else settings,
        cli_env=settings if via_cli_env else {},
        log_path=log_dir / f"{name}.log",
    )


@pytest.fixture(scope="session")
def server_factory(llama_stack_bin, tiny_model_dir, tmp_path_factory):
    """Builds (not starts) servers on a fresh store each; stops them all at the end."""
    made: list[Server] = []
    log_dir = tmp_path_factory.mktemp("server-logs")

    def factory(name: str, **kwargs) -> Server:
        store = tmp_path_factory.mktemp(f"store-{name}")
        server = make_server(name, llama_stack_bin, tiny_model_dir, store, log_dir, **kwargs)
        made.append(server)
        return server

    yield factory
    for server in made:
        try:
            server.stop()
        except Exception:
            server.kill()


@pytest.fixture(scope="session")
def server(server_factory) -> Server:
    """The shared server most tests talk to (local distribution, fresh store)."""
    return server_factory("shared").start()


@pytest.fixture
def base_url(server) -> str:
    return server.url


@pytest.fixture
def client(server) -> LlamaStackClient:
    return LlamaStackClient(base_url=server.url, timeout=HTTP_TIMEOUT_S, max_retries=0)


@pytest.fixture(params=OPENAI_PREFIXES, ids=["openai-v1-prefix", "v1-prefix"])
def openai_client(request, server) -> openai.OpenAI:
    """The OpenAI SDK against both OpenAI-compatible base URLs."""
    return openai.OpenAI(
        base_url=server.url + request.param, api_key="none", timeout=HTTP_TIMEOUT_S, max_retries=0
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in servers_to_report():
            report.sections.append(
                (f"llama-stack log tail ({s.name}, {s.log_path})", s.log_tail(60))
            )
