"""How fast the built-in synthetic corpus is made: utterances per second and real-time factor.

Usage: python bench/synth_speed.py [--utterances 1000] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from voxaudit.data.synth import espeak_version, synthesize_corpus

PER_SPEAKER = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, help="write here (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            results = run(Path(tmp), args.utterances, args.workers, args.seed)
    else:
        results = run(args.out, args.utterances, args.workers, args.seed)
    print(json.dumps(results))


def run(out_dir: Path, utterances: int, workers: int, seed: int) -> dict:
    """Synthesize about ``utterances`` utterances into ``out_dir`` and report the figures."""
    n_speakers = max(1, math.ceil(utterances / PER_SPEAKER))
    per_speaker = min(PER_SPEAKER, utterances)
    start = time.perf_counter()
    corpus = synthesize_corpus(out_dir, n_speakers, per_speaker, seed, workers=workers)
    seconds = time.perf_counter() - start
    audio = sum(u.duration or 0.0 for u in corpus)
    results = {
        "utterances": len(corpus),
        "speakers": n_speakers,
        "workers": workers,
        "seconds": round(seconds, 2),
        "utterances_per_second": round(len(corpus) / seconds, 1),
        "audio_hours": round(audio / 3600, 3),
        "real_time_factor": round(seconds / audio, 5),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "espeak_ng": espeak_version(),
    }
    print(f"machine: {results['platform']}, {results['cpu_count']} CPUs, {workers} workers")
    print(f"{len(corpus)} utterances in {seconds:.1f} s: {results['utterances_per_second']}/s")
    print(f"{audio / 3600:.2f} h of audio, real-time factor {results['real_time_factor']}")
    print(f"({audio / seconds:.0f} times faster than real time)")
    return results


if __name__ == "__main__":
    main()
