"""Detection of query-based attacks by the guard's detectors, with paper 003's metrics.

Usage: python bench/guard_eval.py [--model RUN_DIR] [--carriers 2] [--benign 600]
           [--fpr 0.001] [--out voxaudit-out/bench/guard_eval.json] [--no-gateway]
       python bench/guard_eval.py --summarize voxaudit-out/bench/guard_eval.json

A command line over ``voxaudit.guard.evaluation.evaluate_guard`` (whose docstring says what is
measured and how), with the false-positive rate also measured on FSDD when
../shared/data/fsdd is there. Writes the results as JSON and prints them as Markdown tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.guard.evaluation import ATTACKS, evaluate_guard
from voxaudit.mia.metrics import Estimate

DEFAULT_MODEL = "voxaudit-out/mia-asr/sample/models/target"
FSDD = Path(__file__).resolve().parents[2] / "shared/data/fsdd"


def load_recognizer(model: str | None) -> tuple[object, str]:
    """The recognizer of a ``voxaudit train`` run folder (else an untrained tiny CTC), and
    where it came from."""
    if model and Path(model).exists():
        from voxaudit.mia.families.asr import AsrFamily

        return AsrFamily().load(model, "null", "cpu").model, model
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    return Recognizer(CTCModel.from_preset("tiny")), "untrained tiny CTC (no run folder found)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--target", default="open the door")
    parser.add_argument("--carriers", type=int, default=2, help="per carrier kind")
    parser.add_argument("--benign", type=int, default=600, help="utterances per benign stream")
    parser.add_argument("--fpr", type=float, default=0.001)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-gateway", action="store_true", help="skip the attacks over HTTP")
    parser.add_argument("--out", default="voxaudit-out/bench/guard_eval.json")
    parser.add_argument("--summarize", help="only print the tables of an earlier results JSON")
    args = parser.parse_args()
    if args.summarize:
        print(summary(json.loads(Path(args.summarize).read_text())))
        return
    torch.set_num_threads(1)
    recognizer, model_source = load_recognizer(args.model)
    results = {"model": model_source} | evaluate_guard(
        recognizer,
        benign=args.benign,
        carriers=args.carriers,
        attacks=args.attacks,
        target=args.target,
        fpr=args.fpr,
        seed=args.seed,
        gateway=not args.no_gateway,
        fsdd=FSDD if (FSDD / "recordings").is_dir() else None,
    )
    write_atomically(args.out, json.dumps(results, indent=1, default=float))
    print(summary(results))


def per_attack(rows: list[dict]) -> list[str]:
    """As is, per attack and detector: mean DSR, queries to detection and FSNR over carriers."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if row["setting"] == "as is":
            for name, r in row["detectors"].items():
                groups.setdefault((row["attack"], name), []).append(r)
    lines = [
        "| attack (as is) | detector | mean DSR | queries to detection | FSNR dB |",
        "|---|---|---|---|---|",
    ]
    for (attack, name), runs in groups.items():
        firsts = [r["queries_to_detection"] for r in runs if r["queries_to_detection"]]
        fsnr = [r["fsnr_db"] for r in runs if r["fsnr_db"] is not None]
        span = f"{min(fsnr):.1f}-{max(fsnr):.1f}" if fsnr else "-"
        mean_dsr = np.mean([r["dsr"] for r in runs])
        lines.append(
            f"| {attack} | {name} | {mean_dsr:.1%} | {' / '.join(map(str, firsts)) or '-'} | "
            f"{span} |"
        )
    return lines


def _interval(values: dict, spec: str = ".1%") -> str:
    return Estimate(**values).format(spec)


def benign_cells(r: dict) -> str:
    """Flagged queries, FPR per query, accounts flagged, FPR per account: table cells."""
    return (
        f"{r['flagged_queries']}/{r['queries']} | {_interval(r['fpr_per_query'], '.2%')} | "
        f"{r['accounts_flagged']}/{r['accounts']} | {_interval(r['fpr_per_account'], '.1%')}"
    )


def aggregate_cells(g: dict) -> str:
    """Setting, detector, mean DSR, runs detected, median queries to detection: table cells."""
    detected = round(g["detected"]["value"] * g["runs"])
    return (
        f"{g['setting']} | {g['detector']} | {_interval(g['mean_dsr'])} | "
        f"{detected}/{g['runs']} {_interval(g['detected'], '.0%')} | "
        f"{_interval(g['median_queries_to_detection'], 'g')}"
    )


def summary(results: dict) -> str:
    """Markdown tables: false positives, attacks, each setting's aggregate, each run."""
    lines = [f"thresholds: {results['thresholds']}", "", "benign false positives (95% CI):", ""]
    lines += [
        "| stream | detector | flagged queries | FPR per query | accounts flagged | "
        "FPR per account |",
        "|---|---|---|---|---|---|",
    ]
    for stream, by_detector in results["benign"].items():
        for name, r in by_detector.items():
            lines.append(f"| {stream} | {name} | {benign_cells(r)} |")
    lines += ["", "| attack | queries | success (95% CI) | SNR dB | cells above the mask |"]
    lines += ["|---|---|---|---|---|"]
    for a in results["attacks"]:
        low, high = min(a["snr_db"]), max(a["snr_db"])
        mask_low, mask_high = min(a["above_mask"]), max(a["above_mask"])
        lines.append(
            f"| {a['attack']} | {min(a['queries'])}-{max(a['queries'])} | "
            f"{round(a['success']['value'] * a['runs'])}/{a['runs']} "
            f"{_interval(a['success'], '.0%')} | {low:.1f}-{high:.1f} | "
            f"{mask_low:.1%}-{mask_high:.1%} |"
        )
    lines += [
        "",
        "| setting | detector | mean DSR | attacks detected | median queries to detection |",
    ]
    lines += ["|---|---|---|---|---|"]
    lines += [f"| {aggregate_cells(g)} |" for g in results["aggregate"]]
    if results["gateway"]:
        lines += [
            "",
            "through the HTTP gateway (first speech carrier; stops at the first 403; ms per "
            "query: the attack's step, HTTP, the guard's check and the backend's transcript):",
            "",
            "| attack | detector | queries to the first 403 | refusal | ms per query |",
            "|---|---|---|---|---|",
        ]
        for g in results["gateway"]:
            first = g["queries_to_detection"] or f"- (of {g['queries_sent']})"
            lines.append(
                f"| {g['attack']} | {g['detector']} | {first} | {g['refusal'] or '-'} | "
                f"{1000 * g['seconds_per_query']:.0f} |"
            )
    lines += ["", *per_attack(results["rows"]), "", "per attack and carrier:", ""]
    lines += [
        "| attack | carrier | setting | detector | DSR | queries to detection | FSNR dB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        for name, r in row["detectors"].items():
            fsnr = "-" if r["fsnr_db"] is None else f"{r['fsnr_db']:.1f}"
            first = "-" if r["queries_to_detection"] is None else str(r["queries_to_detection"])
            lines.append(
                f"| {row['attack']} | {row['carrier']} | {row['setting']} | {name} | "
                f"{r['dsr']:.0%} | {first} / {r['queries_sent']} | {fsnr} |"
            )
    lines.append(f"\n{results['seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except VoxauditError as exc:  # bad input: one clear line, not a traceback
        sys.exit(f"error: {exc}")
