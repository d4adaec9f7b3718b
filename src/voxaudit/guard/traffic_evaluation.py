"""The guard on real-like traffic: attacks inside benign traffic that shares recordings.

The evaluation behind ``bench/guard_traffic.py``. Where ``evaluation.evaluate_guard`` replays
each attack to empty detectors, here the detectors run as a gateway would see them:

1. Thresholds come from ``voxaudit guard calibrate`` (the caller runs it and passes them in).
2. Benign traffic: ``held_out`` recordings over many accounts with exact shares of popular
   clips, re-recordings of them and natural repeats (``benign_stream``); the false-positive
   rate per query and per account is measured on it alone.
3. Each recorded attack runs inside that traffic (``evaluation.replay`` with a background):
   as is, with 60% fake queries, spread over 10 accounts, and both; benign accounts' flags
   are counted while it runs.
4. Adaptive attackers (Feng et al., CCS 2023): the black-box attacks re-run with a
   fingerprint-breaking evasion on every query (pitch, tempo, crop and offset, gain, planted
   tones; the search goes on, on the evaded queries' answers), replayed as above; and run
   live against the guard (both detectors, as the gateway runs them) by an attacker that
   uses each refusal as an oracle: it moves to a fresh account, strengthens its evasion and
   re-sends. The guard answers a flagged account either with a refusal (403) or with the
   transcript of a degraded copy (no oracle: ``flagged_response = "degrade"``).

Metrics as in ``evaluation``: paper 003's DSR, queries to detection, Wilson and bootstrap
95% intervals; attack success is the clean model's transcript of the attack's final
waveform, whatever the attacker was told.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from voxaudit.attacks.adaptive import QueryEvasion
from voxaudit.attacks.carriers import music_carriers
from voxaudit.attacks.tap import QueryRefused, QueryTap
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.data.text import normalize_transcript
from voxaudit.guard.detectors import IndexDetector, MemoryDetector
from voxaudit.guard.evaluation import (
    ATTACKS,
    K,
    aggregate,
    by_setting,
    calibrated_copy,
    check_attacks,
    false_positives,
    record_attack,
    replay,
)
from voxaudit.guard.fingerprint import Fingerprinter, add_noise
from voxaudit.guard.intervals import wilson
from voxaudit.guard.traffic import benign_stream, fingerprint_stream
from voxaudit.models.access import Access
from voxaudit.progress import track

#: Settings replayed inside the benign traffic.
SETTINGS = {
    "as is": {},
    "p_fake 60%": {"p_fake": 0.6},
    "10 accounts": {"accounts": 10},
    "10 accounts + p_fake 60%": {"accounts": 10, "p_fake": 0.6},
}
#: The attacks an API attacker runs (no gradients through an API): the adaptive ones.
BLACK_BOX = ("nes (black box)", "genetic (black box)")
RESPONSES = ("refuse", "degrade")
DEGRADE_SNR_DB = 0.0  # the gateway's default degrade_snr_db


def evaluate_on_traffic(
    recognizer: Any,
    held_out: Sequence[np.ndarray],
    thresholds: dict[str, float],
    *,
    accounts: int = 40,
    share_rate: float = 0.3,
    rerecord_rate: float = 0.02,
    popular: int = 10,
    carriers: int = 2,
    attacks: Sequence[str] | None = None,
    evasion: QueryEvasion | None = None,
    target: str = "open the door",
    max_accounts: int = 20,
    sweep_rerecord_rates: Sequence[float] = (0.0, 0.05, 0.1, 0.2),
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Benign false positives, attacks inside the traffic, adaptive and oracle attackers.

    Parameters
    ----------
    recognizer:
        The victim ASR (``transcribe``, ``utterance_loss``, ``input_gradients``).
    held_out:
        Benign recordings at 16 kHz, none of them used for calibration.
    thresholds:
        ``{"index": ..., "memory": ...}`` as ``voxaudit guard calibrate`` wrote them.
    accounts, share_rate, rerecord_rate, popular:
        The benign traffic's shape (see ``benign_stream``).
    carriers:
        Carriers of each kind (synthetic speech, music-like).
    attacks:
        Names from ``evaluation.ATTACKS`` (default: all); the black-box ones among them are
        also run adaptively.
    evasion:
        The adaptive attacker's transform of each query (default: ``QueryEvasion()``).
    max_accounts:
        How many fresh accounts the oracle attacker may burn.
    sweep_rerecord_rates:
        Also measure the benign false positives alone at these re-recording rates.
    """
    attacks = check_attacks(list(ATTACKS) if attacks is None else attacks)
    black_box = [name for name in attacks if name in BLACK_BOX]
    evasion = QueryEvasion() if evasion is None else evasion
    started = time.time()
    prints = {"plain": Fingerprinter()}
    detectors = calibrated_detectors(thresholds)

    def traffic_at(rate: float) -> list:
        return _benign_traffic(held_out, accounts, share_rate, rate, popular, seed, progress)

    traffic = traffic_at(rerecord_rate)
    background = [(account, {"plain": fingerprint}) for account, fingerprint, _ in traffic]
    benign = false_positives(detectors, {"plain": traffic})
    sweep = {
        rate: false_positives(detectors, {"plain": traffic_at(rate)})
        for rate in sweep_rerecord_rates
    }
    # Fakes are clips no benign account sends: synthetic utterances.
    pool = synthesize_corpus_in_memory(40, 10, seed=seed + 300, progress=progress).utterances
    fakes = [{"plain": prints["plain"](u.samples)} for u in pool]
    speech = synthesize_corpus_in_memory(carriers, 1, seed=seed + 7).utterances
    clips = [("speech", u.samples) for u in speech]
    clips += [("music", c) for c in music_carriers(carriers, seed + 8)]
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    jobs = [(a, kind, c, None) for a in attacks for kind, c in clips]
    jobs += [(a, kind, c, "evasion") for a in black_box for kind, c in clips]
    for i, (name, kind, carrier, adaptive) in enumerate(track(jobs, "attacks", enabled=progress)):
        record = record_attack(
            name, recognizer, carrier, target, prints, evasion if adaptive else None, seed=i
        )
        for setting_name, setting in SETTINGS.items():
            if adaptive and setting.get("p_fake"):
                continue  # the evasion rows answer one question: do the fingerprints break?
            label = f"evasion, {setting_name}" if adaptive else setting_name
            fake_order = [fakes[j] for j in rng.permutation(len(fakes))]
            result = replay(
                record, carrier, setting, detectors, prints, fake_order, rng, background
            )
            rows.append(
                {
                    "attack": name,
                    "carrier": kind,
                    "setting": label,
                    "attack_queries": len(record["queries"]),
                    "attack_success": record["success"],
                    "attack_snr_db": record["snr_db"],
                    "detectors": result,
                }
            )
    live = []
    live_jobs = [(a, kind, c, r) for a in black_box for kind, c in clips for r in RESPONSES]
    for i, (name, kind, carrier, response) in enumerate(
        track(live_jobs, "oracle attacker", enabled=progress)
    ):
        outcome = guarded_attack(
            name, recognizer, carrier, target, detectors, background, response,
            evasion=evasion, max_accounts=max_accounts, seed=seed + i,
        )  # fmt: skip
        live.append({"attack": name, "carrier": kind, "response": response} | outcome)
    return {
        "target": target,
        "k": K,
        "thresholds": thresholds,
        "traffic": {
            "accounts": accounts,
            "share_rate": share_rate,
            "rerecord_rate": rerecord_rate,
            "popular": popular,
            "queries": len(traffic),
        },
        "benign": benign,
        "benign_by_rerecord_rate": sweep,
        "rows": rows,
        "aggregate": aggregate(rows),
        "benign_during_attacks": benign_during(rows),
        "oracle": live,
        "oracle_summary": oracle_summary(live),
        "seconds": round(time.time() - started, 1),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
    }


def _benign_traffic(
    waves: Sequence[np.ndarray],
    accounts: int,
    share_rate: float,
    rerecord_rate: float,
    popular: int,
    seed: int,
    progress: bool,
) -> list:
    """``waves`` sent as benign traffic of that shape (``benign_stream``), fingerprinted."""
    stream = benign_stream(
        waves, n_accounts=accounts, seed=seed + 2, share_rate=share_rate,
        rerecord_rate=rerecord_rate, popular=popular,
    )  # fmt: skip
    return fingerprint_stream(stream, Fingerprinter(), progress=progress)


def calibrated_detectors(thresholds: dict[str, float]) -> dict[str, Any]:
    """The gateway's two detectors at ``voxaudit guard calibrate``'s thresholds."""
    return {
        "memory (from the first query)": MemoryDetector(k=K, threshold=thresholds["memory"]),
        "index (global)": IndexDetector(threshold=thresholds["index"]),
    }


def benign_at_scale(
    thresholds: dict[str, float],
    *,
    clips: int = 10000,
    accounts: int = 400,
    share_rate: float = 0.3,
    rerecord_rate: float = 0.02,
    popular: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Benign false positives on more traffic than a real corpus at hand holds.

    Real held-out corpora are small (FSDD's odd takes give about 2,000 queries and 40
    accounts), too few to resolve a 0.1% per-query or 1% per-account rate. Here ``clips``
    synthetic utterances (eSpeak NG voices, a seed no calibration uses) are spread over
    ``accounts`` with the same shares, re-recordings and repeats as ``evaluate_on_traffic``.

    Parameters
    ----------
    thresholds:
        ``{"index": ..., "memory": ...}`` as ``voxaudit guard calibrate`` wrote them.
    clips, accounts:
        Distinct recordings, and the accounts that send them.
    share_rate, rerecord_rate, popular:
        The traffic's shape (see ``benign_stream``).
    """
    per_speaker = 10
    corpus = synthesize_corpus_in_memory(
        -(-clips // per_speaker), per_speaker, seed=seed + 9000, progress=progress
    )
    waves = [u.samples for u in corpus.utterances[:clips]]
    traffic = _benign_traffic(waves, accounts, share_rate, rerecord_rate, popular, seed, progress)
    return {
        "clips": len(waves),
        "benign": false_positives(calibrated_detectors(thresholds), {"plain": traffic}),
    }


def guarded_attack(
    name: str,
    recognizer: Any,
    carrier: np.ndarray,
    target: str,
    detectors: dict[str, Any],
    background: list[tuple[str, dict[str, Any]]],
    response: str,
    *,
    evasion: QueryEvasion | None = None,
    max_accounts: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """One attack, live against the guard inside benign traffic, by an attacker that evades
    fingerprints and uses refusals as an oracle (fresh account, stronger evasion, re-send).

    The guard runs every detector, as the gateway does: a query any of them flags bans its
    account. ``response`` is what a banned account gets: ``"refuse"`` (the 403 the attacker
    sees) or ``"degrade"`` (the transcript of the query with noise at 0 dB SNR, which looks
    like any other answer). ``evasion`` defaults to ``QueryEvasion()``."""
    guard = _LiveGuard(
        {detector: calibrated_copy(d) for detector, d in detectors.items()}, background
    )
    rng = np.random.default_rng(seed)

    def degraded(banned_now: bool, wave: np.ndarray) -> np.ndarray:
        return add_noise(wave, DEGRADE_SNR_DB, rng) if banned_now else wave

    tap = QueryTap(
        recognizer,
        guard.observe,
        evasion=QueryEvasion() if evasion is None else evasion,
        refuse=bool if response == "refuse" else None,
        answer=degraded if response == "degrade" else None,
        on_refused="switch",
        max_accounts=max_accounts,
        seed=seed,
    )
    attack = ATTACKS[name]()
    gave_up = False
    try:
        result = attack.run(Access(tap, attack.access_level), carrier, target)
        final = result.adversarial
    except QueryRefused:
        gave_up, final = True, None
    success = final is not None and recognizer.transcribe([final])[0] == normalize_transcript(
        target
    )
    return {
        "queries_sent": len(tap.events),
        "detections": len(guard.detected_at),
        "first_detection": guard.detected_at[0] if guard.detected_at else None,
        "accounts_banned": len(guard.banned),
        "refusals_seen": tap.refusals,
        "gave_up": gave_up,
        "attack_success": bool(success),
        "benign_accounts_flagged": len(guard.benign_flagged),
    }


class _LiveGuard:
    """The gateway's guard as the attacker meets it: every detector checks each query, one
    benign query of ``background`` is checked before each of the attacker's, and a query any
    detector flags bans its account."""

    def __init__(
        self, detectors: dict[str, Any], background: list[tuple[str, dict[str, Any]]]
    ) -> None:
        self.detectors = detectors
        self.fingerprint = Fingerprinter()
        self.banned: set[str] = set()
        self.benign_flagged: set[str] = set()
        self.detected_at: list[int] = []  # attacker query numbers, from 1, that got a ban
        self._benign = iter(background)
        self._clock = 0.0
        self._queries = 0

    def observe(self, account: str, wave: np.ndarray) -> bool:
        """Check one attacker query; True when its account is banned."""
        benign = next(self._benign, None)
        if benign is not None and self._flagged(benign[0], benign[1]["plain"]):
            self.benign_flagged.add(benign[0])
        self._queries += 1
        if self._flagged(account, self.fingerprint(wave)) and account not in self.banned:
            self.banned.add(account)
            self.detected_at.append(self._queries)
        return account in self.banned

    def _flagged(self, account: str, fingerprint: Any) -> bool:
        hits = [d.check(account, fingerprint, self._clock).flagged for d in self.detectors.values()]
        self._clock += 1.0
        return any(hits)


def benign_during(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setting and detector: benign queries and accounts flagged while the attacks ran
    (the same benign traffic each time, so the runs are not independent: worst run shown)."""
    return [
        {
            "setting": setting,
            "detector": name,
            "runs": len(runs),
            "worst_queries_flagged": max(r["benign_flagged"] for r in runs),
            "worst_accounts_flagged": max(r["benign_accounts_flagged"] for r in runs),
            "benign_queries": runs[0]["benign_queries"],
            "benign_accounts": runs[0]["benign_accounts"],
        }
        for (setting, name), runs in by_setting(rows).items()
    ]


def oracle_summary(live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per response: runs detected, accounts burned, attack success (Wilson intervals)."""
    out = []
    for response in RESPONSES:
        runs = [r for r in live if r["response"] == response]
        if not runs:
            continue
        firsts = [r["first_detection"] for r in runs if r["first_detection"]]
        out.append(
            {
                "response": response,
                "runs": len(runs),
                "detected": wilson(sum(r["detections"] > 0 for r in runs), len(runs)).to_dict(),
                "median_first_detection": float(np.median(firsts)) if firsts else None,
                "mean_accounts_banned": float(np.mean([r["accounts_banned"] for r in runs])),
                "mean_refusals_seen": float(np.mean([r["refusals_seen"] for r in runs])),
                "gave_up": sum(r["gave_up"] for r in runs),
                "attack_success": wilson(
                    sum(r["attack_success"] for r in runs), len(runs)
                ).to_dict(),
                "benign_accounts_flagged": max(r["benign_accounts_flagged"] for r in runs),
            }
        )
    return out
