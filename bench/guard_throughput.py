"""Guard cost per query: fingerprint + check of 4 s clips with 10^3, 10^5, 10^6 stored queries.

Usage: python bench/guard_throughput.py [--stored 1000 100000 1000000] [--queries 300]
           [--detectors index memory] [--redis URL] [--out results.json]

One process, one thread (queries per second are per core). The store is filled first: the
index with queries whose landmark hashes are real speech hashes with their two frequencies
shifted at random (so buckets fill as with speech, but stored queries do not repeat each other);
the paper-003 memory with full memories of k = 75 vectors, one account per 75 stored queries.
Then fresh 4 s synthetic-speech clips are fingerprinted and checked, each timed alone (wall
clock), and the whole loop's process CPU time gives queries per CPU-second. Bytes
per stored query: the store's own tables and items (``nbytes``) divided by the stored count, and
the process's resident-memory growth while filling, divided the same way.

``--redis URL`` puts the index in Redis (``RedisStore``, the store gateway replicas share) at
URL instead of in the process; a server of one's own, since the bench writes under a prefix of
its own and deletes nothing. It then also counts the Redis commands each checked query sends
(``INFO commandstats``, summed) and the dataset's growth per stored query, the figures that
size a Redis for a given traffic.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import platform
import time

import numpy as np

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.guard.detectors import IndexDetector, MemoryDetector, encode_vector
from voxaudit.guard.fingerprint import DT_BITS, FREQ_BITS, Fingerprint, Fingerprinter
from voxaudit.guard.store import InMemoryStore, RedisStore
from voxaudit.progress import make_progress

SECONDS = 4.0
RATE = 16000


def clips(n: int, seed: int) -> list[np.ndarray]:
    """``n`` 4 s clips, each a run of synthetic utterances cut to length."""
    corpus = synthesize_corpus_in_memory(n_speakers=max(2, n // 2), per_speaker=3, seed=seed)
    waves = [u.samples for u in corpus.utterances]
    out, i = [], 0
    for _ in range(n):
        clip = np.zeros(0, np.float32)
        while clip.size < SECONDS * RATE:
            clip = np.concatenate([clip, waves[i % len(waves)]])
            i += 1
        out.append(clip[: int(SECONDS * RATE)])
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def jittered(fingerprint: Fingerprint, rng: np.random.Generator) -> Fingerprint:
    """The fingerprint with each landmark's two frequencies moved by a random shift."""
    f1 = (fingerprint.hashes >> (FREQ_BITS + DT_BITS)).astype(np.int64)
    f2 = ((fingerprint.hashes >> DT_BITS) & (2**FREQ_BITS - 1)).astype(np.int64)
    dt = fingerprint.hashes & (2**DT_BITS - 1)
    top = 2**FREQ_BITS - 1
    f1 = np.clip(f1 + rng.integers(-40, 41), 0, top)
    f2 = np.clip(f2 + rng.integers(-40, 41), 0, top)
    hashes = (f1.astype(np.uint32) << (FREQ_BITS + DT_BITS)) | (f2.astype(np.uint32) << DT_BITS)
    return Fingerprint(hashes | dt, fingerprint.times, fingerprint.vector, 0, 4.0)


def fill(detector, stored: int, pool: list[Fingerprint], seed: int) -> None:
    rng = np.random.default_rng(seed)
    with make_progress(transient=True) as progress:
        task = progress.add_task(f"storing {stored:,} queries ({detector.name})", total=stored)
        if isinstance(detector, IndexDetector):
            for i in range(stored):
                detector.remember(f"a{i % 10_000}", jittered(pool[i % len(pool)], rng), 0.0)
                if i % 1000 == 0:
                    progress.update(task, completed=i)
        else:
            for i in range(stored):
                vector = pool[i % len(pool)].vector
                item = encode_vector(np.roll(vector, int(rng.integers(vector.size))))
                detector.store.memory_push(f"a{i // detector.k}", item, detector.k)
                if i % 1000 == 0:
                    progress.update(task, completed=i)


def redis_calls(store: RedisStore) -> int:
    """Commands the Redis server has run since it started, all kinds together."""
    stats = store._redis.info("commandstats")
    return sum(int(entry["calls"]) for entry in stats.values())


def measure(
    name: str, stored: int, queries: list[np.ndarray], pool, seed: int, redis_url: str | None
) -> dict:
    fingerprinter = Fingerprinter()
    if name == "index" and redis_url:
        prefix = f"bench:{os.getpid()}:{stored}"
        store = RedisStore(redis_url, prefix=prefix, index_keys=2**22, bucket_size=16)
        detector = IndexDetector(store, threshold=5)
    elif name == "index":
        store = InMemoryStore(index_keys=2**22, bucket_size=16, max_queries=2**20)
        detector = IndexDetector(store, threshold=5)
    else:
        store = InMemoryStore(index_keys=1, max_queries=1)
        detector = MemoryDetector(store, threshold=0.5)
    before, dataset_before = rss_bytes(), store.nbytes()
    started = time.perf_counter()
    fill(detector, stored, pool, seed)
    fill_s = time.perf_counter() - started
    grown = rss_bytes() - before
    dataset_grown = store.nbytes() - dataset_before
    latencies, fingerprint_only = [], []
    calls_before = redis_calls(store) if isinstance(store, RedisStore) else 0
    cpu_started = time.process_time()
    for i, clip in enumerate(queries):
        # The memory detector checks accounts whose memory is full (k earlier queries).
        account = f"a{i % max(1, stored // 75)}" if name == "memory" else f"q{i}"
        t0 = time.perf_counter()
        fingerprint = fingerprinter(clip)
        t1 = time.perf_counter()
        detector.check(account, fingerprint, 1.0)
        latencies.append(time.perf_counter() - t0)
        fingerprint_only.append(t1 - t0)
    # CPU time counts only this process's own work: on a shared machine the wall clock also
    # counts the time other processes held the core.
    cpu_s = time.process_time() - cpu_started
    ms = np.asarray(latencies) * 1000
    extra = {}
    if isinstance(store, RedisStore):
        # The INFO call itself counts once.
        calls = redis_calls(store) - calls_before - 1
        extra = {"store": "redis", "redis_commands_per_query": round(calls / len(queries), 1)}
    return {
        "detector": name,
        "stored": stored,
        "queries_timed": len(queries),
        "queries_per_s": round(1000 / ms.mean(), 1),
        "queries_per_cpu_s": round(len(queries) / cpu_s, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "fingerprint_p50_ms": round(float(np.percentile(fingerprint_only, 50)) * 1000, 3),
        "store_bytes": store.nbytes(),
        # In the process the table is allocated whole: its size per stored query. In Redis the
        # dataset grows with what is stored: its growth per stored query.
        "store_bytes_per_query": round(
            (dataset_grown if isinstance(store, RedisStore) else store.nbytes()) / stored, 1
        ),
        "rss_growth_bytes_per_query": round(grown / stored, 1),
        "fill_seconds": round(fill_s, 1),
    } | extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--detectors", nargs="+", default=["index", "memory"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--redis", help="a Redis URL: the index in Redis, not in the process")
    parser.add_argument("--out", help="also write the results here as JSON")
    args = parser.parse_args()
    fingerprinter = Fingerprinter()
    pool = [fingerprinter(c) for c in clips(40, args.seed + 1)]
    queries = clips(args.queries, args.seed + 2)
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "clip_seconds": SECONDS,
        "runs": [],
    }
    for name in args.detectors:
        for stored in args.stored:
            run = measure(name, stored, queries, pool, args.seed, args.redis)
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
