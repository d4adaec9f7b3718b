"""Which calibrated attacks a set of reference models can fit."""

import numpy as np

from voxaudit.mia.families.tabular import lira_variants


def _halves(n_models: int, n_utterances: int = 6) -> np.ndarray:
    """Each utterance IN for exactly half the models."""
    return np.array([[(m + u) % n_models < n_models // 2 for u in range(n_utterances)]
                     for m in range(n_models)])  # fmt: skip


def _variants(reference_in: np.ndarray) -> dict[str, bool]:
    variants, _ = lira_variants(reference_in)
    return {name: lira.fixed_variance for name, lira in variants}


def test_references_that_never_saw_the_candidates_fit_offline_lira_only():
    assert _variants(np.zeros((2, 6), dtype=bool)) == {"LiRA offline, fixed variance": True}
    assert lira_variants(np.zeros((2, 6), dtype=bool))[1] == []


def test_halves_over_the_candidates_add_online_lira_with_per_utterance_variance_from_8():
    offline, pooled = "LiRA offline, fixed variance", "LiRA online, fixed variance"
    assert _variants(_halves(4)) == {offline: True, pooled: True}
    assert _variants(_halves(8)) == {offline: True, pooled: True, "LiRA online": False}
    # One utterance with a single IN reference: its variance cannot be its own, so pooled only.
    uneven = _halves(8)
    uneven[:, 0] = [True] + [False] * 7
    assert _variants(uneven) == {offline: True, pooled: True}


def test_lira_is_left_out_with_the_reason_where_no_variance_can_be_pooled():
    # One disjoint shadow, or two halves: every utterance has a single OUT reference.
    for reference_in in (np.zeros((1, 6), dtype=bool), _halves(2)):
        variants, left_out = lira_variants(reference_in)
        assert variants == []
        assert left_out[0].startswith("LiRA offline: it needs")
    assert "at least 4 shadow models" in lira_variants(_halves(2))[1][1]
