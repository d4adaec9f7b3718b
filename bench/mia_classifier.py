"""End-to-end sample-level membership audit of utterance classifiers (papers 002 and 004).

Usage: python bench/mia_classifier.py [--corpus ../shared/data/fsdd] [--labels speaker transcript]
       [--threat grey] [--shadows 2] [--epochs 40] [--speakers 40 --per-speaker 20]
       [--max-per-side 200] [--work voxaudit-out/mia-classifier]

Without --corpus a synthetic corpus (40 speakers x 20 utterances by default) is made in WORK and
a speaker-ID classifier is audited. With --corpus (e.g. FSDD: 6 speakers, 3,000 spoken digits)
the classifiers of --labels are audited (default there: speaker ID and the digit, i.e. the
transcript); a --corpus that does not exist is skipped with a message, not an error.

Target and shadows are trained alike, deliberately overfit (no dropout, no augmentation, many
epochs; the auditor knows the recipe), each on exactly its pool of a sample-level split whose
shadows train on random halves of the shadow pools, so any shadow, never having seen the
target's pools, is also the null control. Every step resumes: the corpus and split are reused,
training continues from checkpoints, features from their cache. Each report lands in
WORK/NAME/LABEL/report-THREAT/ (report-THREAT-recallR with --decision recall=R), with
results.md beside it: the table for docs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.mia.configs import ClassifierAuditConfig
from voxaudit.mia.core import run_audit
from voxaudit.mia.families.classifier import ClassifierFamily
from voxaudit.report.console import mia_table
from voxaudit.report.mia import markdown_table, write_html
from voxaudit.train.run import train_model

COLUMNS = ("precision", "recall", "accuracy", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, help="a corpus folder (default: synthetic)")
    parser.add_argument("--labels", nargs="+", choices=["speaker", "transcript"])
    parser.add_argument("--threat", choices=["black", "grey", "white"], default="grey")
    parser.add_argument("--shadows", type=int, default=2)
    parser.add_argument("--speakers", type=int, default=40)
    parser.add_argument("--per-speaker", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-per-side", type=int, default=200)
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--decision",
        default="accuracy",
        help="the attacks' operating point on shadow data: accuracy, recall=R or fpr=F",
    )
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/mia-classifier"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.corpus is None:
        name = f"synthetic-{args.speakers}x{args.per_speaker}"
        corpus_dir = args.work / name / "corpus"
        synthesize_corpus(
            corpus_dir, n_speakers=args.speakers, per_speaker=args.per_speaker, seed=args.seed
        )
        labels = args.labels or ["speaker"]
    else:
        if not args.corpus.exists():
            print(f"skipped: no corpus at {args.corpus}")
            return
        corpus_dir, name = args.corpus, args.corpus.resolve().name
        labels = args.labels or ["speaker", "transcript"]
    corpus = load_corpus(corpus_dir)
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    split_path = work / "split.json"
    if not split_path.exists():
        make_split(
            corpus, "sample", seed=args.seed, n_shadow=args.shadows, shadow_mode="halves"
        ).save(split_path)
    split = AuditSplit.load(split_path)
    for label in labels:
        report = _audit(args, corpus, split, split_path, work / label, label)
        from rich.console import Console

        Console().print(mia_table(report, COLUMNS))
        print(json.dumps(report["setup"]["classification_accuracy"]))


def _audit(args, corpus, split, split_path, work: Path, label: str) -> dict[str, Any]:
    """Train (or reuse) the label's target and shadows, audit the target, write results.md."""
    config = {
        "model": {
            "label": label,
            "hidden": args.hidden,
            "n_mels": 40,
            "dropout": 0.0,
            "sample_rate": corpus[0].sample_rate,
        },
        "train": {
            "epochs": args.epochs,
            "lr": args.lr,
            "batch_size": 16,
            "warmup_steps": 50,
            "grad_clip": 5.0,
            "device": args.device,
            "seed": args.seed,
        },
    }
    runs = {}
    for role in split.roles:
        runs[role] = work / "models" / role
        train_model("classifier", corpus, split_path, role, config, runs[role])
    rule = "" if args.decision == "accuracy" else "-" + args.decision.replace("=", "")
    out_dir = work / f"report-{args.threat}{rule}"
    family = ClassifierFamily()
    report = run_audit(
        family,
        corpus,
        split,
        family.load(runs["target"], "target", args.device),
        [family.load(runs[r], r, args.device) for r in split.roles[1:]],
        out_dir,
        config=ClassifierAuditConfig(
            threat=args.threat,
            draws=args.draws,
            max_per_side=args.max_per_side,
            decision=args.decision,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        ),
    )
    write_html(out_dir, report)
    command = "python " + " ".join(sys.argv)
    (out_dir / "results.md").write_text(_markdown(report, command), encoding="utf-8")
    return report


def _markdown(report: dict[str, Any], command: str) -> str:
    """The results as a markdown table, every figure with its interval, and how they were made."""
    setup = report["setup"]
    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{setup['seconds']} s for the audit.",
        "",
        "Classification accuracy (members / non-members): "
        + json.dumps(setup["classification_accuracy"]),
        "",
    ]
    return "\n".join(lines) + "\n" + markdown_table(report, COLUMNS)


if __name__ == "__main__":
    main()
