"""End-to-end speaker-level membership audit (SLMIA-SR and its baselines) of speaker encoders.

Usage: python bench/mia_speaker.py [--family ge2e xvector] [--speakers 460 --per-speaker 14]
       [--epochs N [--cosine]] [--seeds 10] [--always-chunk] [--select-features]
       [--train-only [--roles target|shadow-0]] [--work voxaudit-out/mia-speaker]

Every step resumes: the corpus and split are reused, training continues from checkpoints and the
embeddings from their cache, so an interrupted run is rerun with the same command. The default
corpus is big enough for the intervals to mean something at speaker level: 60 imposters and
100 member + 100 non-member speakers on each of the target and shadow sides (so TPR at 1% FPR is
defined on the target), 14 voices each, of which a member speaker trains on 10 and keeps 4 out.
Target and shadow are trained alike, deliberately overfit (the auditor knows the recipe). The
shadow never saw the target's speakers, so it is also the null control. Each target's EER on
its non-member speakers is written beside the report (``WORK/FAMILY/eer.json``). On two
machines or cores, ``--train-only --roles target`` and ``--train-only --roles shadow-0`` train
the two models side by side; the audit run then finds them trained.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.mia.configs import SpeakerAuditConfig
from voxaudit.mia.core import run_audit
from voxaudit.mia.families.speaker import SpeakerFamily
from voxaudit.mia.results import read_report
from voxaudit.models.speaker import Encoder, equal_error_rate, verification_trials
from voxaudit.report.console import mia_table
from voxaudit.report.mia import markdown_table, write_html
from voxaudit.train.data import SpeakerBatchSampler
from voxaudit.train.run import train_model

ROLES = ("target", "shadow-0")
SAMPLER = {"speakers_per_batch": 10, "utterances_per_speaker": 4}
COLUMNS = ("accuracy", "precision", "recall", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")

#: Small models, so that a CPU trains target and shadow in minutes; both overfit 100 speakers.
#: GE2E's loss keeps falling for hundreds of epochs (0.1 at 64, 0.002 at 300), and its leak grows.
MODELS = {
    "ge2e": {"family": "ge2e", "hidden": 96, "layers": 1, "embedding_dim": 64},
    "xvector": {"family": "xvector", "channels": 64, "embedding_dim": 64},
}
EPOCHS = {"ge2e": 300, "xvector": 80}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--speakers", type=int, default=460)
    parser.add_argument("--per-speaker", type=int, default=14)
    parser.add_argument("--imposters", type=int, default=60)
    parser.add_argument("--unseen-fraction", type=float, default=0.3)
    parser.add_argument(
        "--epochs", type=int, help="training epochs (default: 300 for GE2E, 80 for x-vector)"
    )
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--cosine", action="store_true", help="cosine learning-rate decay to 0 by --epochs"
    )
    parser.add_argument("--seeds", type=int, default=10, help="attack classifier seeds")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--always-chunk",
        action="store_true",
        help="paper 001's setting: chunk splitting even where it loses on shadow CV "
        "(report folder WORK/FAMILY/report-always-chunk)",
    )
    parser.add_argument(
        "--select-features",
        action="store_true",
        help="choose SLMIA-SR's feature set (intra + inter, intra, inter) on shadow CV "
        "(report folder WORK/FAMILY/report-select-features)",
    )
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument(
        "--roles",
        nargs="+",
        choices=ROLES,
        default=list(ROLES),
        help="with --train-only: train only these models (to train them in parallel)",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="only print the reports already written, as tables"
    )
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/mia-speaker"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if set(args.roles) != set(ROLES) and not args.train_only:
        parser.error("--roles needs --train-only: the audit needs both models")
    report_name = "-".join(
        ["report"]
        + ["always-chunk"] * args.always_chunk
        + ["select-features"] * args.select_features
    )
    if args.markdown:
        for family in args.family:
            print(
                f"\n### {family}\n\n"
                + markdown_table(read_report(args.work / family / report_name), COLUMNS)
            )
        return
    torch.set_num_threads(args.threads)

    corpus_dir = args.work / "corpus"
    synthesize_corpus(corpus_dir, args.speakers, args.per_speaker, seed=args.seed, workers=2)
    corpus = load_corpus(corpus_dir)
    split_path = args.work / "split.json"
    if not split_path.exists():
        make_split(
            corpus,
            "speaker",
            seed=args.seed,
            n_shadow=1,
            reference_speakers=args.imposters,
            unseen_fraction=args.unseen_fraction,
        ).save(split_path)
    split = AuditSplit.load(split_path)
    for family in args.family:
        runs = {role: args.work / family / role for role in ROLES}
        epochs = EPOCHS[family] if args.epochs is None else args.epochs
        for role in args.roles:
            config = {
                "model": MODELS[family],
                "train": {
                    "epochs": epochs,
                    "lr": args.lr,
                    "grad_clip": 3.0,
                    "device": args.device,
                    "seed": args.seed,
                },
                "sampler": SAMPLER,
            }
            if args.cosine:
                speakers = [corpus[i].speaker for i in split.train_ids(role)]
                batches = len(SpeakerBatchSampler(speakers, **SAMPLER, seed=args.seed))
                config["train"]["decay_steps"] = epochs * batches
            train_model(
                "speaker",
                corpus_dir,
                split_path,
                role,
                config,
                runs[role],
                cache_dir=args.work / "features",
            )
        if args.train_only:
            continue
        eer = _held_out_eer(corpus, split, runs["target"], args.seed)
        (args.work / family / "eer.json").write_text(json.dumps(eer, indent=1) + "\n")
        print(json.dumps({"family": family, **eer}))
        speaker_family = SpeakerFamily()
        report = run_audit(
            speaker_family,
            corpus,
            split,
            speaker_family.load(runs["target"], "target", args.device),
            [speaker_family.load(runs["shadow-0"], "shadow-0", args.device)],
            args.work / family / report_name,
            config=SpeakerAuditConfig(
                select_chunking=not args.always_chunk,
                select_features=args.select_features,
                attack_seeds=args.seeds,
                n_bootstrap=args.bootstrap,
                seed=args.seed,
            ),
        )
        write_html(args.work / family / report_name, report)
        from rich.console import Console

        Console(width=200).print(mia_table(report))
    print(json.dumps({"platform": platform.platform(), "cpu_count": os.cpu_count()}))


def _held_out_eer(corpus, split: AuditSplit, run: Path, seed: int) -> dict[str, float]:
    """EER of the target on its non-member speakers, and on its members' unseen voices."""
    encoder = Encoder.load(run)
    result = {}
    for name, ids in (
        ("nonmember_speakers", split.holdout_ids("target")),
        ("member_unseen_voices", split.unseen_ids("target")),
    ):
        utterances = [corpus[i] for i in ids]
        embeddings = encoder.embed([u.load(encoder.sample_rate) for u in utterances])
        scores, labels = verification_trials(
            embeddings, [u.speaker for u in utterances], 20000, seed
        )
        result[f"eer_{name}"] = round(equal_error_rate(scores, labels)[0], 4)
    result["trials"] = 20000
    return result


if __name__ == "__main__":
    main()
