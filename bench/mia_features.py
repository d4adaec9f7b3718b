"""Membership-feature extraction throughput: batched against one utterance at a time.

Usage: python bench/mia_features.py [--device cpu|cuda] [--threads N] [--utterances 64]
       [--batch-size 32] [--model-batch 64] [--draws 8] [--snrs 30 20 10] [--out result.json]

Grey-box ASR features (loss, confidence, and Gaussian noise at each SNR with ``--draws`` draws)
of the built-in CTC model (small preset, random weights: throughput does not depend on them) on
synthetic speech, computed twice in the same run: batched (chunks of ``--batch-size``
utterances whose noisy copies go to ``Recognizer.analyze`` together, ``--model-batch`` at a time
on the device) and one at a time (chunks of one utterance, one model call per copy). It reports
both rates, their ratio, and the largest difference between the two feature tables.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.mia.asr_features import AsrFeatures
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Analysis, Recognizer


class OneAtATime:
    """A recognizer called once per waveform: the loop that batching replaces."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.sample_rate = recognizer.sample_rate

    def transcribe(self, waveforms: Sequence[np.ndarray]) -> list[str]:
        return [self.recognizer.transcribe([w])[0] for w in waveforms]

    def scores(self, waveforms: Sequence[np.ndarray]) -> list[dict]:
        return [self.recognizer.scores([w])[0] for w in waveforms]

    def analyze(
        self,
        waveforms: Sequence[np.ndarray],
        transcripts: Sequence[str],
        compare_to: Sequence[np.ndarray] | None = None,
        keep_log_probs: bool = True,
    ) -> list[Analysis]:
        return [
            self.recognizer.analyze(
                [w], [t], None if compare_to is None else [compare_to[k]], keep_log_probs
            )[0]
            for k, (w, t) in enumerate(zip(waveforms, transcripts, strict=True))
        ]


def timed_extract(
    features: AsrFeatures, model: Any, utterances: list, waves: list[np.ndarray]
) -> tuple[FeatureTable, float]:
    """The feature table and the seconds it took."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    table = features.extract(
        model,
        waves,
        [u.transcript for u in utterances],
        [u.id for u in utterances],
        [u.speaker for u in utterances],
        progress=False,
    )
    return table, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32, help="utterances per chunk")
    parser.add_argument("--model-batch", type=int, default=64, help="waveforms per forward pass")
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--snrs", type=float, nargs="+", default=[30.0, 20.0, 10.0])
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    per_speaker = 4
    corpus = synthesize_corpus_in_memory(
        math.ceil(args.utterances / per_speaker), per_speaker, seed=0, workers=None
    )
    utterances = list(corpus)[: args.utterances]
    model = CTCModel.from_preset("small")
    waves = [u.load(model.sample_rate) for u in utterances]
    audio_seconds = sum(len(w) for w in waves) / model.sample_rate
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"{len(waves)} utterances ({audio_seconds:.0f} s of audio); {platform.platform()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads, device {device_name}, "
        f"torch {torch.__version__}"
    )
    settings = {"snrs_db": tuple(args.snrs), "draws": args.draws, "adversarial_eps": ()}
    batched_model = Access(
        Recognizer(model, device=args.device, batch_size=args.model_batch), "grey"
    )
    single_model = OneAtATime(Access(Recognizer(model, batch_size=1), "grey"))
    batched = AsrFeatures(**settings, batch_size=args.batch_size)
    single = AsrFeatures(**settings, batch_size=1)
    # Warm up (allocators, kernels) on two utterances, untimed.
    timed_extract(batched, batched_model, utterances[:2], waves[:2])
    timed_extract(single, single_model, utterances[:2], waves[:2])

    rows = {}
    tables = {}
    for name, features, recognizer in (
        ("batched", batched, batched_model),
        ("one_at_a_time", single, single_model),
    ):
        tables[name], seconds = timed_extract(features, recognizer, utterances, waves)
        rows[name] = {
            "seconds": round(seconds, 2),
            "utterances_per_s": round(len(waves) / seconds, 2),
        }
        print(f"{name:<14} {rows[name]['utterances_per_s']:8.2f} utt/s  ({seconds:.1f} s)")
    difference = np.abs(tables["batched"].values - tables["one_at_a_time"].values)
    worst = int(difference.max(axis=0).argmax())
    speedup = rows["one_at_a_time"]["seconds"] / rows["batched"]["seconds"]
    print(
        f"speedup {speedup:.1f}x; largest difference between the tables "
        f"{difference.max():.2e} (column {tables['batched'].columns[worst]})"
    )
    result = {
        "device": device_name,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "model": "ctc small (random init)",
        "utterances": len(waves),
        "audio_seconds": round(audio_seconds, 1),
        "snrs_db": args.snrs,
        "draws": args.draws,
        "batch_size": args.batch_size,
        "model_batch": args.model_batch,
        "columns": len(tables["batched"].columns),
        **rows,
        "speedup": round(speedup, 2),
        "max_abs_diff": float(difference.max()),
        "max_abs_diff_column": tables["batched"].columns[worst],
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
