"""What Ray buys: the same audit on each engine, and attack power against the number of shadows.

Usage:
    python bench/scale.py engines [--shadows 8] [--work voxaudit-out/scale]
    python bench/scale.py shadows [--counts 2 4 8 16 32] [--work voxaudit-out/scale]

``engines`` runs one sample-level audit of a speaker classifier on a synthetic corpus (target
and --shadows shadow models, the demo's recipe) three times, each into a fresh folder: on the
local engine with torch on one thread, on the local engine with torch's default threads, and
as Ray tasks on a Ray started here (one CPU and one thread a task). It prints the wall times
and their ratios (measured in one run), whether the per-example scores of the one-thread and
the Ray run are identical, Ray's start-up time, and the time Ray adds per task (empty tasks,
after a warm-up). Results: WORK/engines.json.

``shadows`` trains a target and max(--counts) shadow models on random halves of the target's
pools (LiRA's setup: each utterance is in half of the reference models, so online LiRA has IN
references; dealt in complementary pairs, so the first K models are balanced too), as Ray
tasks, then audits the target with the first K shadows for each K of --counts, and
tabulates LiRA (online, offline) and RMIA: AUROC and TPR at 0.1% and 1% FPR,
with bootstrap 95% intervals, on the target and its null control. Results: WORK/shadows.json
and WORK/shadows.md (the table for docs/results-scale.md).

Both resume: the corpus, the split, the models and the feature caches are reused on a rerun
(``engines`` times fresh folders each run, and says so).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from voxaudit.compute import ComputeConfig, map_tasks
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.files import write_atomically, write_json
from voxaudit.mia import core, families
from voxaudit.pipeline import PipelineConfig, run_audit
from voxaudit.pipeline.run import cpu_name
from voxaudit.train.run import train_model

RAY = ComputeConfig(engine="ray", cpus=os.cpu_count())
ROWS = ("LiRA online", "LiRA online, fixed variance", "LiRA offline, fixed variance", "RMIA")
METRICS = ("auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")


def _recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The target's (and shadows') run config: the demo's over-fitted speaker classifier."""
    return {
        "model": {"label": "speaker", "hidden": args.hidden, "n_mels": args.n_mels,
                  "dropout": 0.0},
        "train": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                  "warmup_steps": 50, "grad_clip": 5.0, "device": "cpu", "seed": 0},
    }  # fmt: skip


def _corpus(args: argparse.Namespace) -> Path:
    path = args.work / f"synthetic-{args.speakers}x{args.per_speaker}"
    if not (path / "manifest.csv").exists():
        synthesize_corpus(path, n_speakers=args.speakers, per_speaker=args.per_speaker, seed=0)
    return path


def _machine() -> dict[str, Any]:
    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__}


# --- engines ----------------------------------------------------------------------------------


def engines(args: argparse.Namespace) -> dict[str, Any]:
    corpus = _corpus(args)
    recipe = _recipe(args)
    config = PipelineConfig.from_dict(
        {
            "seed": 0, "device": "cpu", "threat": "grey", "levels": ["sample"],
            "corpus": {"path": str(corpus)},
            "target": {"family": "classifier", **recipe},
            "shadows": {"count": args.shadows, "mode": "halves"},
            "audit": {"max_per_side": args.max_per_side, "draws": 4},
        },
        root=Path("."), where="bench/scale.py",
    )  # fmt: skip
    began = time.perf_counter()
    map_tasks(_nothing, {"start": ()}, RAY, progress=False)  # starts Ray and one worker
    startup = time.perf_counter() - began
    runs: dict[str, Any] = {}
    threads_before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    for folder, name, threads, compute in (
        ("local-1", "local, torch on 1 thread", 1, ComputeConfig()),
        ("local-all", f"local, torch on {cores} threads", cores, ComputeConfig()),
        ("ray", f"Ray, {cores} tasks at once, 1 thread each", 1, RAY),
    ):
        out = args.work / "engines" / folder
        shutil.rmtree(out, ignore_errors=True)  # timed from scratch, every run
        torch.set_num_threads(threads)
        began = time.perf_counter()
        run_audit(replace(config, compute=compute), out)
        seconds = time.perf_counter() - began
        runs[name] = {"seconds": round(seconds, 1), "out": str(out)}
        print(f"{name}: {seconds:.1f} s")
    torch.set_num_threads(threads_before)
    names = list(runs)
    scores = [Path(runs[n]["out"], "sample", "report", "examples.csv").read_bytes() for n in names]
    overhead = _task_overhead(200)
    seconds = [runs[n]["seconds"] for n in names]
    result = {
        "shadows": args.shadows,
        "corpus": corpus.name,
        "epochs": args.epochs,
        "runs": runs,
        "ratio_local_1_thread_over_ray": round(seconds[0] / seconds[2], 2),
        "ratio_local_default_over_ray": round(seconds[1] / seconds[2], 2),
        "ray_scores_identical_to_local_1_thread": scores[0] == scores[2],
        "ray_startup_seconds": round(startup, 2),
        "ray_seconds_per_empty_task": round(overhead, 5),
        "machine": _machine(),
    }  # fmt: skip
    write_json(args.work / "engines.json", result)
    print(json.dumps(result, indent=2))
    return result


def _nothing(progress: bool = False) -> None:
    return None


def _task_overhead(tasks: int) -> float:
    """Seconds per empty Ray task (submit, schedule, run, return), workers already up."""
    map_tasks(_nothing, {str(k): () for k in range(8)}, RAY, progress=False)
    began = time.perf_counter()
    map_tasks(_nothing, {str(k): () for k in range(tasks)}, RAY, progress=False)
    return (time.perf_counter() - began) / tasks


# --- shadows ----------------------------------------------------------------------------------


def _train(role: str, *, corpus: Any, split_path: Path, run_config: dict, models: Path,
           progress: bool) -> Path:  # fmt: skip
    train_model("classifier", corpus, split_path, role, run_config, models / role, progress=False)
    return models / role


def shadows(args: argparse.Namespace) -> dict[str, Any]:
    corpus_dir = _corpus(args)
    corpus = load_corpus(corpus_dir)
    most = max(args.counts)
    split_path = args.work / "shadows" / f"split-{most}.json"
    if not split_path.exists():
        # Paired halves: the first K shadows, for every even K, keep each utterance IN for
        # half of them, so every K of --counts has IN and OUT references for every utterance.
        split = make_split(corpus, "sample", seed=0, n_shadow=most, shadow_mode="halves",
                           halves_population="target", paired_halves=True,
                           target_fraction=args.target_fraction)  # fmt: skip
        split.save(split_path)
    split = AuditSplit.load(split_path)
    roles = split.roles[: 1 + most]
    began = time.perf_counter()
    run_dirs = map_tasks(
        _train, {role: (role,) for role in roles}, RAY,
        shared={"corpus": corpus, "split_path": split_path, "run_config": _recipe(args),
                "models": args.work / "shadows" / "models"},
        description="models trained",
    )  # fmt: skip
    train_seconds = time.perf_counter() - began
    # Every shadow trained on halves of the target's pools, so none can be the null control:
    # one more model, trained on the recordings outside them, never saw an evaluated row.
    candidates = {*split.train_ids("target"), *split.holdout_ids("target")}
    outside = [u.id for u in corpus if u.id not in candidates]
    null_dir = args.work / "shadows" / "models" / "null"
    train_model("classifier", corpus, None, "null", _recipe(args), null_dir, progress=False,
                train_ids=outside)  # fmt: skip
    family = families.get("classifier")
    null = family.load(null_dir, "null", "cpu")
    target = family.load(run_dirs["target"], "target", "cpu")
    models = [family.load(run_dirs[r], r, "cpu") for r in roles[1:]]
    config = family.config(threat="grey", max_per_side=args.max_per_side, draws=2,
                           snrs_db=(20.0,), classifiers=("logistic",),
                           n_bootstrap=args.bootstrap)  # fmt: skip
    table: dict[str, Any] = {}
    shared_features = args.work / "shadows" / "features"
    shared_features.mkdir(parents=True, exist_ok=True)
    for count in sorted(args.counts):
        # Every K queries the same models on the same rows: one feature cache for all.
        folder = args.work / "shadows" / f"audit-{count}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "features").exists():
            (folder / "features").symlink_to(shared_features.resolve(), target_is_directory=True)
        report = core.run_audit(family, corpus, split, target, models[:count],
                                folder, null=null, config=config,
                                compute=RAY)  # fmt: skip
        table[str(count)] = {
            f"{r['name']} | {r['model']}": {m: r["metrics"].get(m) for m in METRICS}
            for r in report["results"] if r["name"] in ROWS
        }  # fmt: skip
        table[str(count)]["evaluated"] = report["setup"]["evaluated"]["target"]
        # An attack some evaluated utterance has no reference for is left out, with why.
        table[str(count)]["left out"] = report["selection"].get("calibrated attacks left out", [])
        print(f"{count} shadows: done")
    result = {"counts": sorted(args.counts), "corpus": corpus_dir.name, "epochs": args.epochs,
              "train_seconds_all_models": round(train_seconds, 1), "results": table,
              "machine": _machine()}  # fmt: skip
    write_json(args.work / "shadows.json", result)
    write_atomically(args.work / "shadows.md", _markdown(result))
    print(_markdown(result))
    return result


def _cell(metric: dict[str, Any] | None) -> str:
    """A metric and its bootstrap interval; n/a where the rows cannot resolve it (TPR at
    0.1% FPR needs 1,000 non-members)."""
    if not metric or metric.get("value") is None:
        return "n/a"
    if metric.get("low") is None:
        return f"{metric['value']:.3f}"
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _markdown(result: dict[str, Any]) -> str:
    lines = ["| shadows | attack | model | AUROC | TPR at 0.1% FPR | TPR at 1% FPR |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for count in result["counts"]:
        rows = result["results"][str(count)]
        for reason in rows.get("left out", []):
            lines.append(f"| {count} | {reason.split(':')[0]} | left out | {reason} | | |")
        for key in sorted(k for k in rows if k not in ("evaluated", "left out")):
            attack, model = key.split(" | ")
            cells = [_cell(rows[key][m]) for m in METRICS]
            lines.append(f"| {count} | {attack} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=["engines", "shadows"])
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/scale"))
    parser.add_argument("--shadows", type=int, default=8)
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--speakers", type=int, default=32)
    parser.add_argument("--per-speaker", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--n-mels", type=int, default=40)
    parser.add_argument("--target-fraction", type=float, default=0.5)
    parser.add_argument("--max-per-side", type=int, default=128)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    engines(args) if args.job == "engines" else shadows(args)


if __name__ == "__main__":
    main()
