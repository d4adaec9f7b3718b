"""Train a speaker encoder with the training loop and report its EER on held-out speakers.

Usage: python bench/speaker_eer.py [--family ge2e|xvector] [--epochs 20] [--minutes 10]
       [--corpus PATH | --speakers 200 --per-speaker 10] [--held-out 40] [--trials 20000]
       [--threads 2] [--device auto] [--out result.json]

The last --held-out speakers (sorted) never reach training; verification trials (half
same-speaker) are drawn among them only, so the EER is on unseen voices. Training goes one
epoch at a time through the checkpointing loop, so the EER is tracked per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from voxaudit.data.loaders import load_corpus
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.encoders import parameter_count
from voxaudit.models.speaker import (
    Encoder,
    equal_error_rate,
    speaker_encoder_for,
    speaker_targets,
    verification_trials,
)
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer
from voxaudit.train.run import speaker_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["ge2e", "xvector"], default="ge2e")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--corpus", type=Path, help="a corpus on disk instead of the synthetic one")
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=40, help="speakers kept out of training")
    parser.add_argument("--speakers-per-batch", type=int, default=16)
    parser.add_argument("--utterances-per-speaker", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    results = run(args)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load or synthesize, hold out speakers, train within the budget, score trials."""
    torch.set_num_threads(args.threads)
    if args.corpus is not None:
        corpus = load_corpus(args.corpus)
    else:
        corpus = synthesize_corpus_in_memory(args.speakers, args.per_speaker, seed=args.seed)
    held_out = set(corpus.speakers[len(corpus.speakers) - args.held_out :])
    train = [u for u in corpus if u.speaker not in held_out]
    test = [u for u in corpus if u.speaker in held_out]

    model = speaker_encoder_for(train, family=args.family)
    data = UtteranceDataset(train, model.front_end, speaker_targets(model))
    history: list[dict[str, Any]] = []
    trained = 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        for epoch in range(1, args.epochs + 1):
            config = TrainConfig(
                epochs=epoch, lr=args.lr, grad_clip=3.0, device=args.device, seed=args.seed
            )
            sampler = speaker_batches(
                data.targets(), args.seed, args.speakers_per_batch, args.utterances_per_speaker
            )
            fit = Trainer(config, progress=False).fit
            records = fit(model, data, out_dir=run_dir, batch_sampler=sampler).epochs
            trained += records[-1].seconds
            eer = _eer(model, test, args.trials, args.seed)
            history.append({
                "epoch": epoch,
                "loss": round(records[-1].train_loss, 4),
                "utterances_per_s": round(records[-1].utterances_per_s, 1),
                "held_out_eer": round(eer, 4),
                "train_seconds": round(trained, 1),
            })  # fmt: skip
            print(json.dumps(history[-1]), flush=True)
            if trained > args.minutes * 60:
                break
    return {
        "family": args.family,
        "corpus": corpus.name if args.corpus is not None else "synthetic",
        "parameters": parameter_count(model),
        "train_utterances": len(train),
        "train_speakers": len({u.speaker for u in train}),
        "held_out_speakers": len(held_out),
        "held_out_utterances": len(test),
        "trials": args.trials,
        "train_seconds": round(trained, 1),
        "epochs": len(history),
        "history": history,
        "held_out_eer": history[-1]["held_out_eer"],
        "threads": args.threads,
        "device": str(next(model.parameters()).device),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def _eer(model: torch.nn.Module, utterances: list, trials: int, seed: int) -> float:
    """EER of cosine-scored trials among these utterances."""
    embeddings = Encoder(model).embed([u.load(model.sample_rate) for u in utterances])
    scores, labels = verification_trials(embeddings, [u.speaker for u in utterances], trials, seed)
    return equal_error_rate(scores, labels)[0]


if __name__ == "__main__":
    main()
