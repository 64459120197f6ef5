"""Our server against llama.cpp's `llama-server`, as a user meets both: the same GGUF file, one
server at a time on the same threads, the same streaming `/v1/completions` client.

For each weight type it reports, per server:
- one stream: time to first token of a `--prompt-tokens` prompt, prefill tok/s, and decode tok/s
  (tokens after the first over the time after the first; best of `--runs`);
- the decode rate as a share of the machine's limit: weight bytes read per token (every matrix
  is read once per step; the token-embedding table only once for tied output) times tok/s, over
  the read bandwidth that a STREAM-style sum measures in the same run;
- with `--streams N`: N clients at once, aggregate generated tok/s over the wall time, and time
  to first token p50/p99 across all requests of `--rounds` rounds.

Files come from `llama-stack model create-test --format gguf --quant f16` (random weights, the
`--preset` shape) and llama.cpp's own `llama-quantize`, as users get them; they are written once
under `--models` and reused.

    .venv/bin/python scripts/bench/vs_llama_server.py --bin target/release/llama-stack \\
        --llama-cpp "$(scripts/build-llamacpp.sh)" [--preset 1b] [--quants q4_0,q4_k_m,...] \\
        [--streams 8] [--threads 2]

`--startup` instead measures time to ready and resident memory after load (our server: until
the first one-token completion answers, since the model loads at start; llama-server: until
`/health` answers 200, then the same completion), against the file size.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from e2e_support import Server, free_port  # noqa: E402

# llama-quantize's names for the types it writes.
QUANT_NAMES = {
    "q4_0": "Q4_0", "q8_0": "Q8_0", "q4_k_s": "Q4_K_S", "q4_k_m": "Q4_K_M",
    "q5_k_m": "Q5_K_M", "q6_k": "Q6_K", "f16": "F16", "bf16": "BF16",
}
WORDS = ("river stone lamp harbour signal schooner keeper paraffin north reef tide "
         "morning").split()

BANDWIDTH_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>
#define N (1L << 28) /* 2 GiB of 64-bit words: far beyond any cache */
/* Integer sums, which the compiler turns into vector adds (a floating-point sum stays scalar
   without -ffast-math, and one core's adds then cap it below the memory's rate). */
static uint64_t *a; static int threads; static uint64_t sums[64];
static void *part(void *arg) {
  long t = (long)arg, lo = N / threads * t, hi = N / threads * (t + 1);
  uint64_t s = 0;
  for (long i = lo; i < hi; i++) s += a[i];
  sums[t] = s; return 0;
}
int main(int argc, char **argv) {
  threads = atoi(argv[1]); a = malloc(N * sizeof(uint64_t));
  for (long i = 0; i < N; i++) a[i] = i;
  double best = 0;
  for (int r = 0; r < 8; r++) {
    struct timespec t0, t1; pthread_t th[64];
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long t = 0; t < threads; t++) pthread_create(&th[t], 0, part, (void *)t);
    for (int t = 0; t < threads; t++) pthread_join(th[t], 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double gbs = N * sizeof(uint64_t) / s / 1e9; if (gbs > best) best = gbs;
  }
  uint64_t check = 0; for (int t = 0; t < threads; t++) check += sums[t];
  printf("%.3f %llu\n", best, (unsigned long long)check); return 0;
}
"""


def read_bandwidth(threads: int, work: Path) -> float:
    """GB/s of a streaming read of 2 GiB by `threads` threads, best of 8."""
    source, binary = work / "bandwidth.c", work / "bandwidth"
    source.write_text(BANDWIDTH_C)
    subprocess.run(["cc", "-O3", "-march=native", "-pthread", str(source), "-o", str(binary)],
                   check=True)
    out = subprocess.run([str(binary), str(threads)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[0])


def gguf_tensor_bytes(path: Path) -> tuple[int, int]:
    """Weight bytes one decode step reads, and the file's tensor bytes, from its header."""
    # Block sizes and bytes per block of the ggml types these files hold.
    sizes = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
             8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
             14: (256, 210), 30: (1, 2)}
    with path.open("rb") as f:
        def read(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def skip_string():
            (n,) = read("Q")
            f.seek(n, 1)

        def skip_value(kind):
            fixed = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
            if kind in fixed:
                f.seek(fixed[kind], 1)
            elif kind == 8:
                skip_string()
            elif kind == 9:
                inner, n = read("IQ")
                if inner == 8:
                    for _ in range(n):
                        skip_string()
                else:
                    f.seek(fixed[inner] * n, 1)

        magic, _version, n_tensors, n_kv = read("IIQQ")
        assert magic == 0x46554747, f"{path} is not GGUF"
        for _ in range(n_kv):
            skip_string()
            (kind,) = read("I")
            skip_value(kind)
        total = embedding = 0
        tied = True
        for _ in range(n_tensors):
            (n,) = read("Q")
            name = f.read(n).decode()
            (dims,) = read("I")
            shape = read("Q" * dims)
            (ty,) = read("I")
            read("Q")
            block, nbytes = sizes[ty]
            count = 1
            for d in shape:
                count *= d
            size = count // block * nbytes
            total += size
            if name == "token_embd.weight":
                embedding = size
            tied = tied and name != "output.weight"
    # Every matrix is read once per step; the token-embedding table is read whole only where it
    # is also the output matrix, else one row of it.
    return (total if tied else total - embedding), total


def model_file(models: Path, binary: Path, llama_cpp: Path, preset: str, quant: str) -> Path:
    f16 = models / f"{preset}-f16" / "model.gguf"
    if not f16.exists():
        subprocess.run([str(binary), "model", "create-test", str(f16.parent), "--preset", preset,
                        "--format", "gguf", "--quant", "f16"], check=True,
                       stdout=subprocess.DEVNULL)
    if quant == "f16":
        return f16
    path = models / f"{preset}-{quant}" / "model.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(llama_cpp / "llama-quantize"), str(f16), str(path), QUANT_NAMES[quant]],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, LD_LIBRARY_PATH=str(llama_cpp)))
    return path


def prompt_of(tokens: int, seed: int) -> str:
    # About one token per word for these common English words.
    return " ".join(WORDS[(seed * 7 + i * 5) % len(WORDS)] for i in range(tokens))


def stream(url: str, model: str, prompt: str, tokens: int, extra: dict | None = None) -> dict:
    started = time.perf_counter()
    first = last = None
    count = 0
    body = {"model": model, "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, **(extra or {})}
    with requests.post(f"{url}/v1/completions", json=body, stream=True, timeout=3600) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("text"):
                count += 1
                last = time.perf_counter()
                first = first or last
    assert first is not None, f"{url}: no tokens streamed"
    return {"ttft": first - started, "tokens": count, "end": last - started,
            "decode": (count - 1) / (last - first) if count > 1 else 0.0}


class Ours:
    def __init__(self, binary: Path, model: Path, work: Path, threads: int, batch: int):
        config = {
            "version": 2, "image_name": "bench-vs-llama-server", "apis": ["inference"],
            "providers": {"inference": [{
                "provider_id": "candle", "provider_type": "inline::candle",
                "config": {"model_path": str(model), "max_batch_size": batch,
                           "max_queue": 64, "prefix_cache_slots": 0}}]},
            "metadata_store": {"type": "sqlite", "db_path": str(work / "registry.db")},
            "models": [{"model_id": "bench", "provider_id": "candle", "model_type": "llm"}],
        }
        (work / "run.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.server = Server(name="ours", binary=binary, run_config=str(work / "run.yaml"),
                             env={"RAYON_NUM_THREADS": str(threads)},
                             log_path=work / "ours.log").start()
        self.url, self.model = self.server.url, "candle/bench"
        self.extra = {}

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def stop(self):
        self.server.stop()


class Reference:
    def __init__(self, llama_cpp: Path, model: Path, work: Path, threads: int, slots: int,
                 context: int, wait: bool = True):
        self.port = free_port()
        self.url, self.model = f"http://127.0.0.1:{self.port}", "bench"
        # Every request is prefilled in full, as ours are with prefix reuse off.
        self.extra = {"cache_prompt": False}
        command = [str(llama_cpp / "llama-server"), "-m", str(model), "-a", "bench",
                   "--host", "127.0.0.1", "--port", str(self.port), "-t", str(threads),
                   "-tb", str(threads), "-np", str(slots), "-c", str(context * slots),
                   "--no-webui", "--cache-reuse", "0"]
        self.log = (work / "llama-server.log").open("ab")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT,
                                        env=dict(os.environ, LD_LIBRARY_PATH=str(llama_cpp)))
        if wait:
            self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "llama-server exited; see llama-server.log"
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("llama-server not ready after 600 s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=60)


def rss_mib(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def measure(server, args, bytes_per_token: int, bandwidth: float) -> dict:
    stream(server.url, server.model, prompt_of(8, 99), 4, server.extra)  # warm-up
    singles = [stream(server.url, server.model, prompt_of(args.prompt_tokens, r), args.tokens,
                      server.extra)
               for r in range(args.runs)]
    best = max(singles, key=lambda s: s["decode"])
    result = {
        "ttft": min(s["ttft"] for s in singles),
        "decode": best["decode"],
        "prefill": args.prompt_tokens / min(s["ttft"] for s in singles),
        "limit": best["decode"] * bytes_per_token / (bandwidth * 1e9),
    }
    if args.streams > 1:
        ttfts, rates = [], []
        for r in range(args.rounds):
            started = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.streams) as pool:
                done = list(pool.map(
                    lambda i: stream(server.url, server.model,
                                     prompt_of(args.stream_prompt_tokens, 100 + r * 50 + i),
                                     args.tokens, server.extra),
                    range(args.streams)))
            wall = time.perf_counter() - started
            ttfts += [d["ttft"] for d in done]
            rates.append(sum(d["tokens"] for d in done) / wall)
        ttfts.sort()
        result.update({
            "aggregate": max(rates),
            "ttft_p50": statistics.median(ttfts),
            "ttft_p99": ttfts[min(len(ttfts) - 1, round(0.99 * (len(ttfts) - 1)))],
        })
    return result


def startup(args, models: Path, work: Path):
    print(f"| server | file | file MiB | time to first answer s | RSS after load MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for quant in args.quants.split(","):
        path = model_file(models, args.bin, args.llama_cpp, args.preset, quant)
        size = path.stat().st_size / 2**20
        for name in ("ours", "llama-server"):
            subprocess.run(["sh", "-c", f"cat {path} > /dev/null"], check=True)  # warm page cache
            started = time.perf_counter()
            if name == "ours":
                server = Ours(args.bin, path, work, args.threads, 1)
            else:
                server = Reference(args.llama_cpp, path, work, args.threads, 1, 512)
            stream(server.url, server.model, "Hello", 1)
            ready = time.perf_counter() - started
            rss, peak = rss_mib(server.pid)
            server.stop()
            print(f"| {name} | {args.preset} {quant} | {size:.0f} | {ready:.2f} | {rss:.0f} | "
                  f"{peak:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=REPO / "target/release/llama-stack")
    parser.add_argument("--llama-cpp", type=Path, required=True,
                        help="folder with llama-server, llama-quantize and their libraries")
    parser.add_argument("--models", type=Path,
                        default=REPO / "target/bench-models")
    parser.add_argument("--preset", default="1b")
    parser.add_argument("--quants", default="q4_0,q8_0,q4_k_s,q4_k_m,q5_k_m,q6_k,f16,bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=400)
    parser.add_argument("--stream-prompt-tokens", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--startup", action="store_true")
    args = parser.parse_args()
    args.bin = args.bin.resolve()
    args.models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-vs-llama-server-") as tmp:
        work = Path(tmp)
        if args.startup:
            startup(args, args.models, work)
            return
        bandwidth = read_bandwidth(args.threads, work)
        print(f"read bandwidth, {args.threads} threads: {bandwidth:.2f} GB/s")
        head = ("| file | server | TTFT s | prefill tok/s | decode tok/s | share of limit |"
                + (f" {args.streams} streams tok/s | TTFT p50 s | TTFT p99 s |"
                   if args.streams > 1 else ""))
        print(head)
        print("|" + "---|" * (head.count("|") - 1))
        for quant in args.quants.split(","):
            path = model_file(args.models, args.bin, args.llama_cpp, args.preset, quant)
            per_token, _ = gguf_tensor_bytes(path)
            rows = {}
            for name in ("llama-server", "ours"):
                if name == "ours":
                    server = Ours(args.bin, path, work, args.threads, max(args.streams, 1))
                else:
                    server = Reference(args.llama_cpp, path, work, args.threads,
                                       max(args.streams, 1),
                                       args.prompt_tokens + args.tokens + 64)
                try:
                    rows[name] = measure(server, args, per_token, bandwidth)
                finally:
                    server.stop()
            for name, r in rows.items():
                line = (f"| {quant} | {name} | {r['ttft']:.2f} | {r['prefill']:.1f} | "
                        f"{r['decode']:.2f} | {r['limit'] * 100:.0f}% |")
                if args.streams > 1:
                    line += f" {r['aggregate']:.2f} | {r['ttft_p50']:.2f} | {r['ttft_p99']:.2f} |"
                print(line, flush=True)
            ours, ref = rows["ours"], rows["llama-server"]
            ratio = (f"| {quant} | ratio | {ref['ttft'] / ours['ttft']:.2f}x | "
                     f"{ours['prefill'] / ref['prefill']:.2f}x | "
                     f"{ours['decode'] / ref['decode']:.2f}x | |")
            if args.streams > 1:
                ratio += f" {ours['aggregate'] / ref['aggregate']:.2f}x | | |"
            print(ratio, flush=True)


if __name__ == "__main__":
    main()
