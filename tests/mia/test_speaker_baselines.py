"""Speaker-level MIA baselines, each on a toy case computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.speaker_baselines import (
    AugmentedViewSimilarity,
    CentroidLoss,
    PairwiseSimilarity,
    ProbeReferenceSimilarity,
    augmented_views,
)


def test_lrl_mia_is_the_mean_pairwise_cosine():
    table = (
        PairwiseSimilarity()
        .fit()
        .transform(
            {"a": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), "b": np.array([[1.0, 0], [2, 0]])}
        )
    )
    assert table.ids == ("a", "b")
    assert table.column("mean_pairwise_cosine") == pytest.approx([1 / 3, 1.0])
    with pytest.raises(VoxauditError, match="'c'"):
        PairwiseSimilarity().transform({"c": np.array([[1.0, 0.0]])})


def test_centroid_loss_by_hand_and_lower_for_a_tighter_speaker():
    loss = CentroidLoss().fit([np.array([[0.0, 1.0]])])
    table = loss.transform({"tight": np.array([[1.0, 0.0], [1.0, 0.0]])})
    # Own logit 10 * 1 - 5, imposter 10 * 0 - 5: loss log(e^5 + e^-5) - 5.
    assert table.column("ge2e_loss")[0] == pytest.approx(math.log1p(math.exp(-10)))
    spread = loss.transform({"spread": np.array([[1.0, 0.0], [0.6, 0.8]])})
    assert spread.column("ge2e_loss")[0] > table.column("ge2e_loss")[0]
    with pytest.raises(VoxauditError, match="imposter"):
        CentroidLoss().fit([])


def test_encodermi_sorts_view_similarities_per_voice_and_averages_over_voices():
    views = np.array(
        [
            [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]],  # pair cosines 1, 0, 0
            [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],  # pair cosines 0, 0, 1
        ]
    )
    table = AugmentedViewSimilarity().transform({"spk": views})
    assert table.columns == ("view_pair_rank_0", "view_pair_rank_1", "view_pair_rank_2",
                             "view_similarity_mean")  # fmt: skip
    assert table.values[0] == pytest.approx([1.0, 0.0, 0.0, 1 / 3])
    with pytest.raises(VoxauditError, match="views >= 2"):
        AugmentedViewSimilarity().transform({"spk": views[:, :1]})


def test_faceauditor_sorts_each_probe_and_the_probes():
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])  # 2 references, 2 probes
    table = ProbeReferenceSimilarity().transform({"spk": e})
    # Probe (1, 0): [1, 0]; probe (0.6, 0.8): [0.8, 0.6], first for its higher mean.
    assert table.values[0] == pytest.approx([0.8, 0.6, 1.0, 0.0])
    assert table.columns[0] == "probe_0_reference_rank_0"
    with pytest.raises(VoxauditError, match="leave no probe"):
        ProbeReferenceSimilarity(references=4).transform({"spk": e})


def test_augmented_views_are_seeded_distinct_and_near_the_voice_length():
    wave = np.sin(np.linspace(0, 400, 16000)).astype(np.float32)
    first = augmented_views(wave, 16000, 3, seed=1)
    again = augmented_views(wave, 16000, 3, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0][:1000], first[1][:1000])
    for view in first:
        assert 0.7 * 16000 / 1.1 - 1 <= len(view) <= 16000 / 0.9 + 1
        assert view.dtype == np.float32
