"""The guard's goals on real-like traffic: FSDD users who share recordings, attacks inside it.

Usage: python bench/guard_traffic.py [--model RUN_DIR] [--carriers 2] [--rerecord-rate 0.02]
           [--scale-clips 10000] [--scale-accounts 400]
           [--out voxaudit-out/bench/guard_traffic.json]
       python bench/guard_traffic.py --summarize voxaudit-out/bench/guard_traffic.json

Thresholds are set as a user would set them: ``voxaudit guard calibrate`` on a manifest of
FSDD's even-numbered takes (1,500 recordings), 40 accounts, and its defaults otherwise (0.1%
FPR; 10% exact shares and 2% re-recordings of 10 popular clips; 2% natural repeats). The
odd-numbered takes are the held-out benign traffic, over 40 accounts, with 30% exact shares
and ``--rerecord-rate`` re-recordings. Then ``voxaudit.guard.traffic_evaluation`` (its
docstring says what is measured) runs the attacks inside that traffic. FSDD's held-out half
is too small to resolve a 0.1% per-query or 1% per-account false-positive rate, so the same
thresholds are also tried on ``--scale-clips`` synthetic recordings over ``--scale-accounts``
accounts with the same traffic shape (``benign_at_scale``; 0 skips it). Needs
../shared/data/fsdd; writes JSON and prints Markdown tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guard_eval import (
    DEFAULT_MODEL,
    FSDD,
    _interval,
    aggregate_cells,
    benign_cells,
    load_recognizer,
)

RATE = 16000


def split_fsdd(root: Path, work: Path) -> tuple[Path, list]:
    """A manifest of the even takes (for calibration) and the odd takes' utterances."""
    from voxaudit.data.loaders import load_corpus

    utterances = load_corpus(root).utterances
    take = {u: int(Path(u.path).stem.rsplit("_", 1)[-1]) for u in utterances}
    manifest = work / "calibration.csv"
    work.mkdir(parents=True, exist_ok=True)
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "speaker", "text"])
        for u in utterances:
            if take[u] % 2 == 0:
                writer.writerow([u.path, u.speaker, u.transcript])
    return manifest, [u for u in utterances if take[u] % 2 == 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--target", default="open the door")
    parser.add_argument("--carriers", type=int, default=2, help="per carrier kind")
    parser.add_argument("--accounts", type=int, default=40)
    parser.add_argument("--rerecord-rate", type=float, default=0.02)
    parser.add_argument("--scale-clips", type=int, default=10000)
    parser.add_argument("--scale-accounts", type=int, default=400)
    parser.add_argument(
        "--scale-only", action="store_true",
        help="calibrate and measure the benign traffic at scale only (no victim model)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="voxaudit-out/bench/guard_traffic.json")
    parser.add_argument("--summarize", help="only print the tables of an earlier results JSON")
    args = parser.parse_args()
    if args.summarize:
        print(summary(json.loads(Path(args.summarize).read_text())))
        return
    if not (FSDD / "recordings").is_dir():
        sys.exit(f"skipped: {FSDD} is not there (this benchmark needs real recordings)")
    from voxaudit.guard.config import load_config
    from voxaudit.guard.traffic_evaluation import benign_at_scale, evaluate_on_traffic

    torch.set_num_threads(1)
    work = Path(args.out).with_suffix("")
    manifest, held_out = split_fsdd(FSDD, work)
    config = work / "guard.toml"
    voxaudit = Path(sys.executable).with_name("voxaudit")
    command = [str(voxaudit), "guard", "calibrate", str(manifest), "--accounts",
               str(args.accounts), "--out", str(config)]  # fmt: skip
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    settings = load_config(config)
    thresholds = {"index": settings.index_threshold, "memory": settings.memory_threshold}
    results: dict = {"calibration": " ".join(command), "thresholds": thresholds}
    if not args.scale_only:
        recognizer, results["model"] = load_recognizer(args.model)
        results |= evaluate_on_traffic(
            recognizer,
            [u.load(RATE) for u in held_out],
            thresholds,
            accounts=args.accounts,
            rerecord_rate=args.rerecord_rate,
            carriers=args.carriers,
            target=args.target,
            seed=args.seed,
        )
    if args.scale_clips or args.scale_only:
        started = time.time()
        results["benign_at_scale"] = benign_at_scale(
            thresholds, clips=args.scale_clips, accounts=args.scale_accounts, seed=args.seed
        )
        results["benign_at_scale"]["seconds"] = round(time.time() - started, 1)
    write_atomically(args.out, json.dumps(results, indent=1, default=float))
    print(summary(results))


def summary(results: dict) -> str:
    """Markdown tables: benign alone, attacks inside the traffic, the oracle attacker."""
    head = f"thresholds: {results['thresholds']} (from: {results['calibration']})"
    if "traffic" not in results:  # --scale-only
        return "\n".join([head, *_scale_table(results["benign_at_scale"])])
    t = results["traffic"]
    lines = [
        head,
        f"held-out traffic: {t['queries']} queries over {t['accounts']} accounts, "
        f"{t['share_rate']:.0%} exact shares and {t['rerecord_rate']:.0%} re-recordings of "
        f"{t['popular']} popular clips",
        "",
        "| detector | benign queries flagged | FPR per query | benign accounts flagged | "
        "FPR per account |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["benign"].items():
        lines.append(f"| {name} | {benign_cells(r)} |")
    if "benign_at_scale" in results:
        lines += _scale_table(results["benign_at_scale"])
    lines += ["", "benign traffic alone, by re-recording rate (same accounts and shares):", ""]
    lines += ["| re-recordings | detector | benign queries flagged | FPR per query | "
              "benign accounts flagged |", "|---|---|---|---|---|"]  # fmt: skip
    for rate, by_detector in results["benign_by_rerecord_rate"].items():
        for name, r in by_detector.items():
            lines.append(
                f"| {float(rate):.0%} | {name} | {r['flagged_queries']}/{r['queries']} | "
                f"{_interval(r['fpr_per_query'], '.2%')} | "
                f"{r['accounts_flagged']}/{r['accounts']} |"
            )
    during = {(d["setting"], d["detector"]): d for d in results["benign_during_attacks"]}
    lines += [
        "",
        "| setting | detector | mean DSR | attacks detected | median queries to detection | "
        "benign accounts flagged meanwhile (worst run) |",
        "|---|---|---|---|---|---|",
    ]
    for g in results["aggregate"]:
        d = during[(g["setting"], g["detector"])]
        lines.append(
            f"| {aggregate_cells(g)} | {d['worst_accounts_flagged']}/{d['benign_accounts']} |"
        )
    success: dict[str, list[bool]] = {}
    for row in results["rows"]:
        if row["setting"] in ("as is", "evasion, as is"):
            key = row["attack"] + (" + evasion" if row["setting"].startswith("evasion") else "")
            success.setdefault(key, []).append(row["attack_success"])
    lines += ["", "| attack | success (clean model, final waveform) |", "|---|---|"]
    for name, hits in success.items():
        lines.append(f"| {name} | {sum(hits)}/{len(hits)} |")
    lines += [
        "",
        "oracle attacker (evasion on every query; on a refusal: fresh account, stronger "
        "evasion, re-send), live against both detectors:",
        "",
        "| guard's response | runs detected | median query of first detection | accounts banned "
        "(mean) | refusals the attacker saw (mean) | gave up | attack success |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in results["oracle_summary"]:
        detected = round(o["detected"]["value"] * o["runs"])
        success_n = round(o["attack_success"]["value"] * o["runs"])
        lines.append(
            f"| {o['response']} | {detected}/{o['runs']} | {o['median_first_detection']} | "
            f"{o['mean_accounts_banned']:.1f} | {o['mean_refusals_seen']:.1f} | "
            f"{o['gave_up']}/{o['runs']} | {success_n}/{o['runs']} "
            f"{_interval(o['attack_success'], '.0%')} |"
        )
    lines.append(f"\n{results['seconds']} s on {results['machine']}")
    return "\n".join(lines)


def _scale_table(scale: dict) -> list[str]:
    queries = next(iter(scale["benign"].values()))["queries"]
    return [
        "",
        f"synthetic benign traffic at scale ({scale['clips']} recordings, {queries} queries, "
        f"same traffic shape and thresholds; {scale['seconds']} s):",
        "",
        "| detector | benign queries flagged | FPR per query | benign accounts flagged | "
        "FPR per account |",
        "|---|---|---|---|---|",
        *(f"| {name} | {benign_cells(r)} |" for name, r in scale["benign"].items()),
    ]


if __name__ == "__main__":
    try:
        main()
    except VoxauditError as exc:  # bad input: one clear line, not a traceback
        sys.exit(f"error: {exc}")
