"""`llama-stack model download` and `model list` against a stand-in Hugging Face Hub (a local
HTTP server with the Hub's routes, reached through HF_ENDPOINT): the cache layout it fills,
re-runs that transfer nothing, resumption after a dropped connection, HF_TOKEN, the errors a
user meets, and the server finding the downloaded model by its repository id."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
import yaml

from e2e_support import HTTP_TIMEOUT_S, REPO_ROOT, Server, make_test_gguf
from hub_standin import StandInHub

TINY = "test-org/tiny-llama3"
GGUF = "test-org/tiny-llama3-GGUF"
GATED = "test-org/gated-llama3"
TOKEN = "hf_standin_secret"
HF_FILES = {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"}


@pytest.fixture(scope="module")
def gguf_dir(llama_stack_bin, tokenizer_model, tmp_path_factory) -> Path:
    """Two quantizations of the tiny model, named as llama.cpp's converters name them."""
    out = tmp_path_factory.mktemp("gguf-repo")
    for quant in ("q8_0", "q4_0"):
        work = tmp_path_factory.mktemp(f"gguf-{quant}")
        make_test_gguf(llama_stack_bin, tokenizer_model, work, quant).rename(
            out / f"tiny-llama3-{quant.upper()}.gguf")
    return out


@pytest.fixture(scope="module")
def hub(tiny_model_dir, gguf_dir, tmp_path_factory):
    hub = StandInHub()
    hub.home = tmp_path_factory.mktemp("hf-home")
    extras = {"README.md": b"# tiny\n", "LICENSE": b"MIT\n", ".gitattributes": b"*.gguf lfs\n"}
    hub.publish(TINY, tiny_model_dir, **extras)
    hub.publish(GGUF, gguf_dir, **extras)
    hub.publish(GATED, tiny_model_dir, token=TOKEN)
    hub.start()
    yield hub
    hub.stop()


def cli(binary, hub, *args, token=None, endpoint=None, timeout=300) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HF_HUB_OFFLINE",
                     "HF_TOKEN_PATH")
    }
    # A private HF_HOME: no token file of this machine's user is picked up.
    env["HF_HOME"] = str(hub.home)
    env["HF_ENDPOINT"] = endpoint or hub.url
    env["NO_COLOR"] = "1"
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run(
        [str(binary), *map(str, args)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )


def repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def assert_failed_cleanly(proc, *needles):
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "panicked" not in output, output
    for needle in needles:
        assert needle in output, f"{needle!r} missing from:\n{output}"


def test_download_fills_the_hf_cache_and_a_rerun_transfers_nothing(llama_stack_bin, hub, tmp_path):
    cache = tmp_path / "cache"
    proc = cli(llama_stack_bin, hub, "model", "download", TINY, "--hf-cache-dir", cache)
    assert proc.returncode == 0, proc.stderr

    repo = hub.repos[TINY]
    folder = repo_dir(cache, TINY)
    assert (folder / "refs" / "main").read_text() == repo.commit
    snapshot = folder / "snapshots" / repo.commit
    assert {p.name for p in snapshot.iterdir()} == HF_FILES  # no README, LICENSE, ...
    for name in HF_FILES:
        pointer = snapshot / name
        # The layout every Hugging Face tool shares: snapshot entries link to content blobs.
        assert pointer.is_symlink(), pointer
        assert pointer.resolve() == (folder / "blobs" / repo.sha256(name)).resolve()
        assert pointer.read_bytes() == repo.files[name]
    assert not list((folder / "blobs").glob("*.part"))
    # Hugging Face's own library reads the cache as one of its own.
    huggingface_hub = pytest.importorskip("huggingface_hub")
    scanned = huggingface_hub.scan_cache_dir(cache)
    assert not scanned.warnings, scanned.warnings
    (cached,) = scanned.repos
    assert cached.repo_id == TINY
    assert [(r.commit_hash, set(r.refs)) for r in cached.revisions] == [(repo.commit, {"main"})]
    local = huggingface_hub.hf_hub_download(TINY, "config.json", cache_dir=cache,
                                            local_files_only=True)
    assert Path(local) == snapshot / "config.json"
    assert TINY in proc.stdout and "safetensors" in proc.stdout, proc.stdout
    assert {r.path.rsplit("/", 1)[1] for r in hub.file_requests()} >= HF_FILES

    before = len(hub.requests)
    again = cli(llama_stack_bin, hub, "model", "download", TINY, "--hf-cache-dir", cache)
    assert again.returncode == 0, again.stderr
    rerun = hub.requests[before:]
    # Only the file listing is asked for again; no file is transferred or even probed.
    assert [r.path for r in rerun] == [f"/api/models/{TINY}/revision/main"], rerun
    assert again.stdout.count("already in the cache") == len(HF_FILES), again.stdout


def test_interrupted_download_resumes_where_it_stopped(llama_stack_bin, hub, tmp_path):
    cache = tmp_path / "cache"
    weights = "model.safetensors"
    hub.interrupt.add(weights)
    try:
        first = cli(llama_stack_bin, hub, "model", "download", TINY, "--hf-cache-dir", cache)
    finally:
        hub.interrupt.discard(weights)
    assert_failed_cleanly(first, weights, "Run the same command again")
    repo = hub.repos[TINY]
    part = repo_dir(cache, TINY) / "blobs" / f"{repo.sha256(weights)}.part"
    stored = part.stat().st_size
    assert 0 < stored < len(repo.files[weights])

    before = len(hub.requests)
    second = cli(llama_stack_bin, hub, "model", "download", TINY, "--hf-cache-dir", cache)
    assert second.returncode == 0, second.stderr
    transfers = [r for r in hub.requests[before:] if "/resolve/" in r.path and r.range != "bytes=0-0"]
    resumed = [r for r in transfers if r.path.endswith("/" + weights)]
    assert [r.range for r in resumed] == [f"bytes={stored}-"], resumed
    # Files completed by the first run are not transferred again.
    assert not [r for r in transfers if r.path.endswith("/config.json")], transfers
    snapshot = repo_dir(cache, TINY) / "snapshots" / repo.commit
    assert hashlib.sha256((snapshot / weights).read_bytes()).hexdigest() == repo.sha256(weights)
    assert "resumed" in second.stdout, second.stdout


def test_list_shows_downloaded_models_with_format_and_size(
    llama_stack_bin, hub, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    empty = cli(llama_stack_bin, hub, "model", "list", "--hf-cache-dir", cache)
    assert empty.returncode == 0, empty.stderr
    assert str(cache) in empty.stdout and "model download" in empty.stdout, empty.stdout

    assert cli(llama_stack_bin, hub, "model", "download", TINY,
               "--hf-cache-dir", cache).returncode == 0
    several = cli(llama_stack_bin, hub, "model", "download", GGUF, "--hf-cache-dir", cache)
    assert_failed_cleanly(several, "tiny-llama3-Q8_0.gguf", "tiny-llama3-Q4_0.gguf", "--include")
    picked = cli(llama_stack_bin, hub, "model", "download", GGUF, "--include", "*Q8_0.gguf",
                 "--hf-cache-dir", cache)
    assert picked.returncode == 0, picked.stderr
    gguf_snapshot = repo_dir(cache, GGUF) / "snapshots" / hub.repos[GGUF].commit
    assert [p.name for p in gguf_snapshot.iterdir()] == ["tiny-llama3-Q8_0.gguf"]

    proc = cli(llama_stack_bin, hub, "model", "list", "--hf-cache-dir", cache, "--json")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert listed["hf_cache"] == str(cache)
    by_id = {m["id"]: m for m in listed["models"] if m["source"] == "hf-cache"}
    assert set(by_id) == {TINY, GGUF}, listed

    tiny = by_id[TINY]
    repo = hub.repos[TINY]
    assert tiny["format"] == "safetensors" and tiny["precision"] == "f32"
    assert tiny["size_bytes"] == sum(len(repo.files[n]) for n in HF_FILES)
    assert tiny["revision"] == repo.commit
    assert tiny["path"] == str(repo_dir(cache, TINY) / "snapshots" / repo.commit)
    assert tiny["problem"] is None

    gguf = by_id[GGUF]
    assert gguf["format"] == "gguf" and gguf["precision"] == "Q8_0", gguf
    assert gguf["path"].endswith("tiny-llama3-Q8_0.gguf")
    assert gguf["problem"] is None, gguf

    table = cli(llama_stack_bin, hub, "model", "list", "--hf-cache-dir", cache)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line for line in table.stdout.splitlines() if line.strip()}
    assert "safetensors f32" in rows[TINY] and "MiB" in rows[TINY], table.stdout
    assert "gguf Q8_0" in rows[GGUF], table.stdout


def test_meta_checkpoints_folder_is_listed(llama_stack_bin, hub, tmp_path):
    config_dir = tmp_path / "dot-llama"
    checkpoint = config_dir / "checkpoints" / "Llama3.2-1B-Instruct"
    checkpoint.mkdir(parents=True)
    params = {"dim": 2048, "n_layers": 16, "n_heads": 32, "n_kv_heads": 8,
              "vocab_size": 128256, "norm_eps": 1e-05, "rope_theta": 500000.0,
              "use_scaled_rope": True}
    (checkpoint / "params.json").write_text(json.dumps(params))
    (checkpoint / "consolidated.00.pth").write_bytes(b"\0" * 2048)
    env_cmd = ["env", f"LLAMA_STACK_CONFIG_DIR={config_dir}", str(llama_stack_bin)]
    proc = subprocess.run(
        [*env_cmd, "model", "list", "--hf-cache-dir", str(tmp_path / "none"), "--json"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    (model,) = json.loads(proc.stdout)["models"]
    assert model["id"] == "Llama3.2-1B-Instruct" and model["source"] == "llama-checkpoints"
    params_size = (checkpoint / "params.json").stat().st_size
    assert model["format"] == "meta" and model["size_bytes"] == 2048 + params_size
    # Without tokenizer.model the folder cannot be served, and the listing says why.
    assert "tokenizer.model" in model["problem"], model


def test_token_is_sent_as_bearer_and_gated_repos_say_what_to_do(llama_stack_bin, hub, tmp_path):
    cache = tmp_path / "cache"
    anonymous = cli(llama_stack_bin, hub, "model", "download", GATED, "--hf-cache-dir", cache)
    assert_failed_cleanly(anonymous, "401", "gated", "HF_TOKEN", "license", f"{hub.url}/{GATED}")

    wrong = cli(llama_stack_bin, hub, "model", "download", GATED, "--hf-cache-dir", cache,
                token="hf_someone_else")
    assert_failed_cleanly(wrong, "403", "gated", "license")

    before = len(hub.requests)
    ok = cli(llama_stack_bin, hub, "model", "download", GATED, "--hf-cache-dir", cache,
             token=TOKEN)
    assert ok.returncode == 0, ok.stderr
    sent = hub.requests[before:]
    assert sent and all(r.authorization == f"Bearer {TOKEN}" for r in sent), sent
    assert TOKEN not in ok.stdout + ok.stderr


def test_unknown_repo_revision_and_unreachable_hub_are_clear_errors(
    llama_stack_bin, hub, tmp_path
):
    cache = tmp_path / "cache"
    missing = cli(llama_stack_bin, hub, "model", "download", "test-org/nope",
                  "--hf-cache-dir", cache)
    assert_failed_cleanly(missing, "no repository test-org/nope", "404")

    bad_rev = cli(llama_stack_bin, hub, "model", "download", TINY, "--revision", "v9",
                  "--hf-cache-dir", cache)
    assert_failed_cleanly(bad_rev, "no revision `v9`")

    bad_glob = cli(llama_stack_bin, hub, "model", "download", TINY, "--include", "*.gguf",
                   "--hf-cache-dir", cache)
    assert_failed_cleanly(bad_glob, "'*.gguf'", "config.json")

    with_closed_port = hub.url.rsplit(":", 1)[0] + ":9"
    offline = cli(llama_stack_bin, hub, "model", "download", TINY,
                  "--hf-cache-dir", cache, endpoint=with_closed_port)
    assert_failed_cleanly(offline, "unreachable", "model_path", "HF_ENDPOINT")


def test_server_serves_downloaded_models_by_repo_id(llama_stack_bin, hub, tmp_path):
    cache = tmp_path / "cache"
    for args in ([TINY], [GGUF, "--include", "*Q8_0.gguf"]):
        proc = cli(llama_stack_bin, hub, "model", "download", *args, "--hf-cache-dir", cache)
        assert proc.returncode == 0, proc.stderr
        assert "The server finds it by id" in proc.stdout, proc.stdout

    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({
        "version": 2,
        "image_name": "hub-download",
        "apis": ["inference"],
        "providers": {"inference": [{
            "provider_id": "candle",
            "provider_type": "inline::candle",
            # No model_path: the model is found in this cache by its repository id.
            "config": {"model_path": "", "hf_cache_dir": str(cache)},
        }]},
        "metadata_store": {"type": "sqlite", "db_path": str(tmp_path / "registry.db")},
        "models": [{"model_id": m, "provider_id": "candle", "model_type": "llm"}
                   for m in (TINY, GGUF)],
        "server": {"port": 8321},
    }))
    server = Server(
        name="hub-download", binary=llama_stack_bin, run_config=str(run_yaml),
        env={"HF_HUB_CACHE": str(tmp_path / "elsewhere")}, log_path=tmp_path / "server.log",
    ).start()
    try:
        models = requests.get(f"{server.url}/v1/models", timeout=HTTP_TIMEOUT_S).json()
        ids = [m["identifier"] for m in models["data"]]
        for model in (TINY, GGUF):
            assert f"candle/{model}" in ids, ids
            resp = requests.post(
                f"{server.url}/v1/openai/v1/completions",
                json={"model": f"candle/{model}", "prompt": "Once upon a time", "max_tokens": 4,
                      "temperature": 0},
                timeout=HTTP_TIMEOUT_S,
            )
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert isinstance(body["choices"][0]["text"], str)
            assert 0 < body["usage"]["completion_tokens"] <= 4, body
    finally:
        server.stop()
