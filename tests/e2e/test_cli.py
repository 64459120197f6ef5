"""The binary's own commands: help, `model create-test` output, `validate`."""

from __future__ import annotations

import json
import os
import struct
import subprocess

import yaml

from e2e_support import LOCAL_RUN_YAML, REPO_ROOT, SERVED_MODEL

LLAMA3_VOCAB_SIZE = 128_256  # 128,000 BPE ranks + 256 special tokens


def run_cli(binary, *args, env=None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [str(binary), *map(str, args)],
        cwd=REPO_ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_names_the_subcommands(llama_stack_bin):
    proc = run_cli(llama_stack_bin, "--help")
    assert proc.returncode == 0, proc.stderr
    for sub in ("run", "validate", "model"):
        assert sub in proc.stdout, proc.stdout


def test_create_test_model_writes_hf_layout(tiny_model_dir):
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ):
        assert (tiny_model_dir / name).is_file(), f"{name} missing in {tiny_model_dir}"

    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert "LlamaForCausalLM" in config["architectures"]
    assert config["vocab_size"] == LLAMA3_VOCAB_SIZE
    hidden = config["hidden_size"]

    # The safetensors header is an 8-byte little-endian length followed by JSON.
    with (tiny_model_dir / "model.safetensors").open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    embed = header["model.embed_tokens.weight"]
    assert embed["shape"] == [LLAMA3_VOCAB_SIZE, hidden]
    layer_keys = [k for k in header if k.startswith("model.layers.")]
    assert len({k.split(".")[2] for k in layer_keys}) == config["num_hidden_layers"]

    tokenizer = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    assert tokenizer["model"]["type"] == "BPE"
    specials = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert specials["<|begin_of_text|>"] == 128000
    assert specials["<|eot_id|>"] == 128009


def local_env(tiny_model_dir, tmp_path) -> dict[str, str]:
    return {
        "LLAMA_MODEL_PATH": str(tiny_model_dir),
        "SQLITE_STORE_DIR": str(tmp_path / "store"),
        "INFERENCE_MODEL": SERVED_MODEL,
    }


def test_validate_accepts_the_local_distribution(llama_stack_bin, tiny_model_dir, tmp_path):
    proc = run_cli(llama_stack_bin, "validate", LOCAL_RUN_YAML, env=local_env(tiny_model_dir, tmp_path))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stdout.strip() == "ok"


def test_validate_reports_every_problem_with_its_path(llama_stack_bin, tiny_model_dir, tmp_path):
    config = yaml.safe_load(LOCAL_RUN_YAML.read_text())
    config["providers"]["inference"] = [
        {"provider_id": "first", "provider_type": "inline::no-such-provider", "config": {}},
        {"provider_id": "second", "provider_type": "remote::no-such-provider-either", "config": {}},
    ]
    bad = tmp_path / "run.yaml"
    bad.write_text(yaml.safe_dump(config))

    proc = run_cli(llama_stack_bin, "validate", bad, env=local_env(tiny_model_dir, tmp_path))
    assert proc.returncode != 0
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
    first = [l for l in lines if l.startswith("providers.inference[0]")]
    second = [l for l in lines if l.startswith("providers.inference[1]")]
    assert first and second, f"both bad providers must be reported:\n{proc.stdout}{proc.stderr}"
    # An unknown provider_type names the known ones.
    assert "inline::candle" in first[0], first[0]
    for line in first + second:
        path, sep, message = line.partition(": ")
        assert sep and message.strip(), f"not '<path>: <message>': {line!r}"


def test_create_test_model_as_gguf_writes_a_gguf_file(llama_stack_bin, tokenizer_model, tmp_path):
    out = tmp_path / "gguf"
    proc = subprocess.run(
        [str(llama_stack_bin), "model", "create-test", str(out), "--format", "gguf",
         "--quant", "q8_0", "--tokenizer", str(tokenizer_model)],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    gguf = out / "model.gguf"
    with gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    # Serving it is covered by test_engine_features.py.


def test_create_test_refuses_quant_with_safetensors(llama_stack_bin, tokenizer_model, tmp_path):
    proc = subprocess.run(
        [str(llama_stack_bin), "model", "create-test", str(tmp_path / "m"), "--quant", "q4_0",
         "--tokenizer", str(tokenizer_model)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode != 0
    assert "--quant" in proc.stderr, proc.stderr


def test_providers_lists_each_type_with_api_description_and_sample_config(llama_stack_bin):
    proc = subprocess.run(
        [str(llama_stack_bin), "providers"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    # One block per provider type, separated by a blank line.
    blocks = {b.splitlines()[0]: b for b in proc.stdout.strip("\n").split("\n\n")}
    for heading in (
        "inline::candle  (api: inference)",
        "inline::sentence-transformers  (api: inference)",
    ):
        assert heading in blocks, list(blocks)
        sample = blocks[heading].split("sample config:", 1)[1]
        config = yaml.safe_load("\n".join(line[4:] for line in sample.strip("\n").splitlines()))
        assert config["device"] == "cpu", config


def test_a_taken_grpc_port_fails_the_start_naming_it(llama_stack_bin, tmp_path):
    import socket

    from e2e_support import free_port

    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    grpc_port = taken.getsockname()[1]
    try:
        proc = run_cli(llama_stack_bin, "run", "starter", "--port", free_port(),
                       "--grpc-port", grpc_port, env={"SQLITE_STORE_DIR": str(tmp_path)})
    finally:
        taken.close()
    assert proc.returncode != 0
    assert f"cannot listen for gRPC on 0.0.0.0:{grpc_port}" in proc.stderr, proc.stderr[-2000:]
    assert "0 turns gRPC off" in proc.stderr


def test_grpc_port_is_checked_in_run_yaml(llama_stack_bin, tmp_path):
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text(yaml.safe_dump({
        "version": 2, "image_name": "grpc-port", "apis": [], "providers": {},
        "server": {"port": 8321, "grpc_port": 80}}))
    proc = run_cli(llama_stack_bin, "validate", run_yaml)
    assert proc.returncode != 0
    assert "server" in proc.stdout and "grpc_port must be 0 (off) or an integer from 1024 to 65535, got 80" \
        in proc.stdout, proc.stdout
