"""The one-run epsilon lower bound (Steinke, Nasr & Jagielski 2023): known values, its
properties, soundness on an exactly eps-DP mechanism, and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from voxaudit.data.corpus import Utterance
from voxaudit.errors import VoxauditError
from voxaudit.mia.one_run import (
    audit_canaries,
    canary_scores,
    epsilon_ceiling,
    epsilon_lower_bound,
)

# Root finding stops within 1e-10; comparisons between bounds allow for that.
TOL = 1e-7


def randomized_response(eps: float, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Canaries included with probability 1/2, each scored by its inclusion bit flipped with
    probability 1 / (1 + e^eps): exactly eps-DP, and the most accurate eps-DP guesser."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    flipped = rng.random(m) < 1 / (1 + math.exp(eps))
    return (included ^ flipped).astype(float), included


def paper_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The paper's bound on P[>= v correct], written out term by term as it states it."""
    q = math.exp(eps) / (1 + math.exp(eps))

    def f(w: int) -> float:
        return stats.binom.sf(w - 1, r, q)

    correction = max(((f(v - i) - f(v)) / i for i in range(1, v + 1)), default=0.0)
    return min(1.0, f(v) + 2 * m * delta * correction)


# --- known values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "v", "confidence"),
    [(100, 80, 0.95), (1000, 600, 0.95), (50, 45, 0.9), (500, 300, 0.99), (20, 20, 0.95)],
)
def test_delta_zero_is_the_largest_eps_binomial_tail_allows(r, v, confidence):
    # With delta = 0 the bound is the eps at which P[Binomial(r, e^eps/(1+e^eps)) >= v] reaches
    # 1 - confidence, found here by plain bisection; the number of canaries plays no part.
    def tail_minus_level(eps: float) -> float:
        q = 1 / (1 + math.exp(-eps))
        return stats.binom.sf(v - 1, r, q) - (1 - confidence)

    expected = optimize.bisect(tail_minus_level, 0.0, 30.0, xtol=1e-12)
    for m in (r, 10 * r):
        assert epsilon_lower_bound(v, r, m, delta=0.0, confidence=confidence) == pytest.approx(
            expected, abs=1e-8
        )


def test_all_correct_with_delta_zero_has_a_closed_form():
    # P[all r right] = q^r, so the bound solves q^r = 1 - confidence: q = 0.05^(1/100) for
    # r = 100 at 95%, and eps = log(q / (1 - q)) = 3.49296...
    q = 0.05 ** (1 / 100)
    assert epsilon_lower_bound(100, 100, 1000, delta=0.0) == pytest.approx(
        math.log(q / (1 - q)), abs=1e-8
    )


@pytest.mark.parametrize(
    ("m", "r", "v", "delta"),
    [(1000, 100, 90, 1e-5), (1000, 600, 600, 1e-5), (10_000, 500, 400, 1e-4), (200, 60, 50, 1e-3)],
)
def test_delta_correction_is_the_papers_bound(m, r, v, delta):
    # The bound is where the paper's p-value, computed term by term here, crosses 5%.
    eps = epsilon_lower_bound(v, r, m, delta=delta)
    assert eps > 0
    assert (
        paper_p_value(m, r, v, eps - 1e-6, delta)
        < 0.05
        <= paper_p_value(m, r, v, eps + 1e-6, delta)
    )
    assert eps < epsilon_lower_bound(v, r, m, delta=0.0)


# --- behaviour -----------------------------------------------------------------------------


def test_perfect_guesses_give_a_positive_bound_that_grows_with_the_guesses():
    bounds = [epsilon_lower_bound(r, r, 10_000) for r in (10, 100, 1000, 10_000)]
    assert bounds[0] > 0.5
    assert bounds == sorted(bounds)
    assert len(set(bounds)) == len(bounds)


@pytest.mark.parametrize("v", [0, 250, 500, 516])
def test_coin_flip_accuracy_gives_no_bound(v):
    # 516 is one standard deviation above r / 2: still well within chance.
    assert epsilon_lower_bound(v, 1000, 1000) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    r=st.integers(1, 300),
    data=st.data(),
    extra=st.integers(0, 2000),
    delta=st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]),
    confidence=st.floats(0.5, 0.999),
)
def test_more_correct_guesses_never_lower_the_bound(r, data, extra, delta, confidence):
    low = data.draw(st.integers(0, r))
    high = data.draw(st.integers(low, r))
    weaker = epsilon_lower_bound(low, r, r + extra, delta, confidence)
    stronger = epsilon_lower_bound(high, r, r + extra, delta, confidence)
    assert 0.0 <= weaker <= stronger + TOL


@settings(max_examples=60, deadline=None)
@given(
    r=st.integers(1, 300),
    data=st.data(),
    extra=st.integers(0, 2000),
    deltas=st.lists(st.sampled_from([0.0, 1e-7, 1e-5, 1e-4, 1e-2]), min_size=2, max_size=2),
    confidences=st.lists(st.floats(0.5, 0.999), min_size=2, max_size=2),
)
def test_more_delta_or_more_confidence_never_raises_the_bound(r, data, extra, deltas, confidences):
    v = data.draw(st.integers(0, r))
    small_delta, big_delta = sorted(deltas)
    low_conf, high_conf = sorted(confidences)
    m = r + extra
    base = epsilon_lower_bound(v, r, m, small_delta, low_conf)
    assert base >= 0.0
    assert epsilon_lower_bound(v, r, m, big_delta, low_conf) <= base + TOL
    assert epsilon_lower_bound(v, r, m, small_delta, high_conf) <= base + TOL


# --- audit_canaries ------------------------------------------------------------------------


def test_audit_reports_the_best_of_a_bonferroni_corrected_sweep():
    scores, included = randomized_response(3.0, 1000, seed=0)
    result = audit_canaries(scores, included)
    sweep = result["sweep"]
    assert [row["guesses"] for row in sweep] == [10, 20, 50, 100, 200, 500, 1000]
    corrected = 1 - 0.05 / len(sweep)
    for row in sweep:
        assert row["epsilon"] == epsilon_lower_bound(
            row["correct"], row["guesses"], 1000, 1e-5, corrected
        )
    best = max(sweep, key=lambda row: row["epsilon"])
    assert result["epsilon"] == best["epsilon"] > 0
    assert (result["guesses"], result["correct"]) == (best["guesses"], best["correct"])
    assert (result["canaries"], result["delta"], result["confidence"]) == (1000, 1e-5, 0.95)
    # The correction costs something: uncorrected, the same best row would claim more.
    assert result["epsilon"] < epsilon_lower_bound(best["correct"], best["guesses"], 1000)


def test_audit_guesses_in_on_the_top_and_out_on_the_bottom():
    # Ten canaries, the five highest scores included: every guess is right whatever r is.
    scores = np.arange(10.0)
    included = scores >= 5
    result = audit_canaries(scores, included, guess_counts=[4, 3, 10])
    assert [(row["guesses"], row["correct"]) for row in result["sweep"]] == [
        (3, 3),
        (4, 4),
        (10, 10),
    ]
    # Reversed scores make every guess wrong.
    reversed_result = audit_canaries(-scores, included, guess_counts=[10])
    assert reversed_result["sweep"][0]["correct"] == 0
    assert reversed_result["epsilon"] == 0.0


def test_one_guess_count_is_evaluated_at_the_stated_confidence():
    scores, included = randomized_response(2.0, 500, seed=1)
    result = audit_canaries(scores, included, confidence=0.9, guess_counts=[200])
    assert result["epsilon"] == epsilon_lower_bound(result["correct"], 200, 500, 1e-5, 0.9)


def test_ties_cannot_smuggle_in_the_listing_order():
    # Members listed last and all scores equal: breaking ties by position would guess "in" on
    # exactly the members and "prove" a large epsilon from scores that carry no information.
    included = np.arange(1000) >= 500
    assert audit_canaries(np.zeros(1000), included)["epsilon"] == 0.0


@pytest.mark.parametrize("seed", range(3))
def test_scores_unrelated_to_inclusion_give_no_bound(seed):
    rng = np.random.default_rng(seed)
    assert audit_canaries(rng.normal(size=2000), rng.random(2000) < 0.5)["epsilon"] == 0.0


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0, 4.0])
def test_bound_never_exceeds_the_true_epsilon_of_randomized_response(eps):
    bounds = [audit_canaries(*randomized_response(eps, 2000, seed))["epsilon"] for seed in range(5)]
    assert max(bounds) <= eps
    # And for clear leakage it is not vacuous (about 3.5 of 4 here).
    if eps >= 2:
        assert min(bounds) > eps / 2


# --- input errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "name"),
    [
        ((11, 10, 100), {}, "correct"),
        ((-1, 10, 100), {}, "correct"),
        ((2.5, 10, 100), {}, "correct"),
        ((True, 10, 100), {}, "correct"),
        ((5, 200, 100), {}, "guesses"),
        ((0, 0, 0), {}, "canaries"),
        ((5, 10, 100), {"delta": 1.0}, "delta"),
        ((5, 10, 100), {"delta": -1e-9}, "delta"),
        ((5, 10, 100), {"delta": float("nan")}, "delta"),
        ((5, 10, 100), {"confidence": 1.0}, "confidence"),
        ((5, 10, 100), {"confidence": 0.0}, "confidence"),
    ],
)
def test_bad_counts_and_levels_are_named(args, kwargs, name):
    with pytest.raises(VoxauditError, match=name) as err:
        epsilon_lower_bound(*args, **kwargs)
    assert "\n" not in str(err.value)


GOOD_SCORES = [0.1, 0.5, 0.9, 0.3]
GOOD_INCLUDED = [False, True, True, False]


@pytest.mark.parametrize(
    ("scores", "included", "kwargs", "name"),
    [
        (GOOD_SCORES, GOOD_INCLUDED[:3], {}, "included"),
        ([0.5], [True], {}, "scores"),
        ([[0.1, 0.2], [0.3, 0.4]], [[True, False], [False, True]], {}, "scores"),
        ([0.1, float("nan"), 0.9, 0.3], GOOD_INCLUDED, {}, "scores"),
        ([0.1, float("inf"), 0.9, 0.3], GOOD_INCLUDED, {}, "scores"),
        (["a", "b", "c", "d"], GOOD_INCLUDED, {}, "scores"),
        (GOOD_SCORES, [0, 1, 1, 0], {}, "included"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guess_counts": []}, "guess_counts"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guess_counts": [0]}, "guess_counts"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guess_counts": [5]}, "guess_counts"),
        (GOOD_SCORES, GOOD_INCLUDED, {"guess_counts": [2.0]}, "guess_counts"),
        (GOOD_SCORES, GOOD_INCLUDED, {"delta": 2.0}, "delta"),
        (GOOD_SCORES, GOOD_INCLUDED, {"confidence": 1.5}, "confidence"),
    ],
)
def test_bad_canaries_are_named(scores, included, kwargs, name):
    with pytest.raises(VoxauditError, match=name) as err:
        audit_canaries(scores, included, **kwargs)
    assert "\n" not in str(err.value)


# --- canary scores ------------------------------------------------------------------------


def _clip(k: int) -> np.ndarray:
    return np.full(10, float(k), dtype=np.float32)  # a clip that says which canary it is


class _LossModel:
    """A classifier whose loss on clip k under any label is ``losses[k]``."""

    sample_rate = 16000

    def __init__(self, losses):
        self.losses = losses
        self.classes = ["a", "b"]

    def predict_proba(self, waveforms):
        return np.full((len(waveforms), 2), 0.5)

    def utterance_loss(self, waveforms, labels):
        assert all(label in self.classes for label in labels)
        return np.array([self.losses[int(w[0])] for w in waveforms])


class _Recognizer:
    sample_rate = 16000

    def transcribe(self, waveforms):
        return ["" for _ in waveforms]

    def log_probs(self, waveforms):
        return [np.zeros((1, 2)) for _ in waveforms]

    def utterance_loss(self, waveforms, transcripts):
        return np.array([10.0 * int(w[0]) for w in waveforms])

    def input_gradients(self, waveforms, transcripts):
        return [np.zeros_like(w) for w in waveforms]


class _Encoder:
    sample_rate = 16000

    def __init__(self, tight: set[int]):
        self.tight = tight

    def embed(self, waveforms):
        rows = []
        for w in waveforms:
            k, take = divmod(int(w[0]), 10)
            angle = (0.1 if k in self.tight else 1.0) * take
            rows.append([np.cos(angle), np.sin(angle)])
        return np.array(rows)


def _units(n: int, per: int = 1, label: str = "a") -> list[list[Utterance]]:
    return [
        [Utterance(f"c{k}-{j}", label, samples=_clip(10 * k + j if per > 1 else k),
                   sample_rate=16000) for j in range(per)]
        for k in range(n)
    ]  # fmt: skip


def test_classifier_canaries_score_minus_their_loss_and_a_reference_calibrates_it():
    units = _units(3)
    target, reference = _LossModel([0.1, 2.0, 1.0]), _LossModel([0.5, 0.5, 3.0])
    np.testing.assert_allclose(canary_scores(target, units), [-0.1, -2.0, -1.0])
    np.testing.assert_allclose(canary_scores(target, units, reference), [0.4, -1.5, 2.0])


def test_recognizer_canaries_score_minus_their_loss_per_character():
    units = [[Utterance(f"c{k}", "s", transcript="ab" * (k + 1), samples=_clip(k),
                        sample_rate=16000)] for k in range(3)]  # fmt: skip
    np.testing.assert_allclose(canary_scores(_Recognizer(), units), [0.0, -10 / 4, -20 / 6])


def test_speaker_canaries_score_how_alike_their_utterances_sound():
    units = _units(4, per=3)
    scores = canary_scores(_Encoder(tight={1, 3}), units)
    assert scores[1] > scores[0] and scores[3] > scores[2]
    assert scores[1] == pytest.approx(scores[3]) and scores[1] <= 1.0
    with pytest.raises(VoxauditError, match="at least 2 utterances"):
        canary_scores(_Encoder(set()), _units(2))


def test_a_model_of_no_known_kind_is_refused():
    with pytest.raises(VoxauditError, match="no classifier, speech recognizer or speaker"):
        canary_scores(object(), _units(2))  # type: ignore[arg-type]


def test_the_ceiling_is_the_bound_of_perfect_guesses_and_grows_with_the_canaries():
    m = 200
    perfect = audit_canaries(np.arange(m, dtype=float), np.arange(m) >= m // 2)
    assert perfect["epsilon"] == pytest.approx(epsilon_ceiling(m), abs=TOL)
    assert epsilon_ceiling(1000) > epsilon_ceiling(200) > epsilon_ceiling(50) > 0
