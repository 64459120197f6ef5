"""`scripts/quickstart.sh` as a new user meets it, with HOME and the Hugging Face cache in a
temporary folder: where the Hub answers (the stand-in Hub, through HF_ENDPOINT) it downloads
the one Llama 3.2 1B Instruct GGUF it needs and serves it under the real model's name; where
the Hub cannot be reached it serves the random-weight test model under a name that says so,
with a banner; either way it prints the playground URL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from e2e_support import (
    HEALTH_TIMEOUT_S, HTTP_TIMEOUT_S, REPO_ROOT, free_port, make_test_gguf, tail,
)
from hub_standin import StandInHub

SCRIPT = REPO_ROOT / "scripts" / "quickstart.sh"
# The script's defaults: the community GGUF repository and file, and the real model's id.
REPO = "bartowski/Llama-3.2-1B-Instruct-GGUF"
FILE = "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
REAL_ID = "candle/meta-llama/Llama-3.2-1B-Instruct"
TEST_ID = "candle/test/random-llama3-tiny"
BANNER = "answers are random noise"
# Variables of this machine that would steer the script or the server elsewhere.
SCRUBBED = (
    "LLAMA_MODEL_PATH", "INFERENCE_MODEL", "SQLITE_STORE_DIR", "LLAMA_STACK_PORT",
    "LLAMA_STACK_GRPC_PORT", "EMBEDDING_MODEL_PATH", "SAFETY_MODEL", "HF_HUB_CACHE",
    "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH",
    "QUICKSTART_GGUF_REPO", "QUICKSTART_GGUF_FILE", "QUICKSTART_MODEL_ID",
)


@pytest.fixture(scope="module")
def hub(llama_stack_bin, tokenizer_model, tmp_path_factory):
    """The GGUF repository as the Hub holds it: several quantizations of one model (here the
    tiny test model, named as the real files are), of which the script wants one."""
    folder = tmp_path_factory.mktemp("gguf-repo")
    for quant, name in (("q4_0", FILE), ("q8_0", "Llama-3.2-1B-Instruct-Q8_0.gguf")):
        work = tmp_path_factory.mktemp(f"gguf-{quant}")
        make_test_gguf(llama_stack_bin, tokenizer_model, work, quant).rename(folder / name)
    hub = StandInHub()
    hub.publish(REPO, folder, **{"README.md": b"# GGUF quantizations\n"})
    hub.start()
    yield hub
    hub.stop()


def closed_endpoint() -> str:
    # A port nothing listens on: connections are refused at once, as from a machine offline.
    return f"http://127.0.0.1:{free_port()}"


@dataclass
class Quickstart:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"quickstart exited with {self.process.returncode}:\n{tail(self.log)}")
            try:
                if requests.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        pytest.fail(f"quickstart's server not healthy after {timeout:.0f}s:\n{tail(self.log)}")

    def wait_for_output(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            if time.monotonic() > deadline:
                pytest.fail(f"{needle!r} never printed:\n{tail(self.log)}")
            time.sleep(0.2)

    def stop(self) -> None:
        # The script execs the server and leaves a watcher beside it: its session holds both.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)


@pytest.fixture
def quickstart(llama_stack_bin, tokenizer_model, tmp_path):
    """Starts scripts/quickstart.sh with a private HOME and HF_HOME; stops every run at the end."""
    started: list[Quickstart] = []
    home = tmp_path / "home"
    home.mkdir()

    def start(endpoint: str, **extra: str) -> Quickstart:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
        env.update(
            HOME=str(home),
            HF_HOME=str(home / "hf"),
            HF_ENDPOINT=endpoint,
            LLAMA_STACK_BIN=str(llama_stack_bin),
            # The tokenizer is already here; the fallback would fetch it from PyPI otherwise.
            LLAMA3_TOKENIZER_MODEL=str(tokenizer_model),
            NO_COLOR="1",
        )
        env.update(extra)
        port = free_port()
        log = tmp_path / f"quickstart-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", str(SCRIPT), "--port", str(port), "--grpc-port", "0"],
                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        run = Quickstart(process, port, log)
        started.append(run)
        run.wait_healthy()
        return run

    start.home = home
    yield start
    for run in started:
        run.stop()


def served_models(run: Quickstart) -> list[str]:
    resp = requests.get(f"{run.url}/v1/models", timeout=HTTP_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    return [m["identifier"] for m in resp.json()["data"] if m.get("model_type") == "llm"]


def assert_chat_answers(run: Quickstart, model: str) -> None:
    resp = requests.post(
        f"{run.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Say hello."}],
              "max_tokens": 4, "temperature": 0},
        timeout=HTTP_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert isinstance(body["choices"][0]["message"]["content"], str), body
    assert 0 < body["usage"]["completion_tokens"] <= 4, body


def test_downloads_the_gguf_and_serves_it_under_the_real_name(hub, quickstart):
    run = quickstart(hub.url)
    playground = f"http://localhost:{run.port}/playground"
    run.wait_for_output(f"Open the playground: {playground}")

    repo = hub.repos[REPO]
    snapshot = quickstart.home / "hf" / "hub" / f"models--{REPO.replace('/', '--')}" / \
        "snapshots" / repo.commit
    # Only the one quantization is fetched, into the Hugging Face cache under HF_HOME.
    assert [p.name for p in snapshot.iterdir()] == [FILE]
    assert (snapshot / FILE).read_bytes() == repo.files[FILE]
    assert {r.path.rsplit("/", 1)[1] for r in hub.file_requests()} == {FILE}

    assert served_models(run) == [REAL_ID]
    assert_chat_answers(run, REAL_ID)
    output = run.output
    assert BANNER not in output, output
    assert not (quickstart.home / ".llama" / "test-models").exists()
    run.stop()

    # Later, offline: the cached copy is served rather than the test model.
    offline = quickstart(closed_endpoint())
    offline.wait_for_output("Open the playground")
    assert served_models(offline) == [REAL_ID]
    assert "serving the copy already cached" in offline.output, offline.output
    assert BANNER not in offline.output


@pytest.mark.parametrize("offline_by", ["closed-port", "HF_HUB_OFFLINE"])
def test_unreachable_hub_serves_the_test_model_under_its_own_name(hub, quickstart, offline_by):
    before = len(hub.requests)
    if offline_by == "HF_HUB_OFFLINE":
        run = quickstart(hub.url, HF_HUB_OFFLINE="1")
    else:
        run = quickstart(closed_endpoint())
    assert hub.requests[before:] == []
    playground = f"http://localhost:{run.port}/playground"
    run.wait_for_output(f"Open the playground: {playground}")

    assert served_models(run) == [TEST_ID]
    assert_chat_answers(run, TEST_ID)
    output = run.output
    assert BANNER in output and "test/random-llama3-tiny" in output, output
    # Printed before the server's logs, and again once it is up, above the playground URL.
    assert output.count(BANNER) == 2, output
    assert output.rindex(BANNER) < output.rindex(playground), output
    assert (quickstart.home / ".llama" / "test-models" / "tiny" / "config.json").is_file()
    assert not (quickstart.home / "hf" / "hub").exists()


def test_llama_model_path_set_by_the_user_wins(hub, quickstart, tiny_model_dir):
    before = len(hub.requests)
    run = quickstart(hub.url, LLAMA_MODEL_PATH=str(tiny_model_dir))
    run.wait_for_output("Open the playground")
    assert served_models(run) == [REAL_ID]
    # Neither the Hub nor the test model is involved.
    assert hub.requests[before:] == []
    assert BANNER not in run.output
    assert not (quickstart.home / ".llama" / "test-models").exists()
