"""One-run DP audits: epsilon lower bounds for speech recipes, beside DP-SGD's accountant.

Usage: python bench/dp_audit.py SETUP [--work voxaudit-out/dp-audit] [--fsdd PATH]
       [--canaries M] [--epochs E] [--noise SIGMA] [--kind KIND]
       python bench/dp_audit.py table [--work voxaudit-out/dp-audit]
       SETUP: fsdd-classifier (the digit classifier of configs/sweep-classifier.toml, on the
       real FSDD recordings), fsdd-ctc (a tiny CTC recognizer on FSDD), synth-classifier (a
       speaker classifier on the synthetic corpus), synth-ctc (a tiny CTC recognizer on it)

Each run is ``voxaudit.pipeline.dp_audit.dp_audit``: the recipe trained once with M canaries
(classifiers: wrong labels; recognizers: random transcripts), each in with probability 1/2,
then the epsilon lower bound at delta 1e-5 and 95% confidence from the canaries' losses.
``--noise`` trains under DP-SGD (Opacus; the recurrent layer swapped for Opacus' DPGRU, clip
1.0) and records the accountant's epsilon at the same delta. A run goes to
``WORK/SETUP[-mM][-eE][-sSIGMA][-KIND]/result.json`` (every canary's score and inclusion)
and resumes; ``table`` gathers every finished run into ``WORK/table.md`` and ``table.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from voxaudit.data.loaders import load_corpus
from voxaudit.mia.configs import DPAuditConfig
from voxaudit.mia.one_run import epsilon_ceiling
from voxaudit.pipeline.dp_audit import dp_audit

FSDD = Path(__file__).resolve().parents[2] / "shared/data/fsdd"
TRAIN = {"lr": 2e-3, "batch_size": 16, "warmup_steps": 50, "grad_clip": 5.0}
#: Per family: the recipe's [model], and what DP-SGD swaps in (Opacus' recurrent layer).
MODELS = {
    "classifier": ({"hidden": 64, "n_mels": 40, "dropout": 0.0}, {"cell": "dpgru"}),
    "asr": ({"family": "ctc", "preset": "tiny"}, {"rnn": "dpgru"}),
}
SYNTHETIC = {"speakers": 40, "per_speaker": 20}


def _setup(family: str, corpus: Any, canaries: int, epochs: int, **model: Any) -> dict:
    base, dp_model = MODELS[family]
    return {"family": family, "corpus": corpus, "canaries": canaries, "epochs": epochs,
            "model": base | model, "dp_model": dp_model}  # fmt: skip


SETUPS: dict[str, dict[str, Any]] = {
    "fsdd-classifier": _setup("classifier", "fsdd", 1000, 30, label="transcript"),
    "fsdd-ctc": _setup("asr", "fsdd", 1000, 30),
    "synth-classifier": _setup("classifier", SYNTHETIC, 400, 30, label="speaker"),
    "synth-ctc": _setup("asr", SYNTHETIC, 400, 20),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("setup", choices=[*SETUPS, "table"])
    parser.add_argument("--work", type=Path, default=Path("voxaudit-out/dp-audit"))
    parser.add_argument("--fsdd", type=Path, default=FSDD)
    parser.add_argument("--canaries", type=int, help="canaries M (default: the setup's)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: the setup's)")
    parser.add_argument("--noise", type=float, help="DP-SGD noise multiplier (default: no DP)")
    parser.add_argument("--kind", help="canary kind (default: the family's first)")
    args = parser.parse_args()
    if args.setup == "table":
        write_table(args.work)
        return
    setup = SETUPS[args.setup]
    canaries = args.canaries or setup["canaries"]
    epochs = args.epochs or setup["epochs"]
    name = args.setup + (f"-m{canaries}" if args.canaries else "")
    name += (f"-e{epochs}" if args.epochs else "") + (f"-s{args.noise:g}" if args.noise else "")
    name += f"-{args.kind}" if args.kind else ""
    if setup["corpus"] == "fsdd":
        if not (args.fsdd / "recordings").is_dir():
            sys.exit(f"{args.fsdd}: no FSDD recordings there (give --fsdd)")
        corpus = load_corpus(args.fsdd)
    else:
        from voxaudit.data.synth import synthesize_corpus

        sizes = setup["corpus"]
        corpus = synthesize_corpus(
            args.work / f"corpus-{sizes['speakers']}x{sizes['per_speaker']}",
            n_speakers=sizes["speakers"], per_speaker=sizes["per_speaker"], seed=0,
        )  # fmt: skip
    model = setup["model"] | (setup["dp_model"] if args.noise else {})
    recipe = {"model": model, "train": TRAIN | {"epochs": epochs}}
    config = DPAuditConfig(canaries=canaries, noise_multiplier=args.noise,
                           kind=args.kind or DPAuditConfig.kind)  # fmt: skip
    result = dp_audit(setup["family"], corpus, recipe, args.work / name, config, device="cpu")
    machine = {"platform": platform.platform(), "cpu_count": os.cpu_count(),
               "threads": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip
    (args.work / name / "machine.json").write_text(json.dumps(machine) + "\n")
    print(result["statement"])
    print(f"{result['seconds']} s; {json.dumps(machine)}")


def write_table(work: Path) -> None:
    """Every finished run under ``work`` as one markdown table (and JSON beside it)."""
    rows = []
    for path in sorted(work.glob("*/result.json")):
        result = json.loads(path.read_text("utf-8"))
        best = next(r for r in result["sweep"] if r["guesses"] == result["guesses"])
        rows.append({
            "run": path.parent.name,
            "canaries": result["canaries"],
            "trained_on": result["trained_on"],
            "noise": result["noise_multiplier"],
            "accountant_epsilon": result["accountant_epsilon"],
            "epsilon_hat": round(result["epsilon_hat"], 3),
            "ceiling": round(epsilon_ceiling(result["canaries"], result["delta"],
                                             result["confidence"]), 3),
            "utility": result.get("utility"),
            "correct": f"{best['correct']}/{best['guesses']}",
            "train_seconds": result.get("train_seconds"),
        })  # fmt: skip
    lines = [
        "| run | canaries | trained on | DP-SGD noise | accountant epsilon | epsilon lower bound "
        "(95%) | ceiling | correct guesses | utility (unseen) | training seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        noise = "none" if row["noise"] is None else f"{row['noise']:g}"
        claimed = "-" if row["accountant_epsilon"] is None else f"{row['accountant_epsilon']:.2f}"
        utility = row["utility"]
        used = "-" if utility is None else f"{utility['metric']} {utility['value']:.3f}"
        lines.append(
            f"| {row['run']} | {row['canaries']} | {row['trained_on']} | {noise} | {claimed} | "
            f"{row['epsilon_hat']:.2f} | {row['ceiling']:.2f} | {row['correct']} | {used} | "
            f"{row['train_seconds'] or 0:.0f} |"
        )
    text = "\n".join(lines)
    (work / "table.md").write_text(text + "\n")
    (work / "table.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
