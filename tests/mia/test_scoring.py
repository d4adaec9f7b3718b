"""Scoring mode's shared arithmetic: log-odds that keep ranking where the member probability
saturates, percentiles among the shadows' non-members, and the warnings of the first screen."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from voxaudit.mia.attacks import ShadowAttack
from voxaudit.mia.scoring import (
    outside_range,
    percentiles,
    ranked,
    score_rows,
    scoring_warnings,
    utility_words,
)
from voxaudit.mia.table import FeatureTable

CLASSIFIERS = {
    "logistic": LogisticRegression(),
    "mlp": MLPClassifier(hidden_layer_sizes=(8,), max_iter=2000, random_state=0),
    "random_forest": RandomForestClassifier(n_estimators=10, random_state=0),
}


def table(values: np.ndarray, prefix: str = "u") -> FeatureTable:
    n = len(values)
    return FeatureTable(
        ids=[f"{prefix}{i}" for i in range(n)],
        speakers=[f"s{i % 20}" for i in range(n)],
        columns=["wer", "cer"],
        families=["transcript", "transcript"],
        values=values,
    )


@pytest.fixture(scope="module")
def shadow_rows() -> tuple[FeatureTable, np.ndarray]:
    """Members have a lower WER, in [0, 1] like a working recognizer's."""
    rng = np.random.default_rng(0)
    is_member = rng.random(200) < 0.5
    wer = np.clip(rng.normal(0.5, 0.15, 200) - 0.2 * is_member, 0, 1)
    return table(np.column_stack([wer, rng.random(200)])), is_member


def fitted(shadow_rows, classifier: str) -> ShadowAttack:
    rows, is_member = shadow_rows
    return ShadowAttack(classifiers={classifier: CLASSIFIERS[classifier]}, cv=3).fit(
        rows, is_member
    )


# A target whose WER lies far beyond anything the shadows showed, as a pretrained encoder's
# similarities do: its member probability underflows.
FAR = table(np.column_stack([np.linspace(40.0, 400.0, 8), np.full(8, 0.5)]), prefix="far")


@pytest.mark.parametrize("classifier", ["logistic", "mlp"])
def test_log_odds_keep_distinct_rows_distinct_where_the_score_underflows(shadow_rows, classifier):
    attack = fitted(shadow_rows, classifier)
    score, log_odds = attack.score(FAR), attack.log_odds(FAR)
    assert np.all(score < 1e-12)  # saturated: log(p / (1 - p)) of these would tie or be -inf
    assert np.all(np.isfinite(log_odds))
    assert len(np.unique(log_odds)) == len(FAR)
    # A higher WER is less member-like: the order is kept to the end of the range.
    assert np.all(np.diff(log_odds) < 0)


@pytest.mark.parametrize("classifier", list(CLASSIFIERS))
def test_log_odds_are_finite_and_strictly_monotone_with_unsaturated_scores(shadow_rows, classifier):
    attack = fitted(shadow_rows, classifier)
    rows = table(np.random.default_rng(1).random((300, 2)))
    score, log_odds = attack.score(rows), attack.log_odds(rows)
    assert np.all(np.isfinite(log_odds)) and np.all(np.isfinite(attack.log_odds(FAR)))
    inside = (score > 1e-9) & (score < 1 - 1e-9)
    order = np.argsort(score[inside])
    assert np.all(np.diff(log_odds[inside][order]) >= -1e-9)
    distinct = np.diff(score[inside][order]) > 1e-12
    assert np.all(np.diff(log_odds[inside][order])[distinct] > 0)
    if classifier != "random_forest":  # its log-odds are of its vote shares, clipped
        np.testing.assert_allclose(expit(log_odds), score, rtol=1e-9, atol=1e-12)
    else:
        np.testing.assert_allclose(log_odds[inside], logit(score[inside]), rtol=1e-9)


def test_the_attack_keeps_out_of_fold_log_odds_and_the_fitted_range(shadow_rows):
    rows, is_member = shadow_rows
    attack = fitted(shadow_rows, "logistic")
    assert attack.out_of_fold_log_odds_.shape == (len(rows),)
    assert np.array_equal(attack.is_member_, is_member)
    np.testing.assert_array_equal(attack.column_range_, [rows.values.min(0), rows.values.max(0)])
    assert outside_range(attack, FAR) == {"wer": 1.0, "cer": 0.0}
    assert list(outside_range(attack, rows).values()) == [0.0, 0.0]


def test_percentiles_count_the_reference_below_ties_half_and_stay_in_0_to_100():
    reference = np.array([3.0, 1.0, 2.0, 2.0])
    values = np.array([0.5, 1.0, 2.0, 2.5, 9.0])
    assert percentiles(values, reference).tolist() == [0, 12.5, 50, 75, 100]
    assert percentiles(np.zeros(3), np.zeros(5)).tolist() == [50, 50, 50]


def test_score_rows_hold_score_log_odds_and_percentile(shadow_rows):
    attack = fitted(shadow_rows, "logistic")
    rows = table(np.random.default_rng(2).random((50, 2)))
    scored = score_rows(attack, rows, rows.ids, rows.speakers)
    assert [r["id"] for r in scored] == list(rows.ids)
    assert all(set(r) == {"id", "speaker", "score", "log_odds", "percentile"} for r in scored)
    assert all(0 <= r["percentile"] <= 100 and np.isfinite(r["log_odds"]) for r in scored)
    by_log_odds = sorted(scored, key=lambda r: r["log_odds"])
    assert [r["percentile"] for r in by_log_odds] == sorted(r["percentile"] for r in scored)
    # The shadows' non-members are the reference: far beyond them, nothing ranks above.
    assert {r["percentile"] for r in score_rows(attack, FAR, FAR.ids, FAR.speakers)} == {0.0}
    assert [r["id"] for r in ranked(scored)] == [r["id"] for r in by_log_odds[::-1]]


def test_warnings_name_a_failing_target_failing_shadows_and_out_of_range_columns():
    setup = {
        "level": "sample",
        "utility": {
            "target": {"wer": 1.85, "cer": 0.9},
            "shadow-0": {"wer": 1.0, "cer": 0.7},
            "shadow-1": {"wer": 0.4, "cer": 0.2},
        },
        "reference_attack": {"outside_fitted_range": {"cer": 0.9, "wer": 0.25, "length": 0.1}},
    }
    target, shadows, extrapolated = scoring_warnings(setup, 60)
    assert "target fails" in target and "WER 1.85" in target and "carry no meaning" in target
    assert "shadow-0 WER 1.00" in shadows and "shadow-1" not in shadows
    assert "cer for 90%, wer for 25% of the 60 recordings" in extrapolated
    assert "length" not in extrapolated
    fine = {
        "level": "speaker",
        "utility": {"target": {"eer": 0.1}, "shadow-0": {"eer": 0.39}},
        "reference_attack": {"outside_fitted_range": {"intra": 0.2}},
    }
    assert scoring_warnings(fine, 6) == []
    failing = fine | {"utility": {"target": {"eer": 0.45}, "shadow-0": {"eer": 0.1}}}
    (only,) = scoring_warnings(failing, 6)
    assert "EER 0.45" in only and "tells these speakers apart" in only
    weak = fine | {"reference_attack": {"shadow_cv_auroc": 0.557, "outside_fitted_range": {}}}
    (near_chance,) = scoring_warnings(weak, 6)
    assert "AUROC 0.557" in near_chance and "close to arbitrary" in near_chance
    strong = fine | {"reference_attack": {"shadow_cv_auroc": 0.943, "outside_fitted_range": {}}}
    assert scoring_warnings(strong, 6) == []


def test_utility_words_cover_every_model_or_say_why_there_are_none():
    words = utility_words({"utility": {"target": {"wer": 1.85, "cer": 0.9}}})
    assert words == "Utility on the scored recordings: target WER 1.850, CER 0.900."
    assert "not measured: one speaker" in utility_words({"utility": "not measured: one speaker"})
    assert scoring_warnings({"utility": "not measured: one speaker"}, 3) == []
