"""Time per classifier audit stage with the corpus read once and passed on, against re-reading it.

Usage: python bench/corpus_once.py [--corpus ../shared/data/fsdd] [--epochs 1]
           [--out voxaudit-out/bench/corpus_once.json]

A classifier audit trains a target and two shadows. Each training used to read and check the
whole corpus again (``train_model`` given the corpus' path): four reads per audit with the
corpus stage. Now the audit reads it once and passes the ``Corpus`` on. In one run, on the same
split and recipe, this times: reading and checking the corpus (median of 3), and each model's
training stage both ways (given the path, as before; given the loaded corpus, as now), the two
ways alternating per role. One process, one thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import make_split
from voxaudit.files import write_atomically
from voxaudit.train.run import train_model

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"


def timed(work, *args, **kwargs) -> float:
    began = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=FSDD)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="voxaudit-out/bench/corpus_once.json")
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"skipped: {args.corpus} is not there")
    torch.set_num_threads(1)
    reads = [timed(load_corpus, args.corpus, progress=False) for _ in range(3)]
    corpus = load_corpus(args.corpus, progress=False)
    config = {
        "model": {"label": "transcript", "hidden": 32, "n_mels": 40,
                  "sample_rate": corpus[0].sample_rate},
        "train": {"epochs": args.epochs, "batch_size": 16, "device": "cpu", "seed": 0},
    }  # fmt: skip
    stages = {}
    with tempfile.TemporaryDirectory() as work:
        split = make_split(corpus, "sample", seed=0, n_shadow=2)
        split_path = Path(work) / "split.json"
        split.save(split_path)
        for index, role in enumerate(split.roles[:3]):
            ways = {"path (before)": args.corpus, "loaded corpus (now)": corpus}
            order = list(ways) if index % 2 == 0 else list(reversed(ways))
            stages[role] = {
                way: round(timed(train_model, "classifier", ways[way], split_path, role, config,
                                 Path(work) / way.split()[0] / role, progress=False), 2)
                for way in order
            }  # fmt: skip
    before = statistics.median(reads) + sum(s["path (before)"] for s in stages.values())
    now = statistics.median(reads) + sum(s["loaded corpus (now)"] for s in stages.values())
    results = {
        "corpus": str(args.corpus),
        "utterances": len(corpus),
        "read_and_check_s": [round(r, 2) for r in reads],
        "training_stage_s": stages,
        "audit_reads": {"before": 1 + len(stages), "now": 1},
        "corpus_and_training_s": {"before": round(before, 1), "now": round(now, 1)},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    write_atomically(args.out, json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
