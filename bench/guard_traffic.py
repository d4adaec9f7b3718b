"""The guard's goals on real-like traffic: FSDD users who share recordings, attacks inside it.

Usage: python bench/guard_traffic.py [--model RUN_DIR] [--carriers 2] [--rerecord-rate 0.02]
           [--out voxaudit-out/bench/guard_traffic.json]
       python bench/guard_traffic.py --summarize voxaudit-out/bench/guard_traffic.json

Thresholds are set as a user would set them: ``voxaudit guard calibrate`` on a manifest of
FSDD's even-numbered takes (1,500 recordings), 40 accounts, and its defaults otherwise (0.1%
FPR; 10% exact shares and 2% re-recordings of 10 popular clips; 2% natural repeats). The
odd-numbered takes are the held-out benign traffic, over 40 accounts, with 30% exact shares
and ``--rerecord-rate`` re-recordings. Then ``voxaudit.guard.traffic_evaluation`` (its
docstring says what is measured) runs the attacks inside that traffic. Needs
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
from pathlib import Path

import torch

from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guard_eval import DEFAULT_MODEL, FSDD, _interval, load_recognizer

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
    from voxaudit.guard.traffic_evaluation import evaluate_on_traffic

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
    recognizer, model_source = load_recognizer(args.model)
    waves = [u.load(RATE) for u in held_out]
    results = {"model": model_source, "calibration": " ".join(command)} | evaluate_on_traffic(
        recognizer,
        waves,
        thresholds,
        accounts=args.accounts,
        rerecord_rate=args.rerecord_rate,
        carriers=args.carriers,
        target=args.target,
        seed=args.seed,
    )
    write_atomically(args.out, json.dumps(results, indent=1, default=float))
    print(summary(results))


def summary(results: dict) -> str:
    """Markdown tables: benign alone, attacks inside the traffic, the oracle attacker."""
    t = results["traffic"]
    lines = [
        f"thresholds: {results['thresholds']} (from: {results['calibration']})",
        f"held-out traffic: {t['queries']} queries over {t['accounts']} accounts, "
        f"{t['share_rate']:.0%} exact shares and {t['rerecord_rate']:.0%} re-recordings of "
        f"{t['popular']} popular clips",
        "",
        "| detector | benign queries flagged | FPR per query | benign accounts flagged | "
        "FPR per account |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["benign"].items():
        lines.append(
            f"| {name} | {r['flagged_queries']}/{r['queries']} | "
            f"{_interval(r['fpr_per_query'], '.2%')} | {r['accounts_flagged']}/{r['accounts']} | "
            f"{_interval(r['fpr_per_account'], '.1%')} |"
        )
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
        detected = round(g["detected"]["value"] * g["runs"])
        d = during[(g["setting"], g["detector"])]
        lines.append(
            f"| {g['setting']} | {g['detector']} | {_interval(g['mean_dsr'])} | "
            f"{detected}/{g['runs']} {_interval(g['detected'], '.0%')} | "
            f"{_interval(g['median_queries_to_detection'], 'g')} | "
            f"{d['worst_accounts_flagged']}/{d['benign_accounts']} |"
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


if __name__ == "__main__":
    try:
        main()
    except VoxauditError as exc:  # bad input: one clear line, not a traceback
        sys.exit(f"error: {exc}")
