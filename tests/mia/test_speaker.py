"""Per-speaker aggregation, subsampling and membership."""

from __future__ import annotations

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.speaker import aggregate_by_speaker, speaker_membership, subsample_per_speaker
from voxaudit.mia.table import FeatureTable


def utterances() -> FeatureTable:
    """Speaker b first, with four utterances; a with one; c with two."""
    return FeatureTable(
        ids=["b1", "a1", "b2", "c1", "b3", "c2", "b4"],
        speakers=["b", "a", "b", "c", "b", "c", "b"],
        columns=["loss", "wer"],
        families=["loss", "transcript"],
        values=[[1.0, 0.5], [7.0, 0.0], [2.0, 0.25], [3.0, 1.0], [4.0, 0.0], [5.0, 0.5], [8.0, 1]],
    )


def test_aggregate_by_speaker_matches_hand_computed_statistics():
    table = utterances()
    scores = {"lira": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])}
    agg = aggregate_by_speaker(table, scores)
    assert agg.ids == agg.speakers == ("b", "a", "c")
    stats = ("mean", "std", "min", "q25", "median", "q75", "max")
    assert agg.columns == (
        *(f"loss_{s}" for s in stats),
        *(f"wer_{s}" for s in stats),
        *(f"lira_{s}" for s in stats),
        "n_utterances",
    )
    assert agg.families == ("loss",) * 7 + ("transcript",) * 7 + ("aggregate",) * 8

    b, a, c = agg.values
    # Speaker b's losses are 1, 2, 4, 8: linear-interpolation quartiles at 1.75 and 5.
    b_loss = dict(zip(stats, b[:7], strict=True))
    assert b_loss == pytest.approx(
        {
            "mean": 3.75,
            "std": np.sqrt((2.75**2 + 1.75**2 + 0.25**2 + 4.25**2) / 4),
            "min": 1.0,
            "q25": 1.75,
            "median": 3.0,
            "q75": 5.0,
            "max": 8.0,
        }
    )
    assert b[-1] == 4
    assert agg.column("lira_mean")[0] == pytest.approx((0.1 + 0.3 + 0.5 + 0.7) / 4)
    # One utterance: every statistic is the value itself, the std 0.
    assert a[:7].tolist() == [7.0, 0.0, 7.0, 7.0, 7.0, 7.0, 7.0]
    assert a[-1] == 1
    assert agg.column("wer_q75")[2] == pytest.approx(0.875)
    assert c[-1] == 2


def test_aggregate_by_speaker_chosen_statistics_and_errors():
    table = utterances()
    agg = aggregate_by_speaker(table, statistics=("max",))
    assert agg.columns == ("loss_max", "wer_max", "n_utterances")
    np.testing.assert_array_equal(agg.column("loss_max"), [8.0, 7.0, 5.0])
    with pytest.raises(VoxauditError, match=r"unknown or no statistic.*mode"):
        aggregate_by_speaker(table, statistics=("mean", "mode"))
    with pytest.raises(VoxauditError, match="scores 'lira' has shape"):
        aggregate_by_speaker(table, {"lira": np.zeros(3)})


def test_subsample_per_speaker_caps_rows_reproducibly():
    rng = np.random.default_rng(0)
    speakers = [f"s{i}" for i in rng.integers(0, 10, 300)]
    table = FeatureTable(
        ids=[f"u{i}" for i in range(300)],
        speakers=speakers,
        columns=["loss"],
        families=["loss"],
        values=rng.normal(size=(300, 1)),
    )
    two = subsample_per_speaker(table, 2, seed=1)
    assert two.ids == subsample_per_speaker(table, 2, seed=1).ids
    assert two.ids != subsample_per_speaker(table, 2, seed=2).ids
    assert sorted(set(two.speakers)) == sorted(set(speakers))
    assert max(two.speakers.count(s) for s in set(speakers)) == 2
    # Rows keep table order, and their values.
    order = [table.ids.index(i) for i in two.ids]
    assert order == sorted(order)
    np.testing.assert_array_equal(two.values, table.values[order])
    # The draws are nested across k.
    five = subsample_per_speaker(table, 5, seed=1)
    assert set(two.ids) <= set(five.ids)
    assert len(five) == 5 * 10


def test_subsample_per_speaker_keeps_small_speakers_whole():
    table = utterances()
    one = subsample_per_speaker(table, 1)
    assert sorted(one.speakers) == ["a", "b", "c"]
    assert "a1" in one.ids
    three = subsample_per_speaker(table, 3)
    assert three.speakers.count("b") == 3
    assert {"a1", "c1", "c2"} <= set(three.ids)
    assert subsample_per_speaker(table, 10).ids == table.ids
    with pytest.raises(VoxauditError, match="at least 1"):
        subsample_per_speaker(table, 0)


def test_speaker_membership():
    table = utterances()
    is_member = np.array([True, False, True, False, True, False, True])
    np.testing.assert_array_equal(speaker_membership(table, is_member), [True, False, False])
    is_member[3] = True
    with pytest.raises(VoxauditError, match="speaker 'c' has both"):
        speaker_membership(table, is_member)
    with pytest.raises(VoxauditError, match="shape"):
        speaker_membership(table, is_member[:3])
