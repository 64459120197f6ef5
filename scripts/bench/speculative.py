"""Prompt-lookup speculative decoding bench: the same GGUF served twice by `inline::candle`,
`speculative: {type: ngram}` off and on, and one document-QA request whose answer quotes its
document, streamed greedily. Prints decode tok/s (tokens after the first over the time after
the first, best of `--runs`), the share of drafted tokens the model kept (from /metrics), and
whether both answers are the same text.

    .venv/bin/python scripts/bench/speculative.py --model <file.gguf> [--bin target/release/llama-stack]
        [--tokens 128] [--runs 3] [--max-draft 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from e2e_support import Server  # noqa: E402

DOCUMENT = (
    "The Lighthouse Keeper's Log, 12 March. Wind from the north-east at force six; the lamp was "
    "lit at 18:04 and the fog signal sounded from 21:30 until 02:15. The supply boat did not "
    "come, so the keeper rationed the paraffin to one can a night. At dawn the keeper saw a "
    "schooner with two masts and a torn jib standing off the reef, and signalled her away. "
)
PROMPT = (
    f"Document:\n{DOCUMENT * 3}\nQuestion: Quote the log entry for 12 March word for word.\n"
    f"Answer: {DOCUMENT[:60]}"
)


def run_yaml(directory: Path, model: Path, speculative: dict | None) -> Path:
    config = {
        "version": 2, "image_name": "bench-speculative", "apis": ["inference"],
        "providers": {"inference": [{"provider_id": "candle", "provider_type": "inline::candle",
                                     "config": {"model_path": str(model), "max_batch_size": 1,
                                                **({"speculative": speculative} if speculative else {})}}]},
        "metadata_store": {"type": "sqlite", "db_path": str(directory / "registry.db")},
        "models": [{"model_id": "bench", "provider_id": "candle", "model_type": "llm"}],
    }
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def stream(url: str, tokens: int) -> tuple[float, int, str]:
    """Decode tok/s after the first token, the tokens, and the text."""
    started = time.perf_counter()
    first = None
    count = 0
    text = []
    with requests.post(f"{url}/v1/completions", stream=True, timeout=3600, json={
            "model": "candle/bench", "prompt": PROMPT, "max_tokens": tokens, "temperature": 0,
            "stream": True}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            piece = chunk["choices"][0].get("text") or ""
            if piece:
                count += 1
                text.append(piece)
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    decode = (count - 1) / (end - first) if first and count > 1 else 0.0
    del started
    return decode, count, "".join(text)


def speculative_counts(url: str) -> tuple[float, float]:
    drafted = accepted = 0.0
    for line in requests.get(f"{url}/metrics", timeout=60).text.splitlines():
        if line.startswith("llama_stack_engine_speculative_tokens_total"):
            value = float(line.rsplit(" ", 1)[1])
            if 'outcome="drafted"' in line:
                drafted += value
            elif 'outcome="accepted"' in line:
                accepted += value
    return drafted, accepted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "llama-stack"))
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-draft", type=int, default=4)
    args = parser.parse_args()

    results = {}
    for name, speculative in [("off", None),
                              ("ngram", {"type": "ngram", "max_draft_tokens": args.max_draft})]:
        directory = Path(tempfile.mkdtemp(prefix=f"bench-spec-{name}-"))
        server = Server(name=name, binary=Path(args.bin),
                        run_config=str(run_yaml(directory, Path(args.model), speculative)),
                        env={"RUST_LOG": "warn"}, log_path=directory / "server.log").start()
        try:
            runs = [stream(server.url, args.tokens) for _ in range(args.runs)]
            best = max(r[0] for r in runs)
            results[name] = (best, runs[0][1], runs[0][2], speculative_counts(server.url))
        finally:
            server.stop()

    off, on = results["off"], results["ngram"]
    drafted, accepted = on[3]
    print(f"\nmodel {args.model}; binary {args.bin}; {args.tokens} tokens; best of {args.runs}\n")
    print("| speculative | decode tok/s | tokens | drafted | accepted | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| off | {off[0]:.1f} | {off[1]} | – | – | – |")
    print(f"| ngram, max_draft_tokens {args.max_draft} | {on[0]:.1f} | {on[1]} | {drafted:.0f} | "
          f"{accepted:.0f} ({100 * accepted / max(drafted, 1):.0f}%) | {on[0] / off[0]:.2f}x |")
    print(f"\nsame text: {off[2] == on[2]}")


if __name__ == "__main__":
    main()
