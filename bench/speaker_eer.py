"""Train a speaker encoder with the training loop and report its EER on held-out speakers.

Usage: python bench/speaker_eer.py [--family ge2e|xvector] [--epochs 30] [--minutes 10]
       [--corpus PATH | --speakers 200 --per-speaker 10] [--held-out 40] [--trials 20000]
       [--threads 2] [--device auto] [--out result.json] [--save RUN_DIR]

The last --held-out speakers (sorted) never reach training; verification trials (half
same-speaker) are drawn among them only, so the EER is on unseen voices. Training goes one
epoch at a time through the checkpointing loop, so the EER is tracked per epoch.
"""

from __future__ import annotations

import argparse

import torch

from heldout import add_options, describe, report, split_speakers, train_by_epoch
from voxaudit.data.corpus import Utterance
from voxaudit.models.speaker import (
    Encoder,
    equal_error_rate,
    speaker_encoder_for,
    speaker_targets,
    verification_trials,
)
from voxaudit.train.data import UtteranceDataset
from voxaudit.train.run import speaker_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["ge2e", "xvector"], default="ge2e")
    parser.add_argument("--speakers-per-batch", type=int, default=16)
    parser.add_argument("--utterances-per-speaker", type=int, default=4)
    parser.add_argument("--trials", type=int, default=20000)
    add_options(parser, held_out=40, lr=1e-3)
    args = parser.parse_args()
    corpus, train, test = split_speakers(args)
    model = speaker_encoder_for(train, family=args.family)
    data = UtteranceDataset(train, model.front_end, speaker_targets(model))
    sampler = speaker_batches(
        data.targets(), args.seed, args.speakers_per_batch, args.utterances_per_speaker
    )
    history = train_by_epoch(
        args,
        model,
        data,
        lambda: {"held_out_eer": _eer(model, test, args.trials, args.seed)},
        sampler=sampler,
        grad_clip=3.0,
    )
    report(args, {
        "family": args.family,
        "trials": args.trials,
        **describe(args, corpus, model, train, test, history),
        "held_out_eer": history[-1]["held_out_eer"],
    })  # fmt: skip


def _eer(model: torch.nn.Module, utterances: list[Utterance], trials: int, seed: int) -> float:
    """EER of cosine-scored trials among these utterances."""
    embeddings = Encoder(model).embed([u.load(model.sample_rate) for u in utterances])
    scores, labels = verification_trials(embeddings, [u.speaker for u in utterances], trials, seed)
    return equal_error_rate(scores, labels)[0]


if __name__ == "__main__":
    main()
