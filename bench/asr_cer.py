"""Train an ASR model with the training loop and report train and held-out-speaker CER.

Usage: python bench/asr_cer.py [--family ctc|attention] [--preset small] [--epochs 30]
       [--minutes 10] [--corpus PATH | --speakers 200 --per-speaker 10] [--held-out 20]
       [--specaugment] [--vtlp 0.9 1.1] [--threads 2] [--device cpu] [--out result.json]
       [--save RUN_DIR]

Without --corpus the built-in synthetic corpus is used; with it, any corpus voxaudit loads
(e.g. ../shared/data/fsdd). The last --held-out speakers (sorted) never reach training, so the
held-out CER is on unseen voices. Training goes one epoch at a time through the checkpointing
loop, so the CER is tracked per epoch and the time budget is checked between epochs.
"""

from __future__ import annotations

import argparse

import torch

from heldout import add_options, describe, report, split_speakers, train_by_epoch
from voxaudit.data.corpus import Utterance
from voxaudit.models.recognizer import Recognizer, asr_model_for, cer, transcript_targets
from voxaudit.train.augment import SpecAugment, VocalTractWarp
from voxaudit.train.data import UtteranceDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["ctc", "attention"], default="ctc")
    parser.add_argument("--preset", default="small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200, help="warm-up steps")
    parser.add_argument("--specaugment", action="store_true", help="SpecAugment while training")
    parser.add_argument(
        "--vtlp", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="vocal tract length perturbation while training, warp factor drawn from [LOW, HIGH]",
    )  # fmt: skip
    add_options(parser, held_out=20, lr=2e-3)
    args = parser.parse_args()
    corpus, train, test = split_speakers(args)
    model = asr_model_for(train, family=args.family, preset=args.preset)
    data = UtteranceDataset(train, model.front_end, transcript_targets(model))
    history = train_by_epoch(
        args,
        model,
        data,
        lambda: {"held_out_cer": _cer(model, test)},
        hooks=[
            *([VocalTractWarp(*args.vtlp)] if args.vtlp else []),
            *([SpecAugment()] if args.specaugment else []),
        ],
        batch_size=args.batch_size,
        warmup_steps=args.warmup,
        grad_clip=5.0,
    )
    # Every k-th training utterance, as many as held out, keeps evaluation short.
    train_probe = train[:: max(1, len(train) // max(1, len(test)))]
    report(args, {
        "family": args.family,
        "preset": args.preset,
        "specaugment": args.specaugment,
        "vtlp": args.vtlp,
        **describe(args, corpus, model, train, test, history),
        "train_cer": round(_cer(model, train_probe), 4),
        "held_out_cer": history[-1]["held_out_cer"],
        "held_out_cer_beam8": round(_cer(model, test, beam=8), 4) if args.family == "ctc" else None,
    })  # fmt: skip


def _cer(model: torch.nn.Module, utterances: list[Utterance], beam: int = 1) -> float:
    """CER of the model on these utterances, through the waveform Recognizer."""
    recognizer = Recognizer(model, batch_size=32, beam=beam)
    hypotheses = recognizer.transcribe([u.load(model.sample_rate) for u in utterances])
    return cer([u.transcript for u in utterances], hypotheses)


if __name__ == "__main__":
    main()
