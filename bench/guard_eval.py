"""Detection of query-based attacks by both guard detectors, with paper 003's metrics.

Usage: python bench/guard_eval.py [--model RUN_DIR] [--carriers 2] [--benign 600]
           [--fpr 0.001] [--out voxaudit-out/bench/guard_eval.json]
       python bench/guard_eval.py --summarize voxaudit-out/bench/guard_eval.json

1. Benign traffic: two disjoint synthetic streams (calibration, held out), each utterance sent
   once by one of 4 accounts, with 2% natural repeats (noisy replays). Both detectors are
   calibrated on the first for ``--fpr``; the false-positive rate per query and per account is
   measured on the second (and on FSDD when ../shared/data/fsdd is there).
2. Attacks, targeted at ``--target``, on speech carriers (synthetic utterances) and music-like
   carriers (synthesized chords with percussion), through ``Access`` with a tap that records
   every query: white-box CTC (C&W style), NES and genetic (black box with scores).
3. Each recorded attack is replayed to fresh detectors under each adaptive setting: as is;
   noise at an SNR on every query (paper A1); fake queries (distinct held-out benign clips) at
   a share p_fake (A2); spread round-robin over 10 accounts; and both.

Metrics: DSR exactly as paper 003 (detections * k / queries, capped at 1; a detection is
followed by k queries in which no other is counted, the memory detector's refill), queries to
the first detection (all queries the attacker sent, fakes included), detected at all, attack
success and FSNR (carrier over perturbation at the first detection, dB). The attacks are run
once without noise and the noise is added at replay, so their trajectories ignore it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from voxaudit.attacks.carriers import music_carriers
from voxaudit.attacks.iterative import CTCAttack, GeneticAttack, NESAttack, snr_db
from voxaudit.attacks.tap import QueryTap
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.guard.detectors import IndexDetector, MemoryDetector
from voxaudit.guard.fingerprint import Fingerprinter
from voxaudit.guard.traffic import add_noise, benign_stream, fingerprint_stream
from voxaudit.models.access import Access
from voxaudit.progress import track

RATE = 16000
K = 75
DEFAULT_MODEL = "voxaudit-out/mia-asr/sample/models/target"
ATTACKS = {
    "ctc (white box)": lambda: CTCAttack(steps=200, check_every=20, bound_db=-20.0),
    "nes (black box)": lambda: NESAttack(samples=5, steps=30, check_every=10, bound_db=-20.0),
    "genetic (black box)": lambda: GeneticAttack(
        population=10, steps=30, check_every=10, bound_db=-20.0
    ),
}
SETTINGS = {
    "as is": {},
    "noise 30 dB": {"noise_snr_db": 30.0},
    "noise 50 dB": {"noise_snr_db": 50.0},
    "p_fake 30%": {"p_fake": 0.3},
    "p_fake 60%": {"p_fake": 0.6},
    "p_fake 80%": {"p_fake": 0.8},
    "10 accounts": {"accounts": 10},
    "10 accounts + p_fake 60%": {"accounts": 10, "p_fake": 0.6},
}


def load_recognizer(model: str | None):
    if model and Path(model).exists():
        from voxaudit.mia.asr import load_audit_model

        return load_audit_model(model, "null", "cpu").recognizer, model
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    return Recognizer(CTCModel.from_preset("tiny")), "untrained tiny CTC (no run folder found)"


def record_attack(
    name: str, recognizer, carrier: np.ndarray, target: str, fingerprinter: Fingerprinter
) -> dict:
    """Run one attack; keep every waveform it sent."""
    sent: list[np.ndarray] = []
    tap = QueryTap(recognizer, lambda _account, wave: sent.append(wave))
    attack = ATTACKS[name]()
    started = time.time()
    result = attack.run(Access(tap, attack.access_level), carrier, target)
    return {
        "queries": sent,
        "prints": [fingerprinter(w) for w in sent],
        "success": result.success,
        "snr_db": result.snr_db,
        "transcript": result.transcript,
        "seconds": time.time() - started,
    }


def replay(
    record: dict,
    carrier: np.ndarray,
    setting: dict,
    detectors: dict,
    fingerprinter: Fingerprinter,
    fakes: list,
    rng: np.random.Generator,
) -> dict:
    """The recorded queries under an adaptive setting, through fresh detectors."""
    accounts = setting.get("accounts", 1)
    p_fake = setting.get("p_fake", 0.0)
    noise = setting.get("noise_snr_db")
    fresh = {name: calibrated_copy(d) for name, d in detectors.items()}
    flags: dict[str, list[bool]] = {name: [] for name in fresh}
    perturbation_db: list[float] = []  # of the last real query, at each query sent
    last_real_db = float("inf")
    # Fakes are distinct benign clips; only an exhausted pool is reused (counted below).
    fake_iter = itertools.cycle(fakes)
    fakes_sent = 0
    clock = 0.0
    sent = 0
    for wave, clean_print in zip(record["queries"], record["prints"], strict=True):
        while rng.random() < p_fake:
            fingerprint = next(fake_iter)
            fakes_sent += 1
            _check(fresh, flags, f"attacker{sent % accounts}", fingerprint, clock)
            perturbation_db.append(last_real_db)
            sent, clock = sent + 1, clock + 1.0
        query = add_noise(wave, noise, rng) if noise is not None else wave
        if query.size == carrier.size:
            last_real_db = snr_db(carrier, query - carrier)
        fingerprint = fingerprinter(query) if noise is not None else clean_print
        _check(fresh, flags, f"attacker{sent % accounts}", fingerprint, clock)
        perturbation_db.append(last_real_db)
        sent, clock = sent + 1, clock + 1.0
    out = {}
    for name, flagged in flags.items():
        first = next((i for i, f in enumerate(flagged) if f), None)
        out[name] = {
            "dsr": dsr(flagged, K),
            "detected": first is not None,
            "queries_to_detection": None if first is None else first + 1,
            "fsnr_db": None if first is None else perturbation_db[first],
            "queries_sent": len(flagged),
            "fakes_reused": max(0, fakes_sent - len(fakes)),
        }
    return out


def calibrated_copy(detector):
    """A detector with ``detector``'s settings and threshold and an empty store."""
    copy = detector.scratch()
    copy.threshold = detector.threshold
    return copy


def _check(detectors, flags, account, fingerprint, clock) -> None:
    for name, detector in detectors.items():
        flags[name].append(detector.check(account, fingerprint, clock).flagged)


def dsr(flagged: list[bool], k: int) -> float:
    """Paper 003: detections * k / queries (capped at 1), with k dead queries per detection."""
    detections, i = 0, 0
    while i < len(flagged):
        if flagged[i]:
            detections += 1
            i += k
        else:
            i += 1
    return min(1.0, detections * k / max(1, len(flagged)))


def false_positives(detectors: dict, traffic) -> dict:
    out = {}
    for name, detector in detectors.items():
        fresh = calibrated_copy(detector)
        per_account: dict[str, bool] = {}
        flagged = 0
        for account, fingerprint, stamp in traffic:
            hit = fresh.check(account, fingerprint, stamp).flagged
            flagged += hit
            per_account[account] = per_account.get(account, False) or hit
        out[name] = {
            "queries": len(traffic),
            "fpr_per_query": flagged / max(1, len(traffic)),
            "flagged_queries": flagged,
            "accounts": len(per_account),
            "fpr_per_account": sum(per_account.values()) / max(1, len(per_account)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--target", default="open the door")
    parser.add_argument("--carriers", type=int, default=2, help="per carrier kind")
    parser.add_argument("--benign", type=int, default=600, help="utterances per benign stream")
    parser.add_argument("--fpr", type=float, default=0.001)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="voxaudit-out/bench/guard_eval.json")
    parser.add_argument("--summarize", help="only print the tables of an earlier results JSON")
    args = parser.parse_args()
    if args.summarize:
        print(summary(json.loads(Path(args.summarize).read_text())))
        return
    torch.set_num_threads(1)
    started = time.time()
    fingerprinter = Fingerprinter()
    rng = np.random.default_rng(args.seed)

    per = 10
    corpus = synthesize_corpus_in_memory(
        2 * args.benign // per + 2, per, seed=args.seed + 100, progress=True
    )
    waves = [u.samples for u in corpus.utterances]
    calibration = fingerprint_stream(
        benign_stream(waves[: args.benign], n_accounts=4, seed=1), fingerprinter, progress=True
    )
    held_out_waves = waves[args.benign : 2 * args.benign]
    held_out = fingerprint_stream(
        benign_stream(held_out_waves, n_accounts=4, seed=2, prefix="heldout"), fingerprinter
    )
    detectors = {"memory (paper 003)": MemoryDetector(k=K), "index (global)": IndexDetector()}
    thresholds = {name: d.calibrate(calibration, args.fpr) for name, d in detectors.items()}
    benign = {"synthetic held out": false_positives(detectors, held_out)}
    fake_pool = [f for _, f, _ in held_out]
    fsdd = Path(__file__).resolve().parents[2] / "shared/data/fsdd"
    if (fsdd / "recordings").is_dir():
        from voxaudit.data.loaders import load_corpus

        digits = [u.load(RATE) for u in load_corpus(fsdd).utterances]
        fsdd_traffic = fingerprint_stream(
            benign_stream(digits, n_accounts=6, seed=3, prefix="fsdd"), fingerprinter, progress=True
        )
        benign["fsdd"] = false_positives(detectors, fsdd_traffic)
        fake_pool += [f for _, f, _ in fsdd_traffic]

    recognizer, model_source = load_recognizer(args.model)
    speech = synthesize_corpus_in_memory(args.carriers, 1, seed=args.seed + 7)
    carriers = [("speech", u.samples) for u in speech.utterances]
    carriers += [("music", c) for c in music_carriers(args.carriers, args.seed + 8)]
    rows = []
    jobs = [(a, kind, c) for a in args.attacks for kind, c in carriers]
    for name, kind, carrier in track(jobs, "attacks"):
        record = record_attack(name, recognizer, carrier, args.target, fingerprinter)
        for setting_name, setting in SETTINGS.items():
            fakes = [fake_pool[i] for i in rng.permutation(len(fake_pool))]
            result = replay(record, carrier, setting, detectors, fingerprinter, fakes, rng)
            rows.append(
                {
                    "attack": name,
                    "carrier": kind,
                    "setting": setting_name,
                    "attack_queries": len(record["queries"]),
                    "attack_success": record["success"],
                    "attack_snr_db": record["snr_db"],
                    "attack_seconds": record["seconds"],
                    "detectors": result,
                }
            )
    results = {
        "model": model_source,
        "target": args.target,
        "k": K,
        "fpr_target": args.fpr,
        "thresholds": thresholds,
        "benign": benign,
        "rows": rows,
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    print(summary(results))


def summary(results: dict) -> str:
    """Markdown tables: mean DSR, median queries to detection and detection share per setting."""
    lines = [f"thresholds: {results['thresholds']}", "", "benign false positives:"]
    for stream, by_detector in results["benign"].items():
        for name, r in by_detector.items():
            lines.append(
                f"- {stream}, {name}: {r['flagged_queries']}/{r['queries']} queries "
                f"({r['fpr_per_query']:.2%}); accounts flagged {r['fpr_per_account']:.0%} "
                f"of {r['accounts']}"
            )
    lines += ["", *aggregate(results), "", "per attack and carrier:", ""]
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
    return "\n".join(lines)


def aggregate(results: dict) -> list[str]:
    """Per setting and detector: mean DSR, share detected, median queries to detection."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in results["rows"]:
        for name, r in row["detectors"].items():
            groups.setdefault((row["setting"], name), []).append(r)
    lines = [
        "| setting | detector | mean DSR | attacks detected | median queries to detection |",
        "|---|---|---|---|---|",
    ]
    for (setting, name), runs in groups.items():
        firsts = [r["queries_to_detection"] for r in runs if r["queries_to_detection"]]
        median = f"{np.median(firsts):g}" if firsts else "-"
        detected = sum(r["detected"] for r in runs)
        mean_dsr = np.mean([r["dsr"] for r in runs])
        lines.append(f"| {setting} | {name} | {mean_dsr:.1%} | {detected}/{len(runs)} | {median} |")
    return lines


if __name__ == "__main__":
    main()
