"""Fine-tuned targets: the public base as reference against shadow models, side by side.

Usage: python bench/finetuned.py SETUP [--work voxaudit-out/finetuned] [--fsdd PATH]
       [--speakers N --per-speaker K] [--fraction F] [--by speakers|recordings] [--imposters F]
       SETUP: ctc (synthetic CTC recognizer), speaker (synthetic GE2E encoder), fsdd (a digit
       classifier on the real FSDD recordings)

Each setup is one ``voxaudit audit`` config with the built-in fine-tuning scenario (``[base]``):
a base model pretrained on a pool P of other speakers, the target fine-tuned from it on members
M and audited against non-members N, and 4 shadows fine-tuned from the same base for LiRA and
RMIA. The CTC target is audited at sample level (N: other recordings of M's speakers) and at
speaker level (N: unseen speakers). The table lists, for the attacks the issue compares, AUROC
and TPR at 1% and 0.1% FPR with their bootstrap 95% intervals, the null control's value, and
the attack's cost: models the auditor trained, forward passes per evaluated unit and CPU
seconds (the audit's own measure for the attacks that train nothing; for shadow attacks, the
shadows' training time, which dominates). Results go to ``WORK/SETUP/table.md`` and
``table.json`` (``WORK/SETUP-NxK`` for another synthetic size, ``-by-recordings`` for a base
that knows the same speakers); the audit folder beside them holds the full report and
per-example scores. A rerun resumes (the audit's own resume).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

from voxaudit.pipeline import PipelineConfig, run_audit

SHADOWS = 4
#: The rows compared (by attack name, and the WER-only rows); the report holds every other row.
COMPARED = re.compile(
    r"^(base loss ratio|base error difference|RMIA, base reference|quantile regression|LiRA|"
    r"RMIA$|SLMIA-SR$|base-calibrated|LRL-MIA|GE2E loss threshold|threshold on (loss|wer|cer))"
)
METRICS = ("auroc", "tpr_at_1%_fpr", "tpr_at_0.1%_fpr")

SETUPS: dict[str, dict[str, Any]] = {
    "ctc": {
        "levels": ["sample", "speaker"],
        "corpus": {"path": "corpus-ctc", "synthesize": {"speakers": 40, "per_speaker": 30}},
        "target": {
            "family": "asr",
            "model": {"family": "ctc", "preset": "tiny"},
            "train": {"epochs": 20, "lr": 2e-3, "warmup_steps": 50, "grad_clip": 5.0},
        },
        "base": {
            "fraction": 0.25,
            "train": {"epochs": 15, "lr": 2e-3, "warmup_steps": 50, "grad_clip": 5.0},
        },
        "split": {"reference_speakers": 2},
        "audit": {"draws": 2, "snrs_db": [20.0], "population": 500},
    },
    "speaker": {
        "levels": ["speaker"],
        "corpus": {"path": "corpus-speaker", "synthesize": {"speakers": 120, "per_speaker": 12}},
        "target": {
            "family": "speaker",
            "model": {"family": "ge2e", "hidden": 96, "layers": 1, "embedding_dim": 64},
            "train": {"epochs": 100, "lr": 1e-3},
            "sampler": {"speakers_per_batch": 8, "utterances_per_speaker": 4},
        },
        "base": {"fraction": 0.3, "train": {"epochs": 60, "lr": 1e-3}},
        "audit": {"voices": 4, "attack_seeds": 3},
    },
    "fsdd": {
        "levels": ["sample"],
        "corpus": {"path": None},  # the FSDD folder (its layout is detected)
        "target": {
            "family": "classifier",
            "model": {"label": "transcript", "hidden": 64, "n_mels": 40, "dropout": 0.0},
            "train": {
                "epochs": 30,
                "lr": 2e-3,
                "batch_size": 16,
                "warmup_steps": 50,
                "grad_clip": 5.0,
            },
        },
        "base": {"fraction": 0.34, "train": {"epochs": 20, "lr": 2e-3, "batch_size": 16}},
        "split": {"stratify_labels": True},
        "audit": {"max_per_side": 500, "draws": 2, "snrs_db": [20.0]},
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setup", choices=sorted(SETUPS))
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/finetuned"))
    parser.add_argument(
        "--fsdd", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/fsdd"
    )
    parser.add_argument("--speakers", type=int, help="synthetic setups: corpus speakers")
    parser.add_argument("--per-speaker", type=int, help="synthetic setups: recordings each")
    parser.add_argument("--fraction", type=float, help="the base pool's share")
    parser.add_argument("--by", choices=("speakers", "recordings"), help="the base pool's unit")
    parser.add_argument("--imposters", type=float, help="speaker level: reference speakers' share")
    args = parser.parse_args()
    data = json.loads(json.dumps(SETUPS[args.setup]))
    name = args.setup
    sizes = data["corpus"].get("synthesize")
    if sizes is not None and (args.speakers or args.per_speaker):
        sizes["speakers"] = args.speakers or sizes["speakers"]
        sizes["per_speaker"] = args.per_speaker or sizes["per_speaker"]
        name = f"{args.setup}-{sizes['speakers']}x{sizes['per_speaker']}"
        data["corpus"]["path"] = f"corpus-{name}"
    if args.fraction is not None:
        data["base"]["fraction"] = args.fraction
    if args.by is not None and args.by != data["base"].get("by", "speakers"):
        data["base"]["by"] = args.by
        name = f"{name}-by-{args.by}"
    if args.imposters is not None:
        data.setdefault("split", {})["reference_speakers"] = args.imposters
    work = args.work / name
    work.mkdir(parents=True, exist_ok=True)
    if args.setup == "fsdd":
        if not (args.fsdd / "recordings").is_dir():
            sys.exit(f"{args.fsdd}: no FSDD recordings there (give --fsdd)")
        data["corpus"]["path"] = str(args.fsdd.resolve())
    data |= {"seed": 0, "device": "cpu", "threat": "grey"}
    data["shadows"] = {"count": SHADOWS, "mode": "halves"}
    config = PipelineConfig.from_dict(data, root=work, where=f"bench setup {args.setup}")
    report = run_audit(config, work / "audit")
    rows = [row for level in report["levels"] for row in table_rows(level)]
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "threads": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip
    (work / "table.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=1))
    text = markdown(rows)
    (work / "table.md").write_text(text + "\n")
    print(text)
    print(json.dumps(machine))


def table_rows(level: dict[str, Any]) -> list[dict[str, Any]]:
    """The compared attack rows of one audited level: metrics with intervals, the null
    control's values, and costs."""
    mia = level["mia"]
    costs = mia["setup"].get("attack_costs", {})
    shadow_seconds = sum(
        _training_seconds(Path(path)) for role, path in level["models"].items()
        if role.startswith("shadow-")
    )  # fmt: skip
    n_shadows = sum(role.startswith("shadow-") for role in level["models"])
    null = {
        (r["name"], r["features"]): r["metrics"] for r in mia["results"] if r["model"] == "null"
    }
    rows = []
    for result in mia["results"]:
        wer_only = result["features"].startswith("WER only")
        if result["model"] != "target" or not (COMPARED.match(result["name"]) or wer_only):
            continue
        label = f"{result['name']} ({result['features']})"
        cost = costs.get(label)
        if cost is None:  # what the audit does not cost itself: shadow attacks and thresholds
            uses_shadows = any(
                word in result["name"] for word in ("LiRA", "RMIA", "SLMIA-SR", "shadow attack")
            )
            cost = {
                "models_trained": n_shadows if uses_shadows else 0,
                "forward_passes": 1 + n_shadows if uses_shadows else 1,
                "cpu_seconds": round(shadow_seconds) if uses_shadows else None,
            }
        else:
            passes = [v for k, v in cost.items() if k.startswith("forward_passes")]
            training = shadow_seconds if cost["models_trained"] else 0.0
            cost = {"models_trained": cost["models_trained"], "forward_passes": passes[0],
                    "cpu_seconds": round(cost["cpu_seconds"] + training, 1)}  # fmt: skip
        rows.append({
            "level": level["level"], "attack": label,
            "evaluated": mia["setup"]["evaluated"]["target"],
            **{m: result["metrics"][m] for m in METRICS if m in result["metrics"]},
            "null": {m: null.get((result["name"], result["features"]), {}).get(m, {}).get("value")
                     for m in METRICS},
            **cost,
        })  # fmt: skip
    return rows


def _training_seconds(run_dir: Path) -> float:
    """Training seconds of a run (one thread: CPU seconds), from its history."""
    history = json.loads((run_dir / "history.json").read_text("utf-8"))
    return sum(epoch["seconds"] for epoch in history["epochs"])


def _interval(metric: dict[str, Any] | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    low, high = metric.get("low"), metric.get("high")
    band = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{metric['value']:.3f}{band}"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| level | attack | AUROC [95%] | TPR@1% [95%] | TPR@0.1% [95%] | null AUROC / "
            "TPR@1% | models trained | passes | CPU s |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for row in rows:
        null = row["null"]
        nulls = " / ".join("n/a" if null[m] is None else f"{null[m]:.3f}" for m in METRICS[:2])
        cpu = "n/a" if row["cpu_seconds"] is None else f"{row['cpu_seconds']:g}"
        lines.append(
            f"| {row['level']} | {row['attack']} | {_interval(row.get('auroc'))} | "
            f"{_interval(row.get('tpr_at_1%_fpr'))} | {_interval(row.get('tpr_at_0.1%_fpr'))} | "
            f"{nulls} | {row['models_trained']} | {row['forward_passes']} | {cpu} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
