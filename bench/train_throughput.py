"""Training throughput per model family: utterances per second through the one training loop.

Usage: python bench/train_throughput.py [--device cpu|cuda] [--speakers 20] [--per-speaker 8]
       [--families ctc attention ge2e xvector classifier] [--threads N] [--out result.json]

Each family trains two epochs on the same synthetic utterances (about 3.3 s each) with its
default size; the second epoch is reported, so feature extraction (done once, then kept in
memory) is not counted. Run it on a CPU and on a GPU to compare the two.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from typing import Any

import torch

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.encoders import parameter_count
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer
from voxaudit.train.run import MODEL_KINDS

GE2E_BATCHES = {"speakers_per_batch": 8, "utterances_per_speaker": 4}
# family -> (kind in MODEL_KINDS, [model] settings, [sampler] settings)
FAMILIES: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "ctc": ("asr", {"family": "ctc", "preset": "small"}, {}),
    "attention": ("asr", {"family": "attention", "preset": "small"}, {}),
    "ge2e": ("speaker", {"family": "ge2e"}, GE2E_BATCHES),
    "xvector": ("speaker", {"family": "xvector"}, GE2E_BATCHES),
    "classifier": ("classifier", {"label": "speaker"}, {}),
}


def measure(family: str, utterances: list, device: str, batch_size: int) -> dict[str, Any]:
    """Train ``family`` for two epochs and report the second epoch's throughput."""
    kind_name, model_settings, sampler_settings = FAMILIES[family]
    kind = MODEL_KINDS[kind_name]
    model = kind.build(utterances, **model_settings)
    data = UtteranceDataset(utterances, model.front_end, kind.target(model))
    sampler = kind.batch_sampler(data.targets(), **sampler_settings) if kind.batch_sampler else None
    config = TrainConfig(epochs=2, batch_size=batch_size, device=device, grad_clip=5.0)
    history = Trainer(config, progress=False).fit(model, data, batch_sampler=sampler)
    last = history.epochs[-1]
    return {
        "family": family,
        "parameters": parameter_count(model),
        "utterances_per_s": round(last.utterances_per_s, 1),
        "epoch_seconds": round(last.seconds, 2),
        "steps": last.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--speakers", type=int, default=20)
    parser.add_argument("--per-speaker", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = synthesize_corpus_in_memory(args.speakers, args.per_speaker, seed=0, workers=None)
    utterances = list(corpus)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"{len(utterances)} utterances; {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{args.threads} threads, device {device_name}, torch {torch.__version__}"
    )
    rows = []
    for family in args.families:
        row = measure(family, utterances, args.device, args.batch_size)
        rows.append(row)
        print(
            f"{family:<11} {row['parameters'] / 1e6:6.2f}M params  "
            f"{row['utterances_per_s']:8.1f} utt/s  ({row['epoch_seconds']} s/epoch)"
        )
    result = {
        "device": device_name,
        "threads": args.threads,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "utterances": len(utterances),
        "families": rows,
    }
    print(json.dumps(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
