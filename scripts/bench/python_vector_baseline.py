#!/usr/bin/env python3
"""The Python reference side of the vector benchmark: faiss and sqlite-vec driven the way the
Python Llama Stack's `inline::faiss` and `inline::sqlite-vec` providers drive them, on the same
data as the Rust bench, printing a markdown table of insert throughput, k=10 query latency and
recall@10 against exact search.

Data: N unit vectors of 384 dimensions from a Gaussian mixture (`--clusters` random unit
centres, noise of norm about `--spread`, normalized), then `--queries` more from the same
stream as queries. The generator is a bit-for-bit port of `ClusteredVectors` in
crates/vector-conformance/src/data.rs (SplitMix64, Box-Muller), so the Rust bench given the
same dimension, clusters, spread and seed sees the same vectors (up to float rounding in the
normalization). The defaults are those of crates/vector-conformance/benches/vector_stores.rs
(100 clusters, spread 0.8, seed 20250101, 500 queries, inserts of 1000 chunks).

What is measured, per store and N:
  * insert chunks/s: chunks added in calls of `--batch` chunks (1000, as the Rust bench):
      - faiss: `IndexFlatL2.add` of the batch plus the chunk bookkeeping dicts, as
        `FaissIndex.add_chunks` does. Upstream also re-serializes the whole index into its
        kvstore after every call; that is left out here (it makes insert quadratic), so this
        is the Python stack's best case. `persist s` reports one such save of the final index
        (`faiss.serialize_index` + `np.savetxt` + base64, as `_save_index` does) for N up to
        `--persist-max` (10k; it takes minutes beyond that).
      - sqlite-vec: one file database, upstream's three tables (`(id, chunk)` metadata table,
        `vec0(embedding FLOAT[384], id TEXT)`, `fts5(id, content)`); per call, executemany
        into each in groups of 500 and one commit. Upstream's per-id FTS `DELETE` before
        insert is left out (it scans the FTS table per chunk).
  * query p50/p99 ms: one query at a time, k=10, including reading the chunks back:
      - faiss: `index.search(q[None, :], 10)` and the dict lookups;
      - sqlite-vec: upstream's KNN query, `... WHERE v.embedding MATCH ? AND k = ? ORDER BY
        v.distance` joined with the metadata table.
  * recall@10: overlap with exact top-10 by L2 distance (NumPy, float64).
  * p50/p99 are nearest-rank percentiles, as the Rust bench takes them.

Setup (a separate venv from Debian's python3.11: the pyenv Python on this machine is built
without `sqlite3.Connection.enable_load_extension`, which sqlite-vec needs, as does upstream):

    /usr/bin/python3.11 -m venv .venv-bench
    .venv-bench/bin/pip install "numpy==2.2.6" "faiss-cpu==1.15.1" "sqlite-vec==0.1.9"
    .venv-bench/bin/python scripts/bench/python_vector_baseline.py            # N = 10k and 100k
    .venv-bench/bin/python scripts/bench/python_vector_baseline.py --sizes 10000 --queries 100
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import sqlite3
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(seed: int, draws: np.ndarray) -> np.ndarray:
    """Outputs number `draws` (1-based) of SplitMix64 started at `seed`: the generator's state
    after n calls is seed + n * GOLDEN, so any draw is computed directly."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + draws.astype(np.uint64) * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, draws: np.ndarray) -> np.ndarray:
    return (splitmix64(seed, draws) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def gaussians(seed: int, first_draw: np.ndarray, count: int) -> np.ndarray:
    """`count` Box-Muller normals per row, the first using draws first_draw, first_draw + 1."""
    offsets = first_draw[:, None] + 2 * np.arange(count, dtype=np.int64)[None, :]
    u1 = np.maximum(uniform(seed, offsets), np.finfo(np.float64).tiny)
    u2 = uniform(seed, offsets + 1)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def normalized(v: np.ndarray) -> np.ndarray:
    norm = np.sqrt((v * v).sum(axis=1, dtype=np.float32))
    return np.where(norm[:, None] > 0, v / np.maximum(norm, 1e-30)[:, None], v).astype(np.float32)


class ClusteredVectors:
    """Port of the Rust `ClusteredVectors`: centres first, then points centre + noise."""

    def __init__(self, dimension: int, clusters: int, spread: float, seed: int):
        self.dim, self.clusters, self.seed = dimension, max(clusters, 1), seed
        self.scale = np.float32(spread) / np.float32(np.sqrt(np.float32(dimension)))
        first = 1 + 2 * dimension * np.arange(self.clusters, dtype=np.int64)
        self.centers = normalized(gaussians(seed, first, dimension))
        self.drawn = 2 * dimension * self.clusters  # draws used so far
        self.per_sample = 1 + 2 * dimension

    def take(self, n: int, block: int = 4096) -> np.ndarray:
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, block):
            rows = min(block, n - start)
            base = self.drawn + (start + np.arange(rows, dtype=np.int64)) * self.per_sample
            which = (uniform(self.seed, base + 1) * self.clusters).astype(np.int64) % self.clusters
            noise = gaussians(self.seed, base + 2, self.dim)
            out[start:start + rows] = normalized(self.centers[which] + noise * self.scale)
        self.drawn += n * self.per_sample
        return out


def exact_top_k(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    d64 = data.astype(np.float64)
    norms = (d64 * d64).sum(axis=1)
    out = []
    for q in queries.astype(np.float64):
        dist = norms - 2.0 * d64 @ q
        top = np.argpartition(dist, k)[:k]
        out.append(top[np.argsort(dist[top])])
    return np.array(out)


def chunk_json(i: int) -> tuple[str, str, str]:
    """(chunk id, serialized chunk, text) shaped like the stack's chunks."""
    chunk_id = f"chunk-{i:07d}"
    text = f"benchmark chunk {i} about topic {i % 97}"
    body = json.dumps({"content": text, "metadata": {"document_id": f"doc-{i // 10}"},
                       "embedding": None, "chunk_id": chunk_id})
    return chunk_id, body, text


@dataclass
class Result:
    store: str
    n: int
    insert_per_s: float
    p50_ms: float
    p99_ms: float
    recall: float
    persist_s: float | None = None


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in ms, nearest rank as the Rust bench takes them."""
    s = sorted(samples)

    def at(p: float) -> float:
        return s[round((len(s) - 1) * p)] * 1000.0

    return at(0.50), at(0.99)


def recall_at(found: list[list[int]], exact: np.ndarray, k: int) -> float:
    hits = sum(len(set(f[:k]) & set(e[:k].tolist())) for f, e in zip(found, exact))
    return hits / (k * len(found))


def bench_faiss(data, queries, exact, batch: int, k: int, measure_persist: bool) -> Result:
    import faiss

    index = faiss.IndexFlatL2(data.shape[1])
    chunk_by_index: dict[int, str] = {}
    id_by_index: dict[int, str] = {}
    started = time.perf_counter()
    for start in range(0, len(data), batch):
        stop = min(start + batch, len(data))
        base = len(id_by_index)
        for i in range(start, stop):
            chunk_id, body, _ = chunk_json(i)
            chunk_by_index[base + i - start] = body
            id_by_index[base + i - start] = chunk_id
        index.add(np.ascontiguousarray(data[start:stop], dtype=np.float32))
    insert_s = time.perf_counter() - started

    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        distances, indices = index.search(q.reshape(1, -1).astype(np.float32), k)
        hits = [(chunk_by_index[int(i)], 1.0 / max(float(d), 1e-12))
                for d, i in zip(distances[0], indices[0]) if i >= 0]
        times.append(time.perf_counter() - t0)
        assert len(hits) == k
        found.append([int(i) for i in indices[0]])
    p50, p99 = percentiles(times)

    persist = None
    if measure_persist:
        t0 = time.perf_counter()
        buffer = io.BytesIO()
        np.savetxt(buffer, faiss.serialize_index(index))
        json.dumps({"id_by_index": id_by_index, "chunk_by_index": chunk_by_index,
                    "faiss_index": base64.b64encode(buffer.getvalue()).decode()})
        persist = time.perf_counter() - t0
    return Result("faiss IndexFlatL2", len(data), len(data) / insert_s, p50, p99,
                  recall_at(found, exact, k), persist)


def serialize_vector(v: np.ndarray) -> bytes:
    # Upstream's serialize_vector: struct.pack of the floats.
    return struct.pack(f"{len(v)}f", *v.tolist())


def bench_sqlite_vec(data, queries, exact, batch: int, k: int, workdir: Path) -> Result:
    import sqlite_vec

    path = workdir / f"sqlite_vec_{len(data)}.db"
    conn = sqlite3.connect(path)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    dim = data.shape[1]
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS [bench_chunks] (id TEXT PRIMARY KEY, chunk TEXT);")
    cur.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS [bench_vectors] "
                f"USING vec0(embedding FLOAT[{dim}], id TEXT);")
    cur.execute("CREATE VIRTUAL TABLE IF NOT EXISTS [bench_fts] USING fts5(id, content);")
    conn.commit()

    started = time.perf_counter()
    # One insert call per `batch` chunks: executemany in groups of 500, one commit per call,
    # as upstream's SQLiteVecIndex.add_chunks does.
    for call_start in range(0, len(data), batch):
        call_stop = min(call_start + batch, len(data))
        for start in range(call_start, call_stop, 500):
            stop = min(start + 500, call_stop)
            rows = [chunk_json(i) for i in range(start, stop)]
            cur.executemany(
                "INSERT INTO [bench_chunks] (id, chunk) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET chunk = excluded.chunk;",
                [(cid, body) for cid, body, _ in rows],
            )
            cur.executemany(
                "INSERT INTO [bench_vectors] (id, embedding) VALUES (?, ?);",
                [(rows[j][0], serialize_vector(data[start + j])) for j in range(stop - start)],
            )
            cur.executemany("INSERT INTO [bench_fts] (id, content) VALUES (?, ?);",
                            [(cid, text) for cid, _, text in rows])
        conn.commit()
    insert_s = time.perf_counter() - started

    query_sql = (
        "SELECT m.id, m.chunk, v.distance FROM [bench_vectors] AS v "
        "JOIN [bench_chunks] AS m ON m.id = v.id "
        "WHERE v.embedding MATCH ? AND k = ? ORDER BY v.distance;"
    )
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        rows = cur.execute(query_sql, (serialize_vector(q), k)).fetchall()
        hits = [(json.loads(chunk), 1.0 / max(float(dist), 1e-12)) for _, chunk, dist in rows]
        times.append(time.perf_counter() - t0)
        assert len(hits) == k
        found.append([int(cid.split("-")[1]) for cid, _, _ in rows])
    conn.close()
    p50, p99 = percentiles(times)
    return Result("sqlite-vec vec0", len(data), len(data) / insert_s, p50, p99,
                  recall_at(found, exact, k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dimension", type=int, default=384)
    # The defaults are crates/vector-conformance/benches/vector_stores.rs's.
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--spread", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=20_250_101)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1000, help="chunks per insert call")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--persist-max", type=int, default=10_000,
                        help="measure faiss's per-insert save only up to this N")
    parser.add_argument("--faiss-threads", type=int, default=0,
                        help="faiss OpenMP threads (0: faiss's default, as the Python stack runs)")
    parser.add_argument("--stores", nargs="+", default=["faiss", "sqlite-vec"],
                        choices=["faiss", "sqlite-vec"])
    args = parser.parse_args()

    import faiss
    import sqlite_vec

    if args.faiss_threads > 0:
        faiss.omp_set_num_threads(args.faiss_threads)
    print(f"python {platform.python_version()}, numpy {np.__version__}, faiss-cpu "
          f"{faiss.__version__}, sqlite-vec {sqlite_vec.__version__} (SQLite "
          f"{sqlite3.sqlite_version}), {os.cpu_count()} CPUs; dimension {args.dimension}, "
          f"{args.clusters} clusters, spread {args.spread}, seed {args.seed}, "
          f"{args.queries} queries, k={args.k}, insert batches of {args.batch}, faiss threads "
          f"{faiss.omp_get_max_threads()}\n")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="vector-baseline-") as tmp:
        for n in args.sizes:
            gen = ClusteredVectors(args.dimension, args.clusters, args.spread, args.seed)
            data = gen.take(n)
            queries = gen.take(args.queries)
            exact = exact_top_k(data, queries, args.k)
            if "faiss" in args.stores:
                results.append(bench_faiss(data, queries, exact, args.batch, args.k,
                                           measure_persist=n <= args.persist_max))
                print(f"  done: faiss N={n}", flush=True)
            if "sqlite-vec" in args.stores:
                results.append(bench_sqlite_vec(data, queries, exact, args.batch, args.k,
                                                Path(tmp)))
                print(f"  done: sqlite-vec N={n}", flush=True)

    print()
    print("| store | N | insert chunks/s | query p50 ms | query p99 ms | recall@10 | persist s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        persist = f"{r.persist_s:.1f}" if r.persist_s is not None else "–"
        print(f"| {r.store} | {r.n:,} | {r.insert_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
              f"| {r.recall:.3f} | {persist} |")


if __name__ == "__main__":
    main()
