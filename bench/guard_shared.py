"""The index detector on benign traffic with shared recordings, and on attack-like query chains.

Usage: python bench/guard_shared.py [--corpus ../shared/data/fsdd] [--accounts 40]
           [--share-rate 0.3] [--rerecord-rate 0.05] [--popular 10] [--fpr 0.001]

Real traffic shares recordings: a clip that went around is sent by many accounts as the same
file, a kiosk prompt is re-recorded. The index detector counts the distinct earlier clips a
query matches; this bench compares scoring every matched query (the detector before content
digests, emulated by fingerprints of unknown content) with counting copies of one recording
once (the detector now). Both are calibrated as ``voxaudit guard calibrate`` does: on benign
traffic with some shared clips (share rate 0.1, re-recordings 0.02), for the target FPR; for
comparison, the detector before is also calibrated on traffic without shared clips, as the
earlier default calibration was. On held-out benign traffic with more sharing, the bench
reports the share of queries and of accounts flagged, each with a Wilson 95% interval.
Against attacks it reports a proxy: chains of queries that add a slowly growing random
perturbation to a carrier (what a black-box search sends), and the queries until the first
flag; the real attacks are ``bench/guard_eval.py``'s. The corpus is FSDD (real speech) when
present, else synthetic.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from voxaudit.data.loaders import load_corpus
from voxaudit.guard.detectors import IndexDetector, Traffic
from voxaudit.guard.fingerprint import Fingerprinter
from voxaudit.guard.intervals import wilson
from voxaudit.guard.traffic import benign_stream, fingerprint_stream

RATE = 16000


def waveforms(corpus: Path | None, n: int) -> tuple[list[np.ndarray], str]:
    if corpus is not None and corpus.exists():
        clips = [u.load(RATE) for u in load_corpus(corpus).utterances]
        return clips, f"{corpus} ({len(clips)} clips)"
    from voxaudit.data.synth import synthesize_corpus_in_memory

    synthetic = synthesize_corpus_in_memory(n_speakers=20, per_speaker=max(1, n // 20), seed=0)
    clips = [u.load(RATE) for u in synthetic]
    return clips, f"synthetic ({len(clips)} clips)"


def unknown_content(traffic: Traffic) -> Traffic:
    """The traffic as the detector saw it before content digests: every query its own clip."""
    return [(a, replace(f, content=0), t) for a, f, t in traffic]


def flagged_share(detector: IndexDetector, traffic: Traffic) -> dict[str, object]:
    flags = [detector.check(a, f, t).flagged for a, f, t in traffic]
    accounts = {a for a, _, _ in traffic}
    hit = {a for (a, _, _), flag in zip(traffic, flags, strict=True) if flag}
    return {
        "queries": wilson(int(sum(flags)), len(flags)).to_dict() | {"n": len(flags)},
        "accounts": wilson(len(hit), len(accounts)).to_dict() | {"n": len(accounts)},
    }


def fresh(detector: IndexDetector, threshold: float) -> IndexDetector:
    """An empty copy of ``detector`` (its own in-process store) with ``threshold`` set."""
    copy = detector.scratch()
    copy.threshold = threshold
    return copy


def attack_chain(carrier: np.ndarray, n: int, seed: int, step: float = 3e-4) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    delta = np.zeros_like(carrier)
    chain = []
    for _ in range(n):
        delta += step * rng.standard_normal(carrier.size).astype(np.float32)
        chain.append(np.clip(carrier + delta, -1, 1).astype(np.float32))
    return chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/fsdd"))
    parser.add_argument("--synth", type=int, default=1200)
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--share-rate", type=float, default=0.3)
    parser.add_argument("--rerecord-rate", type=float, default=0.05)
    parser.add_argument("--popular", type=int, default=10)
    parser.add_argument("--fpr", type=float, default=0.001)
    parser.add_argument("--attacks", type=int, default=8, help="attack chains (carriers)")
    parser.add_argument("--chain", type=int, default=50, help="queries per attack chain")
    parser.add_argument("--out", type=Path, default=Path("voxaudit-out/bench/guard_shared.json"))
    args = parser.parse_args()

    clips, source = waveforms(args.corpus, args.synth)
    half = len(clips) // 2
    fingerprinter = Fingerprinter(sample_rate=RATE)
    calibration = fingerprint_stream(
        benign_stream(clips[:half], n_accounts=args.accounts, seed=1, share_rate=0.1,
                      rerecord_rate=0.02, popular=args.popular),
        fingerprinter,
    )  # fmt: skip
    unshared = fingerprint_stream(
        benign_stream(clips[:half], n_accounts=args.accounts, seed=1), fingerprinter
    )
    held_out = fingerprint_stream(
        benign_stream(clips[half:], n_accounts=args.accounts, seed=2, prefix="held",
                      share_rate=args.share_rate, rerecord_rate=args.rerecord_rate,
                      popular=args.popular),
        fingerprinter,
    )  # fmt: skip
    results: dict[str, object] = {"corpus": source, "settings": vars(args) | {"corpus": source}}
    variants = (
        ("before, calibrated without shared clips", unknown_content, unshared),
        ("before (every matched query counts)", unknown_content, calibration),
        ("now (copies of one recording count once)", lambda t: t, calibration),
    )
    for name, view, calibrate_on in variants:
        detector = IndexDetector()
        threshold = detector.calibrate(view(calibrate_on), fpr=args.fpr)
        benign = flagged_share(fresh(detector, threshold), view(held_out))
        first_flags = []
        rng = np.random.default_rng(7)
        for k in range(args.attacks):
            live = fresh(detector, threshold)
            for account, fp, stamp in view(held_out[:200]):  # some benign history first
                live.check(account, fp, stamp)
            carrier = clips[int(rng.integers(half, len(clips)))]
            queries = attack_chain(carrier, args.chain, k)
            chain = fingerprint_stream(
                [("attacker", w, 1e6 + i) for i, w in enumerate(queries)], fingerprinter
            )
            flags = [live.check(a, f, t).flagged for a, f, t in view(chain)]
            first_flags.append(flags.index(True) + 1 if any(flags) else None)
        caught = [q for q in first_flags if q is not None]
        results[name] = {
            "threshold": threshold,
            "benign_held_out": benign,
            "attack_chains_caught": f"{len(caught)} of {len(first_flags)}",
            "median_queries_to_flag": float(np.median(caught)) if caught else None,
        }
    results["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
