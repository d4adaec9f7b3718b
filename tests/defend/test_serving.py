"""Serve-time output defenses on hand-made probability tables and a fake model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

from voxaudit.defend.serving import (
    LabelOnly,
    MemGuard,
    PosteriorNoise,
    Rounding,
    TopK,
    defended,
)
from voxaudit.errors import VoxauditError
from voxaudit.models.access import Access


class FixedClassifier:
    """Answers each waveform with the probability row indexed by its first sample."""

    sample_rate = 16000

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.classes = ["a", "b", "c"]

    def predict_proba(self, waveforms):
        return self.table[[int(w[0]) for w in waveforms]]

    def utterance_loss(self, waveforms, labels):
        raise AssertionError("a defended model must not reach the clean loss")

    def input_gradients(self, waveforms, labels):
        raise AssertionError("unreachable")


class FixedEncoder:
    sample_rate = 16000

    def embed(self, waveforms):
        return np.array([[0.6, 0.8], [1.0, 0.0]])[: len(waveforms)]


TABLE = np.array([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8], [0.34, 0.33, 0.33]])
WAVES = [np.full(10, i, dtype=np.float32) for i in range(3)]

probability_rows = arrays(
    np.float64, st.tuples(st.integers(1, 8), st.integers(2, 6)),
    elements=st.floats(0.01, 1.0),
).map(lambda x: x / x.sum(axis=1, keepdims=True))  # fmt: skip


def test_top_k_keeps_the_largest_renormalized():
    np.testing.assert_allclose(
        TopK(2)(TABLE),
        [[7 / 9, 2 / 9, 0], [0, 0.15 / 0.95, 0.8 / 0.95], [0.34 / 0.67, 0.33 / 0.67, 0]],
    )
    np.testing.assert_array_equal(TopK(1)(TABLE), LabelOnly()(TABLE))


def test_rounding_and_label_only_by_hand():
    np.testing.assert_allclose(
        Rounding(1)(TABLE), [[0.7, 0.2, 0.1], [0.0, 0.2, 0.8], [0.3, 0.3, 0.3]]
    )
    np.testing.assert_array_equal(LabelOnly()(TABLE), [[1, 0, 0], [0, 0, 1], [1, 0, 0]])


@settings(max_examples=50, deadline=None)
@given(probability_rows, st.integers(1, 5), st.floats(0.0, 0.5))
def test_defenses_keep_the_predicted_class_and_a_distribution(probs, k, scale):
    # Ties make "the" predicted class ambiguous; break them so the property is well defined.
    probs = probs + np.arange(probs.shape[1]) * 1e-6
    probs /= probs.sum(axis=1, keepdims=True)
    for defense in (TopK(k), LabelOnly(), PosteriorNoise(scale, seed=1)):
        out = defense(probs)
        np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(out.sum(axis=1), 1.0)
        assert (out >= 0).all()


def test_posterior_noise_is_seeded_and_fresh_per_query():
    first, second = PosteriorNoise(0.1, seed=3), PosteriorNoise(0.1, seed=3)
    np.testing.assert_array_equal(first(TABLE), second(TABLE))
    assert not np.array_equal(first(TABLE), first(TABLE))


def test_memguard_brings_its_defenders_attack_to_chance_and_keeps_labels():
    rng = np.random.default_rng(0)
    n = 200
    confident = rng.dirichlet([30, 1, 1], n)  # members: the model is sure
    unsure = rng.dirichlet([4, 2, 2], n)  # non-members
    probs = np.concatenate([confident, unsure])
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    guard = MemGuard().fit(probs, is_member)
    before = roc_auc_score(is_member, guard.classifier_.decision_function(-np.sort(-probs)))
    out = guard(probs)
    after = roc_auc_score(is_member, guard.classifier_.decision_function(-np.sort(-out)))
    assert before > 0.9 and abs(after - 0.5) < 0.15
    np.testing.assert_array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert 0 < guard.distortion_ < 1.0


def test_memguard_must_be_fitted():
    with pytest.raises(VoxauditError, match="fitted"):
        MemGuard()(TABLE)


def test_defended_classifier_serves_defended_outputs_and_losses_only():
    model = defended(FixedClassifier(TABLE), LabelOnly())
    np.testing.assert_array_equal(model.predict_proba(WAVES), LabelOnly()(TABLE))
    losses = model.utterance_loss(WAVES, ["a", "b", "a"])
    assert losses[0] == 0 and losses[1] > 20 and losses[2] == 0
    access = Access(model, "white")
    assert access.predict(WAVES) == ["a", "c", "a"]
    assert not hasattr(access, "input_gradients")
    with pytest.raises(VoxauditError, match="not among"):
        model.utterance_loss(WAVES[:1], ["z"])


def test_defended_encoder_and_the_defenses_that_do_not_apply():
    encoder = defended(FixedEncoder(), Rounding(0))
    np.testing.assert_allclose(encoder.embed(WAVES[:2]), [[np.sqrt(0.5), np.sqrt(0.5)], [1, 0]])
    assert not hasattr(encoder, "predict_proba")
    with pytest.raises(VoxauditError, match="does not apply to embeddings"):
        defended(FixedEncoder(), TopK(1))

    class Recognizer:
        sample_rate = 16000

        def transcribe(self, waveforms):
            return [""] * len(waveforms)

    with pytest.raises(VoxauditError, match="black-box access"):
        defended(Recognizer(), LabelOnly())
