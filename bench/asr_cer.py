"""Train an ASR model with the training loop and report train and held-out-speaker CER.

Usage: python bench/asr_cer.py [--family ctc|attention] [--preset small] [--epochs 30]
       [--minutes 10] [--corpus PATH | --speakers 200 --per-speaker 10] [--held-out 20]
       [--specaugment] [--threads 2] [--device cpu] [--out result.json]

Without --corpus the built-in synthetic corpus is used; with it, any corpus voxaudit loads
(e.g. ../shared/data/fsdd). The last --held-out speakers (sorted) never reach training, so the
held-out CER is on unseen voices. Training goes one epoch at a time through the checkpointing
loop, so the CER is tracked per epoch and the time budget is checked between epochs.
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

from voxaudit.data.corpus import Utterance
from voxaudit.data.loaders import load_corpus
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.encoders import parameter_count
from voxaudit.models.recognizer import Recognizer, asr_model_for, cer, transcript_targets
from voxaudit.train.augment import SpecAugment
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.loop import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["ctc", "attention"], default="ctc")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--corpus", type=Path, help="a corpus on disk instead of the synthetic one")
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=20, help="speakers kept out of training")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    parser.add_argument("--specaugment", action="store_true", help="SpecAugment while training")
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
    """Load or synthesize, hold out speakers, train within the budget, evaluate."""
    torch.set_num_threads(args.threads)
    if args.corpus is not None:
        corpus = load_corpus(args.corpus)
    else:
        corpus = synthesize_corpus_in_memory(args.speakers, args.per_speaker, seed=args.seed)
    held_out = set(corpus.speakers[len(corpus.speakers) - args.held_out :])
    train = [u for u in corpus if u.speaker not in held_out]
    test = [u for u in corpus if u.speaker in held_out]
    # Every k-th training utterance, as many as held out, keeps evaluation short.
    train_probe = train[:: max(1, len(train) // max(1, len(test)))]

    model = asr_model_for(train, family=args.family, preset=args.preset)
    data = UtteranceDataset(train, model.front_end, transcript_targets(model))
    history: list[dict[str, Any]] = []
    trained = 0.0
    with tempfile.TemporaryDirectory() as run_dir:
        for epoch in range(1, args.epochs + 1):
            config = TrainConfig(
                epochs=epoch, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                grad_clip=5.0, device=args.device, seed=args.seed,
            )  # fmt: skip
            hooks = [SpecAugment()] if args.specaugment else []
            trainer = Trainer(config, hooks, progress=False)
            records = trainer.fit(model, data, out_dir=run_dir).epochs
            trained += records[-1].seconds
            history.append({
                "epoch": epoch,
                "loss": round(records[-1].train_loss, 4),
                "utterances_per_s": round(records[-1].utterances_per_s, 1),
                "held_out_cer": round(_cer(model, test), 4),
                "train_seconds": round(trained, 1),
            })  # fmt: skip
            print(json.dumps(history[-1]), flush=True)
            if trained > args.minutes * 60:
                break
    return {
        "family": args.family,
        "preset": args.preset,
        "specaugment": args.specaugment,
        "corpus": corpus.name if args.corpus is not None else "synthetic",
        "parameters": parameter_count(model),
        "train_utterances": len(train),
        "held_out_utterances": len(test),
        "held_out_speakers": len(held_out),
        "train_audio_hours": round(sum(u.duration or 0.0 for u in train) / 3600, 3),
        "train_seconds": round(trained, 1),
        "epochs": len(history),
        "history": history,
        "train_cer": round(_cer(model, train_probe), 4),
        "held_out_cer": history[-1]["held_out_cer"],
        "held_out_cer_beam8": round(_cer(model, test, beam=8), 4) if args.family == "ctc" else None,
        "threads": args.threads,
        "device": str(next(model.parameters()).device),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def _cer(model: torch.nn.Module, utterances: list[Utterance], beam: int = 1) -> float:
    """CER of the model on these utterances, through the waveform Recognizer."""
    recognizer = Recognizer(model, batch_size=32, beam=beam)
    hypotheses = recognizer.transcribe([u.load(model.sample_rate) for u in utterances])
    return cer([u.transcript for u in utterances], hypotheses)


if __name__ == "__main__":
    main()
