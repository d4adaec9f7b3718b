"""What the held-out-speaker benchmarks share: options, corpus, epoch-by-epoch training, output.

``asr_cer.py`` and ``speaker_eer.py`` train a model on all speakers but the last ``--held-out``
(sorted) and evaluate on those unseen voices after every epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.loaders import load_corpus
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.encoders import parameter_count
from voxaudit.train.loop import TrainConfig, Trainer, seed_everything


def add_options(parser: argparse.ArgumentParser, held_out: int, lr: float | None) -> None:
    """The corpus and machine options the benchmarks take, and the training ones unless
    ``lr`` is None (a benchmark of a model already trained)."""
    parser.add_argument("--corpus", type=Path, help="a corpus on disk instead of the synthetic one")
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=held_out, help="speakers kept out")
    if lr is not None:
        parser.add_argument("--epochs", type=int, default=30)
        parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
        parser.add_argument("--lr", type=float, default=lr)
        parser.add_argument(
            "--cosine", action="store_true", help="cosine learning-rate decay to 0 by --epochs"
        )
        parser.add_argument("--device", default="auto")
        parser.add_argument(
            "--save", type=Path, help="keep the trained model's run directory (checkpoint) here"
        )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON results here")


def split_speakers(args: argparse.Namespace) -> tuple[Corpus, list[Utterance], list[Utterance]]:
    """The corpus (from disk or synthesized), its training utterances and held-out ones.

    Seeds every generator with ``--seed`` first: the model the benchmark builds next draws its
    initial weights from torch's, and unseeded they differed from run to run.
    """
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    if args.corpus is not None:
        corpus = load_corpus(args.corpus)
    else:
        corpus = synthesize_corpus_in_memory(args.speakers, args.per_speaker, seed=args.seed)
    held_out = set(corpus.speakers[len(corpus.speakers) - args.held_out :])
    train = [u for u in corpus if u.speaker not in held_out]
    return corpus, train, [u for u in corpus if u.speaker in held_out]


def train_by_epoch(
    args: argparse.Namespace,
    model: torch.nn.Module,
    data: Dataset,
    evaluate: Callable[[], dict[str, float]],
    hooks: Sequence[Any] = (),
    sampler: Sampler[list[int]] | None = None,
    **config: Any,
) -> list[dict[str, Any]]:
    """Train one epoch at a time (resuming the checkpoint), evaluating after each, in budget."""
    history: list[dict[str, Any]] = []
    trained = 0.0
    if args.cosine:
        batches = (
            len(sampler) if sampler is not None else math.ceil(len(data) / config["batch_size"])
        )
        config["decay_steps"] = max(1, args.epochs * batches - config.get("warmup_steps", 0))
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = scratch if args.save is None else str(args.save)
        if args.save is not None and args.save.exists() and any(args.save.iterdir()):
            raise SystemExit(f"--save {args.save}: not empty; give a new directory")
        for epoch in range(1, args.epochs + 1):
            settings = TrainConfig(
                epochs=epoch, lr=args.lr, device=args.device, seed=args.seed, **config
            )
            trainer = Trainer(settings, hooks, progress=False)
            record = trainer.fit(model, data, out_dir=run_dir, batch_sampler=sampler).epochs[-1]
            trained += record.seconds
            history.append({
                "epoch": epoch,
                "loss": round(record.train_loss, 4),
                "utterances_per_s": round(record.utterances_per_s, 1),
                **{name: round(value, 4) for name, value in evaluate().items()},
                "train_seconds": round(trained, 1),
            })  # fmt: skip
            print(json.dumps(history[-1]), flush=True)
            if trained > args.minutes * 60:
                break
    return history


def describe(
    args: argparse.Namespace,
    corpus: Corpus,
    model: torch.nn.Module,
    train: list[Utterance],
    test: list[Utterance],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """The run's data, model, training and machine, for the results."""
    return {
        "corpus": corpus.name if args.corpus is not None else "synthetic",
        "parameters": parameter_count(model),
        "train_utterances": len(train),
        "train_speakers": len({u.speaker for u in train}),
        "train_audio_hours": round(sum(u.duration or 0.0 for u in train) / 3600, 3),
        "held_out_speakers": len({u.speaker for u in test}),
        "held_out_utterances": len(test),
        "train_seconds": history[-1]["train_seconds"],
        "epochs": len(history),
        "history": history,
        "threads": args.threads,
        "device": str(next(model.parameters()).device),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Print the results as JSON, and write them to ``--out`` when given."""
    text = json.dumps(results, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")
