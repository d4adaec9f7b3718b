"""AttackData: one model's feature table and the per-row extras some attacks need."""

from __future__ import annotations

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData, as_attack_data
from voxaudit.mia.table import FeatureTable


def table(n: int = 5) -> FeatureTable:
    ids = [f"u{i}" for i in range(n)]
    return FeatureTable(ids, ["s"] * n, ["loss"], ["loss"], np.arange(n, dtype=float)[:, None])


def test_attack_data_holds_a_table_and_per_row_arrays():
    reference = np.ones((3, 5))
    reference_in = np.zeros((3, 5), dtype=bool)
    data = AttackData(
        table(),
        classes=["a", "b", "a", "b", "a"],
        groups=np.arange(5),
        reference=reference,
        reference_in=reference_in,
        population=np.array([False, False, False, True, True]),
    )
    assert len(data) == 5
    assert data.ids == ("u0", "u1", "u2", "u3", "u4")
    assert data.classes.tolist() == ["a", "b", "a", "b", "a"]
    assert data.reference.dtype == np.float64
    # Copies, read-only: the data cannot change under a fitted attack.
    reference[0, 0] = 7.0
    assert data.reference[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        data.groups[0] = 3
    bare = AttackData(table())
    assert bare.classes is bare.groups is bare.reference is bare.population is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"classes": ["a", "b"]}, r"classes has shape \(2,\); expected \(5,\)"),
        ({"groups": np.zeros((5, 1))}, r"groups has shape \(5, 1\)"),
        (
            {"reference": np.ones(5)},
            r"reference has shape \(5,\); expected \(reference models, 5\)",
        ),
        ({"reference": np.ones((0, 5))}, "at least one model"),
        ({"reference": np.ones((2, 4))}, r"reference has shape \(2, 4\)"),
        ({"reference_in": np.zeros((2, 5), dtype=bool)}, "reference_in needs reference"),
        (
            {"reference": np.ones((2, 5)), "reference_in": np.zeros((2, 5))},
            r"reference_in must be a bool array of shape \(2, 5\)",
        ),
        (
            {"reference": np.ones((2, 5)), "reference_in": np.zeros((3, 5), dtype=bool)},
            "like reference",
        ),
    ],
)
def test_attack_data_refuses_arrays_of_the_wrong_shape(extra, message):
    with pytest.raises(VoxauditError, match=message):
        AttackData(table(), **extra)


def test_attack_data_population_as_mask_or_indices():
    mask = np.array([False, True, False, True, False])
    np.testing.assert_array_equal(AttackData(table(), population=[1, 3]).population, mask)
    np.testing.assert_array_equal(AttackData(table(), population=mask).population, mask)
    with pytest.raises(VoxauditError, match="mask of shape"):
        AttackData(table(), population=mask[:-1])
    # A subset of the rows may hold none of the population.
    assert not AttackData(table(), population=[]).population.any()
    assert not AttackData(table(), population=np.zeros(5, dtype=bool)).population.any()
    with pytest.raises(VoxauditError, match=r"lie in \[0, 5\)"):
        AttackData(table(), population=[0, 5])
    with pytest.raises(VoxauditError, match="index array"):
        AttackData(table(), population=[0.5])
    with pytest.raises(VoxauditError, match="1-D"):
        AttackData(table(), population=[[0, 1]])


def test_as_attack_data_wraps_a_table_and_passes_attack_data_through():
    data = AttackData(table(), groups=np.arange(5))
    assert as_attack_data(data) is data
    wrapped = as_attack_data(table())
    assert isinstance(wrapped, AttackData) and wrapped.groups is None
    with pytest.raises(VoxauditError, match="not ndarray"):
        as_attack_data(np.zeros((5, 1)))
    with pytest.raises(VoxauditError, match="table must be a FeatureTable"):
        AttackData(np.zeros((5, 1)))


def test_take_keeps_each_rows_extras_and_reference_columns():
    reference = np.arange(15, dtype=float).reshape(3, 5)
    data = AttackData(
        table(),
        classes=["a", "b", "c", "d", "e"],
        groups=np.arange(5),
        reference=reference,
        reference_in=reference > 6,
        population=np.array([False, True, False, True, False]),
    )
    part = data.take(np.array([3, 1]))
    assert part.ids == ("u3", "u1")
    assert part.table.column("loss").tolist() == [3.0, 1.0]
    assert part.classes.tolist() == ["d", "b"] and part.groups.tolist() == [3, 1]
    assert part.reference.tolist() == reference[:, [3, 1]].tolist()
    assert part.reference_in.tolist() == (reference[:, [3, 1]] > 6).tolist()
    assert part.population.tolist() == [True, True]
