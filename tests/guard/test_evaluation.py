"""The guard evaluation as a library function: paper 003's DSR, and one tiny run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from voxaudit.errors import VoxauditError
from voxaudit.guard.evaluation import DETECTORS, SETTINGS, dsr, evaluate_guard, json_safe
from voxaudit.models.ctc import CTCModel
from voxaudit.models.recognizer import Recognizer

T, F = True, False


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    torch.manual_seed(0)
    return Recognizer(CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0))


@pytest.mark.parametrize(
    ("flagged", "k", "expected"),
    [
        ([], 3, 0.0),
        ([F] * 10, 3, 0.0),
        ([T] + [F] * 9, 3, 3 / 10),  # one detection covers k of 10 queries
        ([T, T, T, T] + [F] * 6, 3, 6 / 10),  # flags 1 and 2 fall in the first one's k
        ([F, F, T, T, F, F], 2, 2 / 6),  # the flag right after a detection is not counted
        ([F, F, T, F, T, F, F, F], 2, 4 / 8),  # k queries later it is
        ([T] * 4, 3, 1.0),  # 2 detections * 3 / 4 queries, capped at 1
    ],
)
def test_dsr_counts_detections_as_paper_003(flagged, k, expected):
    assert dsr(flagged, k) == pytest.approx(expected)


def test_json_safe_makes_strict_json():
    data = {"a": (1.0, float("nan")), "b": np.float32(2.5), "c": [float("inf"), None, "x"]}
    assert json_safe(data) == {"a": [1.0, None], "b": 2.5, "c": [None, None, "x"]}


def test_bad_options_fail_before_any_work(recognizer):
    with pytest.raises(VoxauditError, match=r"unknown attack\(s\) 'fgsm'; known: ctc \(white"):
        evaluate_guard(recognizer, attacks=["fgsm"])
    with pytest.raises(VoxauditError, match=r"benign: a whole number >= 150 .* got 30"):
        evaluate_guard(recognizer, benign=30)


def test_a_tiny_evaluation_reports_every_detector_setting_and_attack(recognizer):
    results = evaluate_guard(
        recognizer,
        benign=150,  # the least that calibrates the memory detector (k = 75 per account)
        carriers=1,
        attacks=["nes (black box)"],
        gateway=False,
        progress=False,
    )
    assert set(results) == {
        "target", "k", "fpr_target", "robust_noise_db", "thresholds", "benign", "rows",
        "aggregate", "attacks", "gateway", "seconds", "machine",
    }  # fmt: skip
    assert results["target"] == "open the door" and results["fpr_target"] == 0.001
    assert set(results["thresholds"]) == set(DETECTORS)
    (stream,) = results["benign"].values()  # no FSDD given
    for figures in stream.values():
        assert figures["queries"] >= 150
        for rate in ("fpr_per_query", "fpr_per_account"):
            assert 0 <= figures[rate]["low"] <= figures[rate]["value"] <= figures[rate]["high"] <= 1
    rows = results["rows"]
    assert [(r["carrier"], r["setting"]) for r in rows] == [
        (carrier, setting) for carrier in ("speech", "music") for setting in SETTINGS
    ]
    for row in rows:
        assert row["attack"] == "nes (black box)" and set(row["detectors"]) == set(DETECTORS)
        for run in row["detectors"].values():
            assert 0 <= run["dsr"] <= 1 and run["queries_sent"] >= row["attack_queries"]
            assert run["detected"] == (run["queries_to_detection"] is not None)
        if row["setting"] == "as is":  # nothing added: the defender sees the attack's queries
            assert {r["queries_sent"] for r in row["detectors"].values()} == {row["attack_queries"]}
    assert len(results["aggregate"]) == len(SETTINGS) * len(DETECTORS)
    assert all(g["runs"] == 2 for g in results["aggregate"])
    (outcome,) = results["attacks"]
    assert outcome["attack"] == "nes (black box)" and outcome["runs"] == 2
    assert results["gateway"] == []
    json.dumps(json_safe(results), allow_nan=False)  # what the audit report stores
