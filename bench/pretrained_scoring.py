"""Scoring mode on real speech: pretrained pocketsphinx (sample level) and resemblyzer (speaker
level) on the Free Spoken Digit Dataset.

Usage: python bench/pretrained_scoring.py [--fsdd ../shared/data/fsdd] [--models asr speaker]
       [--recordings 60] [--voices 10] [--asr-epochs 150] [--speaker-epochs 100]
       [--work voxaudit-out/pretrained-scoring]

Neither model has membership ground truth (whether FSDD's speakers were in pocketsphinx's or
resemblyzer's training data is unknown), so scoring mode gives scores, not verdicts. This
measures what it reports on real speech: each model's utility on the scored recordings, the
ranges of score, log-odds and percentile, the warnings, and the wall time.

pocketsphinx, sample level: two small CTC shadows trained on FSDD (a sample-level split of
--asr-per-speaker takes per speaker, shadows on random halves of the shadow pools); the scored
recordings are --recordings other FSDD takes, as many per speaker, that no shadow trained on,
at one noise draw per SNR. resemblyzer, speaker level: FSDD's 6 speakers, --voices recordings
each, against two GE2E shadows (bench/mia_speaker.py's model and sampler, fewer epochs) trained
on a speaker-level split of a small synthetic corpus, since FSDD has too few speakers for one.

Every step resumes (corpus, split, checkpoints, feature and embedding caches). A missing FSDD,
or a missing pocketsphinx or resemblyzer, is skipped with a message. Results:
WORK/results.json; the reports under WORK/asr/report/ and WORK/speaker/report/.
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
from rich.console import Console

from mia_speaker import MODELS, SAMPLER
from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.errors import VoxauditError
from voxaudit.mia import families
from voxaudit.mia.configs import AsrAuditConfig, SpeakerAuditConfig
from voxaudit.mia.core import AuditedModel, run_scoring
from voxaudit.mia.scoring import OUTSIDE_RANGE_SHARE
from voxaudit.report.console import scores_table
from voxaudit.report.mia import write_html
from voxaudit.train.run import train_model

FSDD = Path(__file__).resolve().parents[2] / "shared/data/fsdd"
SHADOWS = ("shadow-0", "shadow-1")
#: A CTC small enough for two to train on a CPU in minutes.
ASR_MODEL = {"family": "ctc", "preset": "tiny", "d_model": 96, "layers": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=FSDD)
    parser.add_argument(
        "--models", nargs="+", choices=["asr", "speaker"], default=["asr", "speaker"]
    )
    parser.add_argument("--recordings", type=int, default=60, help="asr: FSDD takes scored")
    parser.add_argument("--asr-per-speaker", type=int, default=200, help="FSDD takes in the split")
    parser.add_argument("--asr-epochs", type=int, default=150)
    parser.add_argument("--voices", type=int, default=10, help="speaker: recordings per speaker")
    parser.add_argument("--speakers", type=int, default=60, help="synthetic shadow corpus")
    parser.add_argument("--per-speaker", type=int, default=8)
    parser.add_argument("--speaker-epochs", type=int, default=100)
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/pretrained-scoring"))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.fsdd / "recordings").is_dir():
        print(f"skipped: no FSDD at {args.fsdd} (expected {args.fsdd / 'recordings'})")
        return
    started = time.time()
    torch.set_num_threads(args.threads)
    fsdd = load_corpus(args.fsdd, progress=False)
    results: dict[str, Any] = {}
    for name in args.models:
        run = score_asr if name == "asr" else score_speaker
        try:
            results[name] = run(args, fsdd)
        except VoxauditError as exc:
            if "pip install" not in str(exc):  # only a missing optional package is skipped
                raise
            print(f"skipped {name}: {exc}")
    results["machine"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "device": "cpu",
    }
    results["wall_seconds"] = round(time.time() - started, 1)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


def score_asr(args: argparse.Namespace, fsdd: Corpus) -> dict[str, Any]:
    """pocketsphinx's scores of FSDD takes against two small CTC shadows trained on FSDD."""
    target = families.resolve_model("asr", "pocketsphinx", device="cpu")
    work = args.work / "asr"
    work.mkdir(parents=True, exist_ok=True)
    split_path = work / "split.json"
    if not split_path.exists():
        make_split(
            fsdd, "sample", seed=args.seed, n_shadow=len(SHADOWS), shadow_mode="halves",
            max_per_speaker=args.asr_per_speaker, stratify_labels=True,
        ).save(split_path)  # fmt: skip
    split = AuditSplit.load(split_path)
    config = {
        "model": ASR_MODEL,
        "train": {"epochs": args.asr_epochs, "lr": 2e-3, "batch_size": 16, "warmup_steps": 50,
                  "grad_clip": 5.0, "device": "cpu", "seed": args.seed},
    }  # fmt: skip
    started = time.time()
    shadows = [_trained("asr", args.fsdd, split_path, role, config, work) for role in SHADOWS]
    trained = time.time() - started
    in_split = {i for ids in split.pools.values() for i in ids}
    recordings = _takes(fsdd, in_split, args.recordings // len(fsdd.speakers), args.seed)
    return _score(
        "asr", recordings, target, fsdd, split, shadows, work / "report",
        AsrAuditConfig(threat="black", draws=1, max_per_side=200, seed=args.seed), trained,
    )  # fmt: skip


def score_speaker(args: argparse.Namespace, fsdd: Corpus) -> dict[str, Any]:
    """resemblyzer's scores of FSDD's speakers against two GE2E shadows trained on synthetic
    speech (FSDD's 6 speakers make no speaker-level split)."""
    target = families.resolve_model("speaker", "resemblyzer", device="cpu")
    work = args.work / "speaker"
    corpus_dir = work / "corpus"
    synthesize_corpus(corpus_dir, args.speakers, args.per_speaker, seed=args.seed, workers=2)
    corpus = load_corpus(corpus_dir, progress=False)
    split_path = work / "split.json"
    if not split_path.exists():
        make_split(
            corpus, "speaker", seed=args.seed, n_shadow=len(SHADOWS), shadow_mode="halves",
            reference_speakers=10, unseen_fraction=0.3,
        ).save(split_path)  # fmt: skip
    split = AuditSplit.load(split_path)
    config = {
        "model": MODELS["ge2e"],
        "train": {"epochs": args.speaker_epochs, "lr": 2e-3, "grad_clip": 3.0, "device": "cpu",
                  "seed": args.seed},
        "sampler": SAMPLER,
    }  # fmt: skip
    started = time.time()
    shadows = [_trained("speaker", corpus_dir, split_path, role, config, work) for role in SHADOWS]
    trained = time.time() - started
    recordings = _takes(fsdd, set(), args.voices, args.seed)
    audit = SpeakerAuditConfig(voices=args.voices, chunk_seconds=None, seed=args.seed)
    return _score(
        "speaker", recordings, target, corpus, split, shadows, work / "report", audit, trained
    )


def _trained(
    kind: str, corpus_dir: Path, split_path: Path, role: str, config: dict, work: Path
) -> AuditedModel:
    """The shadow of ``role``, trained here (or resumed) and loaded."""
    run_dir = work / "models" / role
    train_model(kind, corpus_dir, split_path, role, config, run_dir, progress=False)
    return families.get(kind).load(run_dir, role, "cpu")


def _takes(corpus: Corpus, excluded: set[str], per_speaker: int, seed: int) -> Corpus:
    """``per_speaker`` random recordings of each speaker, none of ``excluded``."""
    rng = random.Random(seed)
    chosen = []
    for speaker in corpus.speakers:
        ids = sorted(u.id for u in corpus if u.speaker == speaker and u.id not in excluded)
        chosen += rng.sample(ids, per_speaker)
    return Corpus([corpus[i] for i in sorted(chosen)], name=f"{corpus.name}-scored")


def _score(
    family: str, recordings: Corpus, target: AuditedModel, corpus: Corpus, split: AuditSplit,
    shadows: list[AuditedModel], out: Path, config: Any, trained: float,
) -> dict[str, Any]:  # fmt: skip
    """Score, write the report, print its first screen; the figures for results.json."""
    started = time.time()
    report = run_scoring(
        families.get(family), recordings, target, corpus, split, shadows, out, config=config,
        progress=False,
    )  # fmt: skip
    scoring = time.time() - started
    write_html(out, report)
    Console(width=120).print(scores_table(report))
    scores = report["scores"]
    setup = report["setup"]
    reference = setup["reference_attack"]
    outside = reference["outside_fitted_range"]
    return {
        "target": setup["target"],
        "level": setup["level"],
        "scored_rows": len(scores),
        "recordings": len(recordings),
        "utility": setup["utility"],
        "reference_attack": {
            "classifier": reference["classifier"],
            "columns": len(reference["columns"]),
            "shadow_cv_auroc": reference["shadow_cv_auroc"],
            "shadow_nonmember_rows": reference["shadow_nonmember_rows"],
            "columns_outside_range_for_over_20pct_of_rows": sum(
                share > OUTSIDE_RANGE_SHARE for share in outside.values()
            ),
            "outside_fitted_range_worst": dict(list(outside.items())[:5]),
        },
        **{key: _span([s[key] for s in scores]) for key in ("score", "log_odds", "percentile")},
        "distinct": {key: len({s[key] for s in scores}) for key in ("score", "log_odds")},
        "warnings": report["warnings"],
        "seconds": {"shadow_training": round(trained, 1), "scoring": round(scoring, 1)},
        "report": str(out),
    }


def _span(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "max": max(values)}


if __name__ == "__main__":
    main()
