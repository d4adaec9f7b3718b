"""Classifier membership features: values on hand-made outputs, the boundary on a known toy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.classifier_features import (
    LOSS_CAP,
    ClassifierFeatures,
    boundary_snr,
    modified_entropy,
    sorted_probabilities,
)
from voxaudit.models.access import Access

TABLE = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])


class TableClassifier:
    """Answers row ``round(median(wave)) - 1`` of ``TABLE``: robust to mild noise."""

    sample_rate = 16000
    classes = ("a", "b", "c")

    def predict_proba(self, waveforms):
        return np.array([TABLE[round(float(np.median(w))) - 1] for w in waveforms])

    def utterance_loss(self, waveforms, labels):
        rows = self.predict_proba(waveforms)
        return np.array(
            [-math.log(r[self.classes.index(y)]) for r, y in zip(rows, labels, strict=True)]
        )


class SignClassifier:
    """ "pos" (with certainty) when at least 90% of the samples are positive, else "neg".

    A constant waveform of +1 with Gaussian noise at S dB SNR has ``Phi(10^(S/20))`` of its
    samples positive: at least 0.9 exactly above ``20 log10(1.2816) = 2.155`` dB.
    """

    sample_rate = 16000
    classes = ("neg", "pos")

    def predict_proba(self, waveforms):
        positive = np.array([np.mean(np.asarray(w) > 0) >= 0.9 for w in waveforms])
        return np.column_stack([~positive, positive]).astype(float)

    def utterance_loss(self, waveforms, labels):
        raise AssertionError("not needed at black box")


def _waves(values, n=20000):
    return [np.full(n, v, dtype=np.float32) for v in values]


def _extract(model, values, labels, **settings):
    ids = [f"u{k}" for k in range(len(values))]
    return ClassifierFeatures(**settings).extract(
        model, _waves(values), labels, ids, ["s"] * len(ids), progress=False
    )


def test_grey_box_values_match_a_hand_computation():
    table = _extract(
        Access(TableClassifier(), "grey"), [1, 2, 3, 1], ["a", "c", "a", "c"],
        top_k=4, snrs_db=(30.0,), draws=2,
    )  # fmt: skip
    ln = math.log
    row = {c: table.column(c) for c in table.columns}
    # Sorted vectors, zero-padded past the three classes.
    np.testing.assert_allclose(table.select(["probability"]).values[:3], [
        [0.7, 0.2, 0.1, 0.0], [0.8, 0.1, 0.1, 0.0], [0.5, 0.25, 0.25, 0.0],
    ])  # fmt: skip
    np.testing.assert_array_equal(row["correct"], [1, 1, 0, 0])
    np.testing.assert_allclose(row["confidence"], [0.7, 0.8, 0.25, 0.1])
    np.testing.assert_allclose(row["loss"], [-ln(0.7), -ln(0.8), -ln(0.25), -ln(0.1)])
    entropy_0 = -(0.7 * ln(0.7) + 0.2 * ln(0.2) + 0.1 * ln(0.1))
    np.testing.assert_allclose(row["entropy"][[0, 3]], [entropy_0, entropy_0])
    np.testing.assert_allclose(row["entropy"][2], -(2 * 0.25 * ln(0.25) + 0.5 * ln(0.5)))
    # Modified entropy: -(1 - p_y) log p_y - sum over the other classes of p log(1 - p).
    right = -0.3 * ln(0.7) - 0.2 * ln(0.8) - 0.1 * ln(0.9)
    wrong = -0.9 * ln(0.1) - 0.7 * ln(0.3) - 0.2 * ln(0.8)
    np.testing.assert_allclose(row["modified_entropy"][[0, 3]], [right, wrong])
    assert row["modified_entropy"][0] < row["entropy"][0] < row["modified_entropy"][3]
    # 30 dB of noise does not move the median: every copy keeps its clean answer.
    np.testing.assert_array_equal(row["noise_snr30_correct"], [1, 1, 0, 0])


def test_a_label_the_model_does_not_know_is_improbable_and_wrong():
    probabilities = TABLE[:1]
    assert sorted_probabilities(probabilities, 2).tolist() == [[0.7, 0.2]]
    unknown = modified_entropy(probabilities, np.array([-1]), np.array([LOSS_CAP]))
    # p_y = 0: (1 - 0) * LOSS_CAP, plus every class as a wrong one.
    expected = LOSS_CAP - sum(p * math.log(1 - p) for p in TABLE[0])
    np.testing.assert_allclose(unknown, [expected])


def test_black_box_sees_labels_only_and_the_boundary_sits_where_the_toy_flips():
    model = Access(SignClassifier(), "black")
    table = _extract(model, [1, -1, 1, -1], ["pos", "pos", "neg", "neg"], draws=4)
    assert set(table.families) == {"prediction", "noise"}
    np.testing.assert_array_equal(table.column("correct"), [1, 0, 0, 1])
    distance = table.column("boundary_snr_db")
    # Right down to 5 dB, wrong from 0 dB: interpolated halfway, around the exact 2.155 dB.
    assert distance[0] == pytest.approx(2.5)
    # Wrong without noise: one step (10 dB) above the grid; never flipping: one step below.
    assert distance[1] == distance[2] == pytest.approx(40.0)
    assert distance[3] == pytest.approx(-10.0)
    np.testing.assert_array_equal(table.column("noise_snr5_correct"), [1, 0, 0, 1])
    np.testing.assert_array_equal(table.column("noise_snr0_correct"), [0, 0, 1, 1])


def test_boundary_interpolates_partial_shares():
    kept = np.array([[1.0, 0.75, 0.25], [0.5, 0.0, 0.0]])
    out = boundary_snr([20.0, 10.0, 0.0], np.array([True, True]), kept)
    # 0.75 at 10 dB, 0.25 at 0 dB: one half at 5 dB; 0.5 at once: the first SNR.
    np.testing.assert_allclose(out, [5.0, 20.0])


def test_features_do_not_depend_on_batching_or_order_and_resume_from_the_cache(tmp_path):
    model = Access(SignClassifier(), "black")
    values, labels = [1, -1, 1, 1, -1], ["pos", "neg", "pos", "pos", "neg"]
    waves = [w + 0.3 * np.sin(np.arange(w.size) * (k + 1)) for k, w in enumerate(_waves(values))]
    ids = [f"u{k}" for k in range(5)]
    whole = ClassifierFeatures(batch_size=5, draws=3).extract(
        model, waves, labels, ids, ids, cache_dir=tmp_path, progress=False
    )
    order = [3, 0, 4, 1, 2]
    shuffled = ClassifierFeatures(batch_size=2, draws=3).extract(
        model, [waves[k] for k in order], [labels[k] for k in order], [ids[k] for k in order],
        [ids[k] for k in order], progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(shuffled.rows(whole.ids).values, whole.values)
    queries = model.queries
    again = ClassifierFeatures(batch_size=2, draws=3).extract(
        model, waves, labels, ids, ids, cache_dir=tmp_path, progress=False
    )
    assert model.queries == queries  # all read back from the cache
    np.testing.assert_array_equal(again.values, whole.values)
    with pytest.raises(VoxauditError, match="draws=3, not 4"):
        ClassifierFeatures(draws=4).extract(
            model, waves, labels, ids, ids, cache_dir=tmp_path, progress=False
        )
    with pytest.raises(VoxauditError, match=r"black-box .* not grey-box"):
        ClassifierFeatures(draws=3).extract(
            Access(SignClassifier(), "grey"), waves, labels, ids, ids, cache_dir=tmp_path,
            progress=False,
        )  # fmt: skip


def test_bad_inputs_are_named():
    model = Access(SignClassifier(), "black")
    with pytest.raises(VoxauditError, match="2 waveforms, 1 labels"):
        ClassifierFeatures().extract(model, _waves([1, 1]), ["pos"], ["a", "b"], ["s", "s"])
    with pytest.raises(VoxauditError, match="'a' appears twice"):
        ClassifierFeatures().extract(model, _waves([1, 1]), ["pos"] * 2, ["a", "a"], ["s"] * 2)
    with pytest.raises(VoxauditError, match="draws must be at least 1"):
        ClassifierFeatures(draws=0)
    with pytest.raises(VoxauditError, match="neither predict nor predict_proba"):
        ClassifierFeatures().extract(object(), _waves([1]), ["pos"], ["a"], ["s"])
