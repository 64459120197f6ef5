"""Batch API bench: a 1,000-line chat-completion batch against a canned upstream, alone and with
one interactive client sending chat completions back to back meanwhile; and the interactive
client alone for its baseline. Prints batch throughput and interactive latency percentiles.

    .venv/bin/python scripts/bench/batches.py [--bin target/release/llama-stack] [--lines 1000]
        [--delay-ms 50] [--concurrency 10]

The upstream answers every request after `--delay-ms` (a stand-in for a model server with
spare capacity), so the figures are the server's own scheduling: how fast a batch drains with
`max_concurrent_requests_per_batch` requests under way, and what it costs an interactive user.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import openai

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from batch_support import (  # noqa: E402
    CannedUpstream, UPSTREAM_MODEL, batch_run_yaml, chat_line, upload_jsonl, wait_for,
)
from e2e_support import Server  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interactive(client: openai.OpenAI, stop: threading.Event, out: list[float],
                limit: int | None = None) -> None:
    while not stop.is_set() and (limit is None or len(out) < limit):
        started = time.perf_counter()
        client.chat.completions.create(model=UPSTREAM_MODEL, max_tokens=8,
                                       messages=[{"role": "user", "content": "interactive"}])
        out.append((time.perf_counter() - started) * 1000)


def run_batch(client: openai.OpenAI, lines: int, tag: str) -> float:
    upload = upload_jsonl(client, [chat_line(f"{tag}-{i}", f"{tag} {i}", max_tokens=8)
                                   for i in range(lines)])
    started = time.perf_counter()
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    done = wait_for(client, batch.id, timeout=3600)
    elapsed = time.perf_counter() - started
    assert done.status == "completed" and done.request_counts.completed == lines, done
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "llama-stack"))
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    upstream = CannedUpstream(delay_s=args.delay_ms / 1000)
    directory = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    run_yaml = batch_run_yaml(
        directory, batches_config={"max_concurrent_requests_per_batch": args.concurrency})
    server = Server(name="bench", binary=Path(args.bin), run_config=str(run_yaml),
                    env={"UPSTREAM_URL": upstream.url, "RUST_LOG": "warn"},
                    log_path=directory / "server.log").start()
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        # The waiting loop polls GET /v1/batches/{id} every 100 ms; the batch sees those polls
        # as interactive traffic too, as it would a user's.
        baseline: list[float] = []
        interactive(client, threading.Event(), baseline, limit=200)

        alone = run_batch(client, args.lines, "alone")

        stop = threading.Event()
        during: list[float] = []
        user = threading.Thread(target=interactive, args=(
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0),
            stop, during))
        user.start()
        shared = run_batch(client, args.lines, "shared")
        stop.set()
        user.join()

        print(f"\nbinary {args.bin}; upstream delay {args.delay_ms:.0f} ms; "
              f"max_concurrent_requests_per_batch {args.concurrency}; {args.lines} lines\n")
        print("| run | batch wall s | batch req/s | interactive requests | p50 ms | p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        print(f"| interactive alone | – | – | {len(baseline)} | "
              f"{statistics.median(baseline):.1f} | {percentile(baseline, 0.99):.1f} |")
        print(f"| batch alone | {alone:.1f} | {args.lines / alone:.0f} | – | – | – |")
        print(f"| batch + 1 interactive client | {shared:.1f} | {args.lines / shared:.0f} | "
              f"{len(during)} | {statistics.median(during):.1f} | {percentile(during, 0.99):.1f} |")
    finally:
        server.stop()
        upstream.stop()


if __name__ == "__main__":
    main()
