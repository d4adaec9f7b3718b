"""Train a CTC preset on the synthetic corpus and report train and held-out-speaker CER.

Usage: python bench/asr_cer.py [--preset small] [--epochs 50] [--minutes 10] [--speakers 200]
       [--per-speaker 10] [--held-out 20] [--threads 2] [--out result.json]

A plain Adam loop (linear warm-up, gradient clipping): enough to tell which preset reaches a
usable CER in a given time, not a substitute for the training loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import torch

from voxaudit.data.corpus import Utterance
from voxaudit.data.features import collate
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.models.ctc import CTC_PRESETS, CTCModel
from voxaudit.models.encoders import parameter_count
from voxaudit.models.recognizer import Recognizer, cer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(CTC_PRESETS), default="small")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--speakers", type=int, default=200)
    parser.add_argument("--per-speaker", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=20, help="speakers kept out of training")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON results here")
    args = parser.parse_args()
    results = run(args)
    text = json.dumps(results, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Synthesize, split by speaker, train within the budget, evaluate; return the figures."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    start = time.perf_counter()
    corpus = synthesize_corpus_in_memory(args.speakers, args.per_speaker, seed=args.seed)
    speakers = sorted({u.speaker for u in corpus})
    held_out = set(speakers[len(speakers) - args.held_out :])
    train = [u for u in corpus if u.speaker not in held_out]
    test = [u for u in corpus if u.speaker in held_out]
    synth_seconds = time.perf_counter() - start

    model = CTCModel.from_preset(args.preset)
    with torch.no_grad():
        features = [model.front_end(torch.from_numpy(u.load(model.sample_rate))) for u in train]
    targets = [model.tokenizer.encode(u.transcript) for u in train]
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / args.warmup)
    )
    history = []
    budget = args.minutes * 60
    trained, seen = 0.0, 0
    for epoch in range(args.epochs):
        model.train()
        order = list(range(len(train)))
        rng.shuffle(order)
        tick, losses = time.perf_counter(), []
        for first in range(0, len(order), args.batch_size):
            idx = order[first : first + args.batch_size]
            batch = collate([features[i] for i in idx], [targets[i] for i in idx])
            loss = model.training_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            seen += len(idx)
            if trained + time.perf_counter() - tick > budget:
                break
        trained += time.perf_counter() - tick
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(sum(losses) / len(losses), 4),
                "held_out_cer": round(_cer(model, test), 4),
                "train_seconds": round(trained, 1),
            }
        )
        print(json.dumps(history[-1]), flush=True)
        if trained > budget:
            break

    return {
        "preset": args.preset,
        "config": model.config(),
        "parameters": parameter_count(model),
        "train_utterances": len(train),
        "held_out_utterances": len(test),
        "held_out_speakers": len(held_out),
        "train_audio_hours": round(sum(u.duration or 0.0 for u in train) / 3600, 3),
        "synth_seconds": round(synth_seconds, 1),
        "train_seconds": round(trained, 1),
        "train_utterances_per_second": round(seen / trained, 2),
        "epochs": history[-1]["epoch"],
        "history": history,
        # Every k-th training utterance, as many as held out, to keep evaluation short.
        "train_cer": round(_cer(model, train[:: max(1, len(train) // len(test))]), 4),
        "held_out_cer": history[-1]["held_out_cer"],
        "held_out_cer_beam8": round(_cer(model, test, beam=8), 4),
        "threads": args.threads,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }


def _cer(model: CTCModel, utterances: list[Utterance], beam: int = 1) -> float:
    """CER of the model on these utterances, through the waveform Recognizer."""
    recognizer = Recognizer(model, batch_size=32, beam=beam)
    hypotheses = recognizer.transcribe([u.load(model.sample_rate) for u in utterances])
    return cer([u.transcript for u in utterances], hypotheses)


if __name__ == "__main__":
    main()
