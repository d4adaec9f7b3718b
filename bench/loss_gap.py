"""Train/holdout loss gap of a trained audit target: how over-fitted is it?

Usage: python bench/loss_gap.py --model RUN_DIR --corpus C --split S [--role target]
       [--max-per-side 250] [--out FILE]

Computes the per-utterance loss (ASR: length-normalized CTC or cross-entropy per character;
classifier: cross-entropy) and CER or accuracy on the role's balanced evaluation set: its
training utterances against its holdout, with a bootstrap 95% interval on the gap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import jiwer
import numpy as np
import torch
from scipy.stats import bootstrap

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.mia.evaluation import evaluation_set
from voxaudit.models.checkpoints import load_model, read_checkpoint, resolve_device
from voxaudit.models.classifier import SpokenClassifier
from voxaudit.models.recognizer import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--role", default="target")
    parser.add_argument("--max-per-side", type=int, default=250)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    corpus = load_corpus(args.corpus)
    split = AuditSplit.load(args.split)
    state = read_checkpoint(args.model)
    trained = (state.get("data") or {}).get("train_ids")
    sets = evaluation_set(split, corpus, args.role, max_per_side=args.max_per_side, trained=trained)
    device = resolve_device(args.device)
    kind = (state.get("metadata") or {}).get("kind", "asr")
    results: dict[str, object] = {"model": str(args.model), "kind": kind, "role": args.role}
    sides = {"train": sets.is_member, "holdout": ~sets.is_member}
    utterances = [corpus[i] for i in sets.ids]
    if kind == "classifier":
        model = SpokenClassifier(load_model(args.model, device))
        labels_of = model.model.target
        waves = [u.load(model.sample_rate) for u in utterances]
        labels = [model.classes[labels_of(u)] for u in utterances]
        losses = model.utterance_loss(waves, labels)
        correct = model.predict_proba(waves).argmax(axis=1) == [labels_of(u) for u in utterances]
        for side, mask in sides.items():
            results[f"{side}_accuracy"] = round(float(correct[mask].mean()), 4)
    else:
        recognizer = Recognizer(load_model(args.model, device))
        waves = [u.load(recognizer.sample_rate) for u in utterances]
        texts = [u.transcript for u in utterances]
        losses = np.asarray(recognizer.utterance_loss(waves, texts, normalize=True))
        hypotheses = recognizer.transcribe(waves)
        for side, mask in sides.items():
            refs = [t for t, m in zip(texts, mask, strict=True) if m]
            hyps = [h for h, m in zip(hypotheses, mask, strict=True) if m]
            results[f"{side}_cer"] = round(float(jiwer.cer(refs, hyps)), 4)
    train, holdout = losses[sides["train"]], losses[sides["holdout"]]
    interval = bootstrap(
        (holdout, train), lambda a, b, axis: a.mean(axis) - b.mean(axis),
        n_resamples=2000, random_state=0,
    ).confidence_interval  # fmt: skip
    results.update({
        "n_per_side": len(train),
        "train_loss": round(float(train.mean()), 4),
        "holdout_loss": round(float(holdout.mean()), 4),
        "gap": round(float(holdout.mean() - train.mean()), 4),
        "gap_95ci": [round(float(interval.low), 4), round(float(interval.high), 4)],
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    })  # fmt: skip
    text = json.dumps(results, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", "utf-8")


if __name__ == "__main__":
    main()
