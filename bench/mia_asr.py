"""End-to-end ASR membership audit: corpus, split, target and shadow training, attacks, report.

Usage: python bench/mia_asr.py [--level sample|speaker] [--threat white] [--shadows 4]
       [--use-shadows 2]
       [--preset tiny] [--epochs 40] [--corpus PATH] [--work voxaudit-out/mia-asr] [--online]
       [--markdown]

Every step resumes: the corpus and split are reused, training continues from checkpoints,
and feature extraction from its cache, so an interrupted run is rerun with the same command.
Without --corpus a synthetic corpus of --speakers x --per-speaker utterances (default 200 x
10) is used. The target and the shadows are trained alike (the auditor knows the recipe: grey
box, as in paper 000); shadows train on random halves of the shadow pools, so one that never
saw the target's data serves as the null control. The report lands in WORK/report-LEVEL-THREAT/
(WORK/report-LEVEL-THREAT-trained/ with --evidence trained).

--online (sample level) adds online LiRA: --shadows reference models, each trained on a random
half of the target's pools (members and non-members), drawn as the target itself was drawn
(WORK/sample-online/), so each evaluated utterance is IN for half of them and references train
on as much data as the target. They all saw target data, so the null control is the offline
run's shadow-0 (trained on shadow data only); the target is the offline run's too (its pools
do not depend on how the shadows are dealt). Both are trained here when missing. Report:
WORK/report-sample-THREAT-online/.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.mia.configs import AsrAuditConfig
from voxaudit.mia.core import run_audit
from voxaudit.mia.families.asr import AsrFamily
from voxaudit.mia.results import read_report
from voxaudit.report.console import mia_table
from voxaudit.report.mia import markdown_table, write_html
from voxaudit.train.run import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", choices=["sample", "speaker"], default="sample")
    parser.add_argument("--threat", choices=["black", "grey", "white"], default="white")
    parser.add_argument("--shadows", type=int, default=4, help="shadow models in the split")
    parser.add_argument(
        "--use-shadows", type=int, help="train and attack with only the first N of them"
    )
    parser.add_argument("--family", choices=["ctc", "attention"], default="ctc")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--speakers", type=int, default=200, help="synthetic corpus speakers")
    parser.add_argument("--per-speaker", type=int, default=10, help="synthetic utterances each")
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/mia-asr"))
    parser.add_argument("--draws", type=int, default=8)
    parser.add_argument("--max-per-side", type=int, default=500)
    parser.add_argument("--evidence", choices=["unseen", "trained"], default="unseen")
    parser.add_argument(
        "--online", action="store_true",
        help="online LiRA: references on random halves of the target's pools",
    )  # fmt: skip
    parser.add_argument("--train-only", action="store_true", help="train the models, no audit")
    parser.add_argument(
        "--roles", nargs="+", default=[],
        help="with --train-only: train only these models (target, shadow-K; with --online also "
        "null), to train them in parallel processes",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--markdown", action="store_true", help="only print the report already written, as a table"
    )
    args = parser.parse_args()
    if args.online and args.level != "sample":
        parser.error("--online applies to --level sample")
    if args.roles and not args.train_only:
        parser.error("--roles needs --train-only: the audit needs every model")
    evidence = "" if args.evidence == "unseen" else f"-{args.evidence}"
    online = "-online" if args.online else ""
    report_dir = args.work / f"report-{args.level}-{args.threat}{evidence}{online}"
    if args.markdown:
        print(markdown_table(read_report(report_dir)))
        return
    torch.set_num_threads(args.threads)

    corpus_dir = args.corpus or _synthetic_dir(args.speakers, args.per_speaker)
    if args.corpus is None:
        synthesize_corpus(
            corpus_dir, n_speakers=args.speakers, per_speaker=args.per_speaker, seed=args.seed
        )
    corpus = load_corpus(corpus_dir)
    work = args.work / args.level
    work.mkdir(parents=True, exist_ok=True)
    split_path = work / "split.json"
    if not split_path.exists():
        make_split(
            corpus, args.level, seed=args.seed, n_shadow=args.shadows, shadow_mode="halves"
        ).save(split_path)
    split = AuditSplit.load(split_path)
    config = {
        "model": {"family": args.family, "preset": args.preset},
        "train": {
            "epochs": args.epochs,
            "lr": args.lr,
            "warmup_steps": 100,
            "grad_clip": 5.0,
            "device": args.device,
            "seed": args.seed,
        },
    }
    # name -> (split file, role in it, run folder); "null" only with --online
    runs = {
        role: (split_path, role, work / "models" / role)
        for role in split.roles[: 1 + (args.use_shadows or split.n_shadow)]
    }
    if args.online:
        runs = {
            "target": runs["target"],
            "null": (split_path, "shadow-0", work / "models" / "shadow-0"),
        }
        split_path, split = _online_split(
            corpus, split, args, work.with_name(f"{args.level}-online")
        )
        for role in split.roles[1 : 1 + (args.use_shadows or split.n_shadow)]:
            runs[role] = (split_path, role, split_path.parent / "models" / role)
    if unknown := set(args.roles) - set(runs):
        parser.error(f"--roles {sorted(unknown)}: the models here are {', '.join(runs)}")
    for name, (path, role, run_dir) in runs.items():
        if not args.roles or name in args.roles:
            train_model("asr", corpus_dir, path, role, config, run_dir)
    if args.train_only:
        return
    family = AsrFamily()
    null = family.load(runs.pop("null")[2], "null", args.device) if args.online else None
    report = run_audit(
        family,
        corpus,
        split,
        family.load(runs.pop("target")[2], "target", args.device),
        [family.load(run_dir, role, args.device) for _, role, run_dir in runs.values()],
        report_dir,
        null=null,
        config=AsrAuditConfig(
            threat=args.threat,
            draws=args.draws,
            max_per_side=args.max_per_side,
            evidence=args.evidence,
            seed=args.seed,
        ),
    )
    write_html(report_dir, report)
    from rich.console import Console

    Console().print(mia_table(report))
    print(json.dumps(report["setup"]["machine"]))


def _online_split(
    corpus: Corpus, split: AuditSplit, args: argparse.Namespace, folder: Path
) -> tuple[Path, AuditSplit]:
    """The online references' split: the same pools as ``split``, other halves."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "split.json"
    if not path.exists():
        make_split(
            corpus, args.level, seed=args.seed, n_shadow=args.shadows, shadow_mode="halves",
            halves_population="target",
        ).save(path)  # fmt: skip
    online = AuditSplit.load(path)
    if online.pools != split.pools:
        raise SystemExit(f"{path}: its pools differ from the offline split's; delete it")
    return path, online


def _synthetic_dir(speakers: int, per_speaker: int) -> Path:
    """The default corpus keeps its historical folder; other sizes get their own."""
    if (speakers, per_speaker) == (200, 10):
        return Path("voxaudit-out/synthetic")
    return Path(f"voxaudit-out/synthetic-{speakers}x{per_speaker}")


if __name__ == "__main__":
    main()
