import time

import numpy as np
import pytest
from sklearn import metrics as skm

from voxaudit.errors import VoxauditError
from voxaudit.mia import metrics
from voxaudit.mia.metrics import (
    Estimate,
    attack_metrics,
    auroc_p_value,
    holm_adjust,
    is_chance,
    joint_bootstrap_auroc,
    roc_curve,
    tpr_at_fpr,
    tpr_key,
)

# Worked by hand: 16 member/non-member pairs, 10 won and one tie -> AUROC 10.5 / 16.
# ROC points (FPR, TPR): (0,0) (0,.25) (.25,.25) (.25,.5) (.5,.75) (.75,.75) (.75,1) (1,1).
MEMBER_SCORES = [0.9, 0.7, 0.6, 0.2]
NONMEMBER_SCORES = [0.8, 0.6, 0.3, 0.1]
SCORES = MEMBER_SCORES + NONMEMBER_SCORES
IS_MEMBER = [True] * 4 + [False] * 4
# 2 true positives, 1 false positive, 3 true negatives, 2 false negatives.
PREDICTIONS = [True, False, True, False, True, False, False, False]


def shifted(n: int, shift: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n members scoring ``shift`` higher on average than n non-members."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1, n), rng.normal(0, 1, n)])
    return scores, np.repeat([True, False], n)


def test_hand_computed_example():
    result = attack_metrics(SCORES, IS_MEMBER, PREDICTIONS, fprs=(0.25, 0.5), n_bootstrap=50)
    values = {name: estimate.value for name, estimate in result.items()}
    assert values == pytest.approx(
        {
            "auroc": 10.5 / 16,
            "advantage": 0.5 - 0.25,  # TPR - FPR of the predictions
            "tpr_at_25%_fpr": 0.5,
            "tpr_at_50%_fpr": 0.75,
            "accuracy": 5 / 8,
            "precision": 2 / 3,
            "recall": 0.5,
        }
    )


def test_roc_curve_and_tpr_at_fpr_by_hand():
    fpr, tpr = roc_curve(SCORES, IS_MEMBER)
    points = list(zip(fpr.tolist(), tpr.tolist(), strict=True))
    assert points == [
        (0, 0),
        (0, 0.25),
        (0.25, 0.25),
        (0.25, 0.5),
        (0.5, 0.75),
        (0.75, 0.75),
        (0.75, 1),
        (1, 1),
    ]
    assert tpr_at_fpr(SCORES, IS_MEMBER, 0.25) == 0.5
    assert tpr_at_fpr(SCORES, IS_MEMBER, 0.2) == 0.25
    assert tpr_at_fpr(SCORES, IS_MEMBER, 0.0) == 0.25


def test_tpr_at_fpr_keeps_collinear_operating_points():
    # Each threshold admits one member and one non-member, so the points (.5, .5) and (.75, .75)
    # lie evenly on a straight line: sklearn's default drop_intermediate removes them.
    scores = [4, 4, 3, 3, 2, 2, 1, 1]
    is_member = [True, False] * 4
    assert tpr_at_fpr(scores, is_member, 0.5) == 0.5
    assert attack_metrics(scores, is_member, fprs=(0.5,), n_bootstrap=5)[tpr_key(0.5)].value == 0.5


def test_ties_are_handled_as_sklearn_does():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, 300).astype(float)  # heavily tied
    is_member = rng.random(300) < 0.5
    result = attack_metrics(scores, is_member, fprs=(0.1,), n_bootstrap=10)
    fpr, tpr, _ = skm.roc_curve(is_member, scores, drop_intermediate=False)
    assert result["auroc"].value == pytest.approx(skm.roc_auc_score(is_member, scores))
    assert "advantage" not in result  # no predictions, no decisions to measure
    assert result["tpr_at_10%_fpr"].value == pytest.approx(tpr[fpr <= 0.1].max())


def test_resampling_kernel_agrees_with_sklearn_on_unit_weights():
    """The fast per-resample statistics, given the data itself, are the sklearn point values."""
    rng = np.random.default_rng(4)
    for _ in range(20):
        n = int(rng.integers(4, 200))
        scores = np.round(rng.normal(size=n), 1)
        is_member = np.arange(n) % 3 == 0
        predictions = rng.random(n) < 0.5
        fprs = (0.02, 0.1, 0.3)
        point = metrics._point_statistics(scores, is_member, predictions, fprs)
        members = metrics._Class(scores, is_member, predictions)
        nonmembers = metrics._Class(scores, ~is_member, predictions)
        ones = [np.ones((1, len(c)), dtype=np.int64) for c in (members, nonmembers)]
        kernel = metrics._weighted_statistics(members, nonmembers, *ones, fprs)
        assert {k: v[0] for k, v in kernel.items()} == pytest.approx(point, nan_ok=True)


def test_perfect_separation_gives_a_degenerate_interval_at_one():
    scores = np.arange(200.0)  # 100 non-members resolve a TPR at 1% FPR
    is_member = scores >= 100
    result = attack_metrics(scores, is_member, n_bootstrap=200)
    assert result["auroc"] == Estimate(1.0, 1.0, 1.0)
    assert result["tpr_at_1%_fpr"] == Estimate(1.0, 1.0, 1.0)
    decided = attack_metrics(scores, is_member, scores >= 100, n_bootstrap=200)
    assert decided["advantage"] == Estimate(1.0, 1.0, 1.0)


def test_reversed_scores_give_auroc_zero():
    scores = np.arange(200.0)
    is_member = scores < 100
    result = attack_metrics(scores, is_member, n_bootstrap=200)
    assert result["auroc"] == Estimate(0.0, 0.0, 0.0)
    assert result["tpr_at_1%_fpr"].value == 0.0
    # Decisions as reversed as the scores: the advantage is negative, not clipped at 0.
    decided = attack_metrics(scores, is_member, scores >= 100, n_bootstrap=200)
    assert decided["advantage"] == Estimate(-1.0, -1.0, -1.0)


def test_no_signal_interval_contains_chance_and_is_narrow():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=2000)
    is_member = rng.permutation(np.repeat([True, False], 1000))
    auroc = attack_metrics(scores, is_member)["auroc"]
    assert is_chance(auroc)
    assert 0.02 < auroc.high - auroc.low < 0.1


def test_no_signal_intervals_cover_chance_about_95_percent_of_the_time():
    covered = 0
    for seed in range(100):
        scores, is_member = shifted(100, 0.0, seed)
        covered += is_chance(attack_metrics(scores, is_member, n_bootstrap=200)["auroc"])
    assert 88 <= covered <= 100


def test_a_shift_is_detected_and_the_interval_holds_the_estimate():
    scores, is_member = shifted(1000, 0.4, seed=1)
    result = attack_metrics(scores, is_member, scores > 0.2)
    assert result["auroc"].low > 0.55
    assert not is_chance(result["auroc"])
    for name, estimate in result.items():
        assert estimate.contains(estimate.value), name


def test_same_seed_same_interval_and_another_seed_another():
    scores, is_member = shifted(300, 0.3, seed=2)
    first = attack_metrics(scores, is_member, n_bootstrap=300, seed=7)
    assert attack_metrics(scores, is_member, n_bootstrap=300, seed=7) == first
    other = attack_metrics(scores, is_member, n_bootstrap=300, seed=8)
    assert other["auroc"].value == first["auroc"].value
    assert other["auroc"] != first["auroc"]


def test_tpr_at_an_fpr_the_nonmembers_cannot_resolve_is_nan():
    scores, is_member = shifted(500, 1.0, seed=3)
    result = attack_metrics(scores, is_member, n_bootstrap=100)
    unresolved = result["tpr_at_0.1%_fpr"]
    assert np.isnan([unresolved.value, unresolved.low, unresolved.high]).all()
    assert not unresolved.contains(0.0)
    assert 0 < result["tpr_at_1%_fpr"].value < 1  # 5 false positives allowed: resolved


def test_precision_is_nan_when_nothing_is_predicted_member():
    scores, is_member = shifted(50, 1.0, seed=4)
    result = attack_metrics(scores, is_member, np.zeros(100, bool), n_bootstrap=50)
    assert np.isnan(result["precision"].value)
    assert result["recall"] == Estimate(0.0, 0.0, 0.0)
    assert result["accuracy"] == Estimate(0.5, 0.5, 0.5)


def test_bootstrap_is_stratified():
    # One member and one non-member: every stratified resample is the data itself.
    result = attack_metrics([0.2, 0.1], [True, False], n_bootstrap=100)
    assert result["auroc"] == Estimate(1.0, 1.0, 1.0)


def test_thousand_resamples_of_two_thousand_examples_are_fast():
    scores, is_member = shifted(1000, 0.3, seed=5)
    start = time.perf_counter()
    attack_metrics(scores, is_member, scores > 0)
    assert time.perf_counter() - start < 5.0


def test_tpr_key_names():
    assert [tpr_key(f) for f in (0.001, 0.01, 0.1)] == [
        "tpr_at_0.1%_fpr",
        "tpr_at_1%_fpr",
        "tpr_at_10%_fpr",
    ]
    assert set(attack_metrics(SCORES, IS_MEMBER, n_bootstrap=5)) == {
        "auroc",
        "tpr_at_0.1%_fpr",
        "tpr_at_1%_fpr",
    }


@pytest.mark.parametrize(
    ("scores", "is_member", "predictions", "message"),
    [
        ([0.1, 0.2, 0.3], [True, False], None, "3 scores but 2 membership labels"),
        ([0.1, 0.2], [True, True], None, "2 members and 0 non-members"),
        ([0.1, np.nan, np.inf], [True, False, False], None, "2 of 3 scores are not finite"),
        ([0.1, 0.2], [True, False], [True], "1 predictions for 2 scores"),
        ([0.1, 0.2], [2, 0], None, "membership labels must be booleans"),
    ],
)
def test_bad_input_is_named(scores, is_member, predictions, message):
    with pytest.raises(VoxauditError, match=message):
        attack_metrics(scores, is_member, predictions)


def test_is_chance_for_the_null_control():
    assert is_chance(Estimate(0.51, 0.47, 0.55))
    assert not is_chance(Estimate(0.58, 0.53, 0.62))
    assert not is_chance(Estimate(0.42, 0.38, 0.46))
    assert is_chance(Estimate(0.12, 0.05, 0.2), chance=0.1)
    assert Estimate(0.5, 0.4, 0.6).to_dict() == {"value": 0.5, "low": 0.4, "high": 0.6}


def test_advantage_of_a_null_attack_has_an_interval_around_zero():
    """TPR - FPR of fixed decisions is as often below 0 as above it without a signal, so its
    interval covers 0 (the best TPR - FPR over thresholds would sit above 0 by construction)."""
    covered, below = 0, 0
    for seed in range(40):
        scores, is_member = shifted(150, 0.0, seed)
        advantage = attack_metrics(scores, is_member, scores > 0.1, n_bootstrap=200)["advantage"]
        covered += advantage.contains(0.0)
        below += advantage.value < 0
    assert covered >= 34 and 10 <= below <= 30


def test_joint_bootstrap_resamples_every_attack_alike():
    scores, is_member = shifted(100, 0.5, seed=6)
    noise = np.random.default_rng(6).normal(size=200)
    samples = joint_bootstrap_auroc([scores, scores, noise], is_member, n_bootstrap=300, seed=1)
    assert samples.shape == (300, 3)
    np.testing.assert_array_equal(samples[:, 0], samples[:, 1])  # one attack twice: one column
    # Each column is a bootstrap of that attack's AUROC.
    for column, row in zip(samples.T[[0, 2]], (scores, noise), strict=True):
        auroc = skm.roc_auc_score(is_member, row)
        assert abs(np.median(column) - auroc) < 0.02 and column.std() > 0.01
    again = joint_bootstrap_auroc([scores, scores, noise], is_member, n_bootstrap=300, seed=1)
    np.testing.assert_array_equal(again, samples)
    with pytest.raises(VoxauditError, match="3 scores but 2 membership labels"):
        joint_bootstrap_auroc([[0.1, 0.2, 0.3]], [True, False])


def test_joint_bootstrap_weights_agree_with_sklearn_on_a_resample():
    """A resample drawn as counts is the AUROC of the examples repeated by those counts."""
    scores, is_member = shifted(30, 0.4, seed=7)
    rng = np.random.default_rng(3)
    members = metrics._draw(rng, 1, 30)[0]
    nonmembers = metrics._draw(rng, 1, 30)[0]
    repeated = np.concatenate([members, nonmembers])
    expected = skm.roc_auc_score(np.repeat(is_member, repeated), np.repeat(scores, repeated))
    got = joint_bootstrap_auroc([scores], is_member, n_bootstrap=1, seed=3)[0, 0]
    assert got == pytest.approx(expected)


def test_auroc_p_value_is_the_mann_whitney_test():
    scores, is_member = shifted(100, 0.0, seed=8)
    assert 0.05 < auroc_p_value(scores, is_member) <= 1
    scores, is_member = shifted(100, 0.8, seed=8)
    assert auroc_p_value(scores, is_member) < 1e-4
    assert auroc_p_value(-scores, is_member) == pytest.approx(auroc_p_value(scores, is_member))
    assert auroc_p_value([1.0, 1.0, 1.0, 1.0], [True, False, True, False]) == 1.0


def test_holm_adjustment_by_hand():
    # Sorted 0.01, 0.02, 0.04, 0.3 times 4, 3, 2, 1: 0.04, 0.06, 0.08, 0.3 (running max).
    adjusted = holm_adjust([0.04, 0.01, 0.3, 0.02])
    assert adjusted.tolist() == pytest.approx([0.08, 0.04, 0.3, 0.06])
    # The running maximum keeps the order of the raw p-values; 1 caps them.
    assert holm_adjust([0.01, 0.011, 0.9]).tolist() == pytest.approx([0.03, 0.03, 0.9])
    assert holm_adjust([0.6, 0.7]).tolist() == [1.0, 1.0]
    assert holm_adjust([]).tolist() == []
    with pytest.raises(VoxauditError, match="p-values in"):
        holm_adjust([0.5, 1.5])
