"""Detection of query-based attacks by the guard's detectors, with paper 003's metrics.

Usage: python bench/guard_eval.py [--model RUN_DIR] [--carriers 2] [--benign 600]
           [--fpr 0.001] [--out voxaudit-out/bench/guard_eval.json] [--no-gateway]
       python bench/guard_eval.py --summarize voxaudit-out/bench/guard_eval.json

1. Benign traffic: two disjoint synthetic streams (calibration, held out), each utterance sent
   once by one of 4 accounts, with 2% natural repeats (noisy replays). Every detector is
   calibrated on the first for ``--fpr``; the false-positive rate per query and per account is
   measured on the second (and on FSDD when ../shared/data/fsdd is there).
2. Four detectors: paper 003's account memory and the global index, each on plain
   fingerprints and on paper 003's robust variant (noise at an SNR drawn from 25-75 dB added
   to each query before fingerprinting, fresh per query).
3. Attacks, targeted at ``--target``, on speech carriers (synthetic utterances) and music-like
   carriers (synthesized chords with percussion), through ``Access`` with a tap that records
   every query: white-box CTC (C&W style), its psychoacoustically masked variant (IRTA-like),
   NES and genetic (black box with scores).
4. Each recorded attack is replayed to fresh detectors under each adaptive setting: as is;
   noise at an SNR on every query (paper A1); fake queries (distinct held-out benign clips) at
   a share p_fake (A2); spread round-robin over 10 accounts; and both.
5. Unless ``--no-gateway``: the CTC and IRTA-like attacks on the first speech carrier sent
   through the HTTP gateway (FastAPI's TestClient, in-process store, the same model as the
   backend), one detector at a time; the attack stops at its first 403.

Metrics: DSR exactly as paper 003 (detections * k / queries, capped at 1; a detection is
followed by k queries in which no other is counted, the memory detector's refill), queries to
the first detection (all queries the attacker sent, fakes included), detected at all, attack
success, FSNR (carrier over perturbation at the first detection, dB) and the share of STFT
cells where the final perturbation exceeds the carrier's masking threshold. The attacks are
run once without noise and the noise is added at replay, so their trajectories ignore it.
95% intervals: Wilson for shares of independent outcomes (FPR per query and per account,
attack success, attacks detected), percentile bootstrap over the attack runs for the mean DSR
and the median queries to detection.
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
from voxaudit.attacks.iterative import (
    CTCAttack,
    GeneticAttack,
    MaskedCTCAttack,
    NESAttack,
    snr_db,
)
from voxaudit.attacks.masking import MaskingModel
from voxaudit.attacks.tap import QueryRefused, QueryTap
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.files import write_atomically
from voxaudit.guard.detectors import IndexDetector, MemoryDetector
from voxaudit.guard.fingerprint import Fingerprinter, add_noise
from voxaudit.guard.intervals import bootstrap_interval, wilson
from voxaudit.guard.traffic import benign_stream, fingerprint_stream
from voxaudit.mia.metrics import Estimate
from voxaudit.models.access import Access
from voxaudit.progress import track

RATE = 16000
K = 75
DEFAULT_MODEL = "voxaudit-out/mia-asr/sample/models/target"
ROBUST_NOISE_DB = (25.0, 75.0)  # paper 003's robust variant
ATTACKS = {
    "ctc (white box)": lambda: CTCAttack(steps=200, check_every=20, bound_db=-20.0),
    "irta-like (white box, masked)": lambda: MaskedCTCAttack(
        steps=200, check_every=20, bound_db=-20.0
    ),
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
# detector -> (what it is, which fingerprints it reads: "plain" or "robust")
DETECTORS = {
    "memory (paper 003)": (lambda: MemoryDetector(k=K), "plain"),
    "index (global)": (IndexDetector, "plain"),
    "memory, robust": (lambda: MemoryDetector(k=K), "robust"),
    "index, robust": (IndexDetector, "robust"),
}
GATEWAY_ATTACKS = ("ctc (white box)", "irta-like (white box, masked)")


def fingerprinters(seed: int) -> dict[str, Fingerprinter]:
    """The plain fingerprinter and paper 003's robust one (noise before fingerprinting)."""
    return {
        "plain": Fingerprinter(),
        "robust": Fingerprinter(noise_snr_db=ROBUST_NOISE_DB, seed=seed),
    }


def load_recognizer(model: str | None):
    if model and Path(model).exists():
        from voxaudit.mia.asr import load_audit_model

        return load_audit_model(model, "null", "cpu").recognizer, model
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    return Recognizer(CTCModel.from_preset("tiny")), "untrained tiny CTC (no run folder found)"


def record_attack(
    name: str, recognizer, carrier: np.ndarray, target: str, prints: dict[str, Fingerprinter]
) -> dict:
    """Run one attack; keep every waveform it sent, and its fingerprints on each path."""
    sent: list[np.ndarray] = []
    tap = QueryTap(recognizer, lambda _account, wave: sent.append(wave))
    attack = ATTACKS[name]()
    started = time.time()
    result = attack.run(Access(tap, attack.access_level), carrier, target)
    seconds = time.time() - started
    masking = MaskingModel(sample_rate=RATE)
    return {
        "queries": sent,
        "prints": {path: [fp(w) for w in sent] for path, fp in prints.items()},
        "success": result.success,
        "snr_db": result.snr_db,
        "above_mask": masking.share_above(result.adversarial - carrier, carrier),
        "transcript": result.transcript,
        "seconds": seconds,
    }


def replay(
    record: dict,
    carrier: np.ndarray,
    setting: dict,
    detectors: dict,
    prints: dict[str, Fingerprinter],
    fakes: list[dict],
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
    for index, wave in enumerate(record["queries"]):
        while rng.random() < p_fake:
            fingerprint = next(fake_iter)
            fakes_sent += 1
            _check(fresh, flags, f"attacker{sent % accounts}", fingerprint, clock)
            perturbation_db.append(last_real_db)
            sent, clock = sent + 1, clock + 1.0
        query = add_noise(wave, noise, rng) if noise is not None else wave
        if query.size == carrier.size:
            last_real_db = snr_db(carrier, query - carrier)
        fingerprint = {
            path: fp(query) if noise is not None else record["prints"][path][index]
            for path, fp in prints.items()
        }
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


def _check(detectors, flags, account, fingerprint: dict, clock) -> None:
    """Each detector checks the query's fingerprint on its own path."""
    for name, detector in detectors.items():
        path = DETECTORS[name][1]
        flags[name].append(detector.check(account, fingerprint[path], clock).flagged)


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


def false_positives(detectors: dict, traffic: dict) -> dict:
    """Per detector: benign queries and accounts flagged (traffic: one stream per path)."""
    out = {}
    for name, detector in detectors.items():
        fresh = calibrated_copy(detector)
        per_account: dict[str, bool] = {}
        flagged = 0
        stream = traffic[DETECTORS[name][1]]
        for account, fingerprint, stamp in stream:
            hit = fresh.check(account, fingerprint, stamp).flagged
            flagged += hit
            per_account[account] = per_account.get(account, False) or hit
        accounts_flagged = sum(per_account.values())
        out[name] = {
            "queries": len(stream),
            "flagged_queries": flagged,
            "fpr_per_query": wilson(flagged, len(stream)).to_dict(),
            "accounts": len(per_account),
            "accounts_flagged": accounts_flagged,
            "fpr_per_account": wilson(accounts_flagged, len(per_account)).to_dict(),
        }
    return out


def through_gateway(
    name: str, recognizer, carrier: np.ndarray, target: str, thresholds: dict, seed: int
) -> list[dict]:
    """The attack sent through the HTTP gateway, one detector at a time, until its first 403."""
    from fastapi.testclient import TestClient

    from voxaudit.guard.backends import RecognizerBackend
    from voxaudit.guard.client import GatewayClient, GatewayReply
    from voxaudit.guard.config import GuardConfig
    from voxaudit.guard.service import Gateway, create_app

    out = []
    for detector, (_, path) in DETECTORS.items():
        kind = "memory" if detector.startswith("memory") else "index"
        config = GuardConfig(
            api_keys={"attacker-key": "attacker0"},
            admin_key="admin-key",
            detectors=(kind,),
            index_threshold=thresholds[detector] if kind == "index" else None,
            memory_threshold=thresholds[detector] if kind == "memory" else None,
            k=K,
            fingerprint_noise_db=ROBUST_NOISE_DB if path == "robust" else None,
        )
        # The gateway's own fingerprinter for this config, seeded so the run repeats.
        fingerprinter = Fingerprinter(noise_snr_db=config.fingerprint_noise_db, seed=seed)
        gateway = Gateway(config, RecognizerBackend(recognizer), fingerprinter=fingerprinter)
        client = GatewayClient(TestClient(create_app(gateway)), {"attacker0": "attacker-key"})
        tap = QueryTap(recognizer, client, refuse=GatewayReply.is_refused)
        attack = ATTACKS[name]()
        started = time.perf_counter()
        try:
            attack.run(Access(tap, attack.access_level), carrier, target)
            refused = None
        except QueryRefused as exc:
            refused = exc.event.verdict.error
        seconds = time.perf_counter() - started
        out.append(
            {
                "attack": name,
                "detector": detector,
                "queries_sent": len(tap.events),
                "queries_to_detection": len(tap.events) if refused else None,
                "refusal": refused,
                "banned_after": gateway.store.ban_of("attacker0") is not None,
                "seconds_per_query": seconds / max(1, len(tap.events)),
            }
        )
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
    parser.add_argument("--no-gateway", action="store_true", help="skip the attacks over HTTP")
    parser.add_argument("--out", default="voxaudit-out/bench/guard_eval.json")
    parser.add_argument("--summarize", help="only print the tables of an earlier results JSON")
    args = parser.parse_args()
    if args.summarize:
        print(summary(json.loads(Path(args.summarize).read_text())))
        return
    torch.set_num_threads(1)
    started = time.time()
    prints = fingerprinters(args.seed)
    rng = np.random.default_rng(args.seed)

    per = 10
    corpus = synthesize_corpus_in_memory(
        2 * args.benign // per + 2, per, seed=args.seed + 100, progress=True
    )
    waves = [u.samples for u in corpus.utterances]
    calibration_stream = benign_stream(waves[: args.benign], n_accounts=4, seed=1)
    held_out_stream = benign_stream(
        waves[args.benign : 2 * args.benign], n_accounts=4, seed=2, prefix="heldout"
    )
    calibration = {p: fingerprint_stream(calibration_stream, fp) for p, fp in prints.items()}
    held_out = {p: fingerprint_stream(held_out_stream, fp) for p, fp in prints.items()}
    detectors = {name: make() for name, (make, _) in DETECTORS.items()}
    thresholds = {
        name: d.calibrate(calibration[DETECTORS[name][1]], args.fpr)
        for name, d in detectors.items()
    }
    benign = {"synthetic held out": false_positives(detectors, held_out)}
    # A fake query is one benign clip, fingerprinted on each path.
    fake_pool = [dict(zip(prints, fs, strict=True)) for fs in _prints_only(held_out)]
    fsdd = Path(__file__).resolve().parents[2] / "shared/data/fsdd"
    if (fsdd / "recordings").is_dir():
        from voxaudit.data.loaders import load_corpus

        digits = [u.load(RATE) for u in load_corpus(fsdd).utterances]
        fsdd_stream = benign_stream(digits, n_accounts=6, seed=3, prefix="fsdd")
        fsdd_traffic = {
            p: fingerprint_stream(fsdd_stream, fp, progress=True) for p, fp in prints.items()
        }
        benign["fsdd"] = false_positives(detectors, fsdd_traffic)
        fake_pool += [dict(zip(prints, fs, strict=True)) for fs in _prints_only(fsdd_traffic)]

    recognizer, model_source = load_recognizer(args.model)
    speech = synthesize_corpus_in_memory(args.carriers, 1, seed=args.seed + 7)
    carriers = [("speech", u.samples) for u in speech.utterances]
    carriers += [("music", c) for c in music_carriers(args.carriers, args.seed + 8)]
    rows = []
    jobs = [(a, kind, c) for a in args.attacks for kind, c in carriers]
    for name, kind, carrier in track(jobs, "attacks"):
        record = record_attack(name, recognizer, carrier, args.target, prints)
        for setting_name, setting in SETTINGS.items():
            fakes = [fake_pool[i] for i in rng.permutation(len(fake_pool))]
            result = replay(record, carrier, setting, detectors, prints, fakes, rng)
            rows.append(
                {
                    "attack": name,
                    "carrier": kind,
                    "setting": setting_name,
                    "attack_queries": len(record["queries"]),
                    "attack_success": record["success"],
                    "attack_snr_db": record["snr_db"],
                    "attack_above_mask": record["above_mask"],
                    "attack_seconds": record["seconds"],
                    "detectors": result,
                }
            )
    gateway = []
    if not args.no_gateway:
        first_speech = carriers[0][1]
        for name in track([a for a in GATEWAY_ATTACKS if a in args.attacks], "gateway"):
            gateway += through_gateway(
                name, recognizer, first_speech, args.target, thresholds, args.seed
            )
    results = {
        "model": model_source,
        "target": args.target,
        "k": K,
        "fpr_target": args.fpr,
        "robust_noise_db": ROBUST_NOISE_DB,
        "thresholds": thresholds,
        "benign": benign,
        "rows": rows,
        "aggregate": aggregate(rows),
        "attacks": attack_outcomes(rows),
        "gateway": gateway,
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }
    write_atomically(args.out, json.dumps(results, indent=1, default=float))
    print(summary(results))


def _prints_only(traffic: dict) -> list[tuple]:
    """Per query, its fingerprint on each path (in the paths' order)."""
    return list(zip(*([f for _, f, _ in stream] for stream in traffic.values()), strict=True))


def aggregate(rows: list[dict]) -> list[dict]:
    """Per setting and detector: mean DSR, share of attack runs detected and median queries
    to detection, each with its 95% interval."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        for name, r in row["detectors"].items():
            groups.setdefault((row["setting"], name), []).append(r)
    out = []
    for (setting, name), runs in groups.items():
        firsts = [r["queries_to_detection"] for r in runs if r["queries_to_detection"]]
        out.append(
            {
                "setting": setting,
                "detector": name,
                "runs": len(runs),
                "mean_dsr": bootstrap_interval([r["dsr"] for r in runs], np.mean).to_dict(),
                "detected": wilson(sum(r["detected"] for r in runs), len(runs)).to_dict(),
                "median_queries_to_detection": bootstrap_interval(firsts).to_dict(),
            }
        )
    return out


def attack_outcomes(rows: list[dict]) -> list[dict]:
    """Per attack: success over its carriers (Wilson), queries, SNR and share above the mask."""
    out = []
    for name in dict.fromkeys(row["attack"] for row in rows):
        once = [row for row in rows if row["attack"] == name and row["setting"] == "as is"]
        out.append(
            {
                "attack": name,
                "runs": len(once),
                "success": wilson(sum(r["attack_success"] for r in once), len(once)).to_dict(),
                "queries": [r["attack_queries"] for r in once],
                "snr_db": [r["attack_snr_db"] for r in once],
                "above_mask": [r["attack_above_mask"] for r in once],
            }
        )
    return out


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
            lines.append(
                f"| {stream} | {name} | {r['flagged_queries']}/{r['queries']} | "
                f"{_interval(r['fpr_per_query'], '.2%')} | "
                f"{r['accounts_flagged']}/{r['accounts']} | "
                f"{_interval(r['fpr_per_account'], '.0%')} |"
            )
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
    for g in results["aggregate"]:
        detected = round(g["detected"]["value"] * g["runs"])
        lines.append(
            f"| {g['setting']} | {g['detector']} | {_interval(g['mean_dsr'])} | "
            f"{detected}/{g['runs']} {_interval(g['detected'], '.0%')} | "
            f"{_interval(g['median_queries_to_detection'], 'g')} |"
        )
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
    main()
