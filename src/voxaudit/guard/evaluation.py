"""Detection of query-based attacks by the guard's detectors, with paper 003's metrics.

The evaluation behind ``bench/guard_eval.py`` and the guard stage of ``voxaudit audit``:

1. Benign traffic: two disjoint synthetic streams (calibration, held out), each utterance sent
   once by one of up to 4 accounts, with 2% natural repeats (noisy replays). Every detector is
   calibrated on the first for ``fpr``; the false-positive rate per query and per account is
   measured on the second (and on the FSDD recordings when given).
2. Four detectors: paper 003's account memory and the global index, each on plain
   fingerprints and on paper 003's robust variant (noise at an SNR drawn from 25-75 dB added
   to each query before fingerprinting, fresh per query).
3. Attacks, targeted at ``target``, on speech carriers (synthetic utterances) and music-like
   carriers (synthesized chords with percussion), through ``Access`` with a tap that records
   every query: white-box CTC (C&W style), its psychoacoustically masked variant (IRTA-like),
   NES and genetic (black box with scores).
4. Each recorded attack is replayed to fresh detectors under each adaptive setting: as is;
   noise at an SNR on every query (paper A1); fake queries (distinct held-out benign clips) at
   a share p_fake (A2); spread round-robin over 3, 10 or 50 accounts; and 10 accounts with
   p_fake 60%.
5. With ``gateway``: the CTC and IRTA-like attacks on the first speech carrier sent through
   the HTTP gateway (FastAPI's TestClient, in-process store, the same model as the backend),
   one detector at a time; the attack stops at its first 403.

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

import itertools
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from voxaudit.data.text import normalize_transcript
from voxaudit.errors import VoxauditError
from voxaudit.guard.detectors import IndexDetector, MemoryDetector
from voxaudit.guard.fingerprint import Fingerprinter, add_noise
from voxaudit.guard.intervals import bootstrap_interval, wilson
from voxaudit.guard.traffic import benign_stream, fingerprint_stream
from voxaudit.models.access import Access
from voxaudit.progress import track

RATE = 16000
K = 75
#: The memory detector scores a query only after k earlier ones from its account, so each
#: benign account sends at least 2k: k to fill its memory, k scored.
MIN_BENIGN = 2 * K
BENIGN_ACCOUNTS = 4  # at most; fewer when the streams are shorter than 4 * MIN_BENIGN
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
    "3 accounts": {"accounts": 3},
    "10 accounts": {"accounts": 10},
    "50 accounts": {"accounts": 50},
    "10 accounts + p_fake 60%": {"accounts": 10, "p_fake": 0.6},
}
# detector -> (what it is, which fingerprints it reads: "plain" or "robust")
DETECTORS = {
    "memory (paper 003)": (lambda: MemoryDetector(k=K, min_history=K), "plain"),
    "memory (from the first query)": (lambda: MemoryDetector(k=K), "plain"),
    "index (global)": (IndexDetector, "plain"),
    "memory, robust": (lambda: MemoryDetector(k=K, min_history=K), "robust"),
    "index, robust": (IndexDetector, "robust"),
}
GATEWAY_ATTACKS = ("ctc (white box)", "irta-like (white box, masked)")
#: The detectors as the gateway runs them (its memory scores from the first query).
GATEWAY_DETECTORS = ("memory (from the first query)", "index (global)", "index, robust")


def evaluate_guard(
    recognizer: Any,
    *,
    benign: int = 600,
    carriers: int = 2,
    attacks: Sequence[str] | None = None,
    target: str = "open the door",
    fpr: float = 0.001,
    seed: int = 0,
    gateway: bool = True,
    fsdd: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Calibrate the detectors on ``benign`` utterances per stream, attack ``recognizer`` on
    ``carriers`` clips of each kind with ``attacks`` (default: all of :data:`ATTACKS`) and
    replay each attack under every adaptive setting; the results, as the bench writes them."""
    attacks = check_attacks(list(ATTACKS) if attacks is None else attacks)
    check_benign(benign)
    started = time.time()
    prints = fingerprinters(seed)
    rng = np.random.default_rng(seed)

    per = 10
    corpus = synthesize_corpus_in_memory(
        2 * benign // per + 2, per, seed=seed + 100, progress=progress
    )
    waves = [u.samples for u in corpus.utterances]
    accounts = min(BENIGN_ACCOUNTS, benign // MIN_BENIGN)
    calibration_stream = benign_stream(waves[:benign], n_accounts=accounts, seed=1)
    held_out_stream = benign_stream(
        waves[benign : 2 * benign], n_accounts=accounts, seed=2, prefix="heldout"
    )
    calibration = {p: fingerprint_stream(calibration_stream, fp) for p, fp in prints.items()}
    held_out = {p: fingerprint_stream(held_out_stream, fp) for p, fp in prints.items()}
    detectors = {name: make() for name, (make, _) in DETECTORS.items()}
    thresholds = {
        name: d.calibrate(calibration[DETECTORS[name][1]], fpr) for name, d in detectors.items()
    }
    benign_results = {"synthetic held out": false_positives(detectors, held_out)}
    # A fake query is one benign clip, fingerprinted on each path.
    fake_pool = [dict(zip(prints, fs, strict=True)) for fs in _prints_only(held_out)]
    if fsdd is not None:
        from voxaudit.data.loaders import load_corpus

        digits = [u.load(RATE) for u in load_corpus(fsdd).utterances]
        fsdd_stream = benign_stream(digits, n_accounts=6, seed=3, prefix="fsdd")
        fsdd_traffic = {
            p: fingerprint_stream(fsdd_stream, fp, progress=progress) for p, fp in prints.items()
        }
        benign_results["fsdd"] = false_positives(detectors, fsdd_traffic)
        fake_pool += [dict(zip(prints, fs, strict=True)) for fs in _prints_only(fsdd_traffic)]

    speech = synthesize_corpus_in_memory(carriers, 1, seed=seed + 7)
    clips = [("speech", u.samples) for u in speech.utterances]
    clips += [("music", c) for c in music_carriers(carriers, seed + 8)]
    rows = []
    jobs = [(a, kind, c) for a in attacks for kind, c in clips]
    for name, kind, carrier in track(jobs, "attacks", enabled=progress):
        record = record_attack(name, recognizer, carrier, target, prints)
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
    over_http = []
    if gateway:
        first_speech = clips[0][1]
        for name in track([a for a in GATEWAY_ATTACKS if a in attacks], "gateway",
                          enabled=progress):  # fmt: skip
            over_http += through_gateway(name, recognizer, first_speech, target, thresholds, seed)
    return {
        "target": target,
        "k": K,
        "fpr_target": fpr,
        "robust_noise_db": ROBUST_NOISE_DB,
        "thresholds": thresholds,
        "benign": benign_results,
        "rows": rows,
        "aggregate": aggregate(rows),
        "attacks": attack_outcomes(rows),
        "gateway": over_http,
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }


def check_attacks(names: Sequence[str], where: str = "attacks") -> tuple[str, ...]:
    """``names`` as a tuple when each is one of :data:`ATTACKS`; else a ``VoxauditError``."""
    if isinstance(names, str) or not names:
        raise VoxauditError(f"{where}: a non-empty list of attacks; known: {', '.join(ATTACKS)}")
    unknown = [name for name in names if name not in ATTACKS]
    if unknown:
        raise VoxauditError(
            f"{where}: unknown attack(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(ATTACKS)}"
        )
    return tuple(names)


def check_benign(benign: Any, where: str = "benign") -> int:
    """``benign`` when it is enough utterances per stream to calibrate every detector."""
    if not isinstance(benign, int) or isinstance(benign, bool) or benign < MIN_BENIGN:
        raise VoxauditError(
            f"{where}: a whole number >= {MIN_BENIGN} (the memory detector scores a query only "
            f"after k = {K} earlier ones from its account); got {benign!r}"
        )
    return benign


def json_safe(data: Any) -> Any:
    """``data`` as strict JSON data: NaN and infinities (an undefined interval, an attack
    that never perturbed its carrier) as null, tuples as lists."""
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def fingerprinters(seed: int) -> dict[str, Fingerprinter]:
    """The plain fingerprinter and paper 003's robust one (noise before fingerprinting)."""
    return {
        "plain": Fingerprinter(),
        "robust": Fingerprinter(noise_snr_db=ROBUST_NOISE_DB, seed=seed),
    }


def record_attack(
    name: str,
    recognizer: Any,
    carrier: np.ndarray,
    target: str,
    prints: dict[str, Fingerprinter],
    evasion: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run one attack; keep every waveform it sent, and its fingerprints on each path.

    With ``evasion``, every query is transformed before it is sent and the attack searches on
    the transformed queries' answers (an adaptive attacker); success is always the clean
    model's transcript of the final waveform."""
    sent: list[np.ndarray] = []
    tap = QueryTap(recognizer, lambda _account, wave: sent.append(wave), evasion=evasion, seed=seed)
    attack = ATTACKS[name]()
    started = time.time()
    result = attack.run(Access(tap, attack.access_level), carrier, target)
    seconds = time.time() - started
    masking = MaskingModel(sample_rate=RATE)
    success = recognizer.transcribe([result.adversarial])[0] == normalize_transcript(target)
    return {
        "queries": sent,
        "prints": {path: [fp(w) for w in sent] for path, fp in prints.items()},
        "success": bool(success),
        "snr_db": result.snr_db,
        "above_mask": masking.share_above(result.adversarial - carrier, carrier),
        "transcript": result.transcript,
        "seconds": seconds,
    }


def replay(
    record: dict[str, Any],
    carrier: np.ndarray,
    setting: dict[str, Any],
    detectors: dict[str, Any],
    prints: dict[str, Fingerprinter],
    fakes: list[dict[str, Any]],
    rng: np.random.Generator,
    background: list[tuple[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """The recorded queries under an adaptive setting, through fresh detectors.

    With ``background`` (benign queries in order: account and fingerprint per path), the
    attack runs inside that traffic: the first half of it is sent first, then one benign query
    before each of the attacker's, then the rest; the benign accounts' flags are counted too.
    """
    attack = list(_attack_queries(record, carrier, setting, prints, fakes, rng))
    queue: list[tuple[str, dict[str, Any], float | None]] = []
    benign = [(account, fingerprint, None) for account, fingerprint in background or ()]
    fakes_sent = sum(fake for *_, fake in attack)
    attack = [(account, fingerprint, db) for account, fingerprint, db, _ in attack]
    head = len(benign) // 2
    queue += benign[:head]
    for index, query in enumerate(attack):
        queue += benign[head + index : head + index + 1]
        queue.append(query)
    queue += benign[head + len(attack) :]
    fresh = {name: calibrated_copy(d) for name, d in detectors.items()}
    paths = {name: DETECTORS[name][1] for name in fresh}
    flags: dict[str, list[bool]] = {name: [] for name in fresh}
    benign_flags: dict[str, dict[str, int]] = {name: {} for name in fresh}
    perturbation_db = [db for _, _, db in attack]
    for clock, (account, fingerprint, db) in enumerate(queue):
        for name, detector in fresh.items():
            hit = detector.check(account, fingerprint[paths[name]], float(clock)).flagged
            if db is None:
                benign_flags[name][account] = benign_flags[name].get(account, 0) + hit
            else:
                flags[name].append(hit)
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
        if background is not None:
            per_account = benign_flags[name]
            out[name] |= {
                "benign_queries": len(benign),
                "benign_flagged": sum(per_account.values()),
                "benign_accounts": len(per_account),
                "benign_accounts_flagged": sum(1 for n in per_account.values() if n),
            }
    return out


def _attack_queries(
    record: dict[str, Any],
    carrier: np.ndarray,
    setting: dict[str, Any],
    prints: dict[str, Fingerprinter],
    fakes: list[dict[str, Any]],
    rng: np.random.Generator,
):
    """The attacker's stream under ``setting``: (account, fingerprint per path, the last real
    query's carrier-to-perturbation dB, whether it is a fake); fakes are distinct benign
    clips, only an exhausted pool is reused."""
    accounts = setting.get("accounts", 1)
    p_fake = setting.get("p_fake", 0.0)
    noise = setting.get("noise_snr_db")
    fake_iter = itertools.cycle(fakes)
    last_real_db = float("inf")
    sent = 0
    for index, wave in enumerate(record["queries"]):
        while rng.random() < p_fake:
            yield f"attacker{sent % accounts}", next(fake_iter), last_real_db, True
            sent += 1
        query = add_noise(wave, noise, rng) if noise is not None else wave
        if query.size == carrier.size:
            last_real_db = snr_db(carrier, query - carrier)
        fingerprint = {
            path: fp(query) if noise is not None else record["prints"][path][index]
            for path, fp in prints.items()
        }
        yield f"attacker{sent % accounts}", fingerprint, last_real_db, False
        sent += 1


def calibrated_copy(detector: Any) -> Any:
    """A detector with ``detector``'s settings and threshold and an empty store."""
    copy = detector.scratch()
    copy.threshold = detector.threshold
    return copy


def dsr(flagged: Sequence[bool], k: int) -> float:
    """Paper 003: detections * k / queries (capped at 1), with k dead queries per detection."""
    detections, i = 0, 0
    while i < len(flagged):
        if flagged[i]:
            detections += 1
            i += k
        else:
            i += 1
    return min(1.0, detections * k / max(1, len(flagged)))


def false_positives(detectors: dict[str, Any], traffic: dict[str, Any]) -> dict[str, Any]:
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
    name: str,
    recognizer: Any,
    carrier: np.ndarray,
    target: str,
    thresholds: dict[str, float],
    seed: int,
) -> list[dict[str, Any]]:
    """The attack sent through the HTTP gateway, one detector at a time, until its first 403."""
    from fastapi.testclient import TestClient

    from voxaudit.guard.backends import RecognizerBackend
    from voxaudit.guard.client import GatewayClient, GatewayReply
    from voxaudit.guard.config import GuardConfig
    from voxaudit.guard.service import Gateway, create_app

    out = []
    for detector in GATEWAY_DETECTORS:
        path = DETECTORS[detector][1]
        kind = "memory" if detector.startswith("memory") else "index"
        config = GuardConfig(
            api_keys={"attacker-key": "attacker0"},
            admin_key="admin-key",
            detectors=(kind,),
            index_threshold=thresholds[detector] if kind == "index" else None,
            memory_threshold=thresholds[detector] if kind == "memory" else None,
            k=K,
            fingerprint_noise_db=ROBUST_NOISE_DB if path == "robust" else None,
            store="memory",  # each detector's run starts with no bans, not a file's old ones
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


def _prints_only(traffic: dict[str, Any]) -> list[tuple]:
    """Per query, its fingerprint on each path (in the paths' order)."""
    return list(zip(*([f for _, f, _ in stream] for stream in traffic.values()), strict=True))


def by_setting(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Replay results grouped by (setting, detector), in the order they first appear."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        for name, result in row["detectors"].items():
            groups.setdefault((row["setting"], name), []).append(result)
    return groups


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and detector: mean DSR, share of attack runs detected and median queries
    to detection, each with its 95% interval."""
    out = []
    for (setting, name), runs in by_setting(rows).items():
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


def attack_outcomes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
