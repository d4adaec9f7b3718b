"""The guard on real-like traffic: attacks inside benign traffic, and the oracle attacker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxaudit.attacks.adaptive import QueryEvasion
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.guard.traffic_evaluation import evaluate_on_traffic, guarded_attack
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0))


@pytest.fixture(scope="module")
def held_out() -> list[np.ndarray]:
    return [u.samples for u in synthesize_corpus_in_memory(8, 10, seed=41).utterances]


# Gain alone leaves the fingerprints as they are (they are gain-invariant), and needs no
# librosa: the attacker is caught, and these tests stay fast.
GAIN_ONLY = QueryEvasion(pitch_shift=None, tempo_change=None, crop_s=None, offset_s=None, tones=0)


def background(held_out, fingerprinter):
    return [(f"user{i % 5}", {"plain": fingerprinter(w)}) for i, w in enumerate(held_out)]


def test_a_refusal_is_an_oracle_and_a_degraded_answer_is_not(recognizer, held_out):
    """With a hair-trigger index, the attacker is caught at once either way; refused, it sees
    the refusals and burns accounts; answered with degraded transcripts, it sees nothing."""
    from voxaudit.guard.detectors import IndexDetector
    from voxaudit.guard.fingerprint import Fingerprinter

    detectors = {"index (global)": IndexDetector(threshold=1)}
    traffic = background(held_out, Fingerprinter())
    carrier = held_out[0]
    runs = {}
    for response in ("refuse", "degrade"):
        runs[response] = guarded_attack(
            "nes (black box)", recognizer, carrier, "open the door", detectors, traffic,
            response, evasion=GAIN_ONLY, max_accounts=3,
        )  # fmt: skip
    refused, degraded = runs["refuse"], runs["degrade"]
    assert refused["detections"] >= 1 and degraded["detections"] >= 1
    assert refused["refusals_seen"] >= 1 and refused["accounts_banned"] >= 2
    assert degraded["refusals_seen"] == 0 and degraded["accounts_banned"] == 1
    assert not degraded["gave_up"] and degraded["queries_sent"] > refused["first_detection"]


@pytest.mark.slow
def test_a_tiny_run_reports_benign_attacks_adaptive_and_oracle(recognizer, held_out):
    results = evaluate_on_traffic(
        recognizer,
        held_out,
        {"index": 2.0, "memory": 0.5},
        accounts=5,
        carriers=1,
        attacks=["nes (black box)"],
        evasion=GAIN_ONLY,
        max_accounts=2,
        sweep_rerecord_rates=(0.0,),
        progress=False,
    )
    assert set(results["benign"]) == {"memory (from the first query)", "index (global)"}
    assert set(results["benign_by_rerecord_rate"]) == {0.0}
    settings = {row["setting"] for row in results["rows"]}
    assert {"as is", "p_fake 60%", "10 accounts", "evasion, as is", "evasion, 10 accounts"} <= (
        settings
    )
    for row in results["rows"]:
        for run in row["detectors"].values():
            assert run["benign_queries"] == results["traffic"]["queries"]
            assert 0 <= run["benign_accounts_flagged"] <= run["benign_accounts"]
    assert {o["response"] for o in results["oracle_summary"]} == {"refuse", "degrade"}
    assert all(r["refusals_seen"] == 0 for r in results["oracle"] if r["response"] == "degrade")


def test_benign_traffic_at_scale_shares_clips_without_flags_at_the_calibrated_index():
    """Popular clips sent by many accounts are free for the index at threshold 2 (no account
    sends variants of its own); a hair-trigger memory threshold flags that same traffic, so
    the counts are measured, not constants."""
    from voxaudit.guard.traffic_evaluation import benign_at_scale

    results = benign_at_scale(
        {"index": 2, "memory": 0.0}, clips=40, accounts=8, share_rate=0.5, progress=False
    )
    assert results["clips"] == 40
    index = results["benign"]["index (global)"]
    memory = results["benign"]["memory (from the first query)"]
    assert index["queries"] > 40 and index["accounts"] == 8
    assert index["flagged_queries"] == 0 and index["fpr_per_query"]["high"] > 0
    assert memory["flagged_queries"] > 0 and memory["accounts_flagged"] > 0
