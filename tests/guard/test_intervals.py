"""Wilson and bootstrap intervals for the evaluation's rates and medians."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxaudit.errors import VoxauditError
from voxaudit.guard.intervals import bootstrap_interval, wilson
from voxaudit.mia.metrics import Estimate


def test_wilson_matches_the_closed_form():
    k, n, z = 7, 40, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    interval = wilson(k, n)
    assert interval.value == p
    assert (interval.low, interval.high) == pytest.approx((centre - half, centre + half))


def test_wilson_at_zero_of_n_is_z_squared_over_n_plus_z_squared():
    z2 = 1.959963984540054**2
    interval = wilson(0, 3059)
    assert interval.low == 0.0
    assert interval.high == pytest.approx(z2 / (3059 + z2))


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 5000), data=st.data())
def test_wilson_contains_its_estimate_within_zero_and_one(n, data):
    k = data.draw(st.integers(0, n))
    interval = wilson(k, n)
    assert 0.0 <= interval.low <= interval.value <= interval.high <= 1.0


def test_wilson_refuses_impossible_counts_and_has_no_estimate_without_trials():
    with pytest.raises(VoxauditError):
        wilson(5, 3)
    assert math.isnan(wilson(0, 0).value)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 1000), min_size=2, max_size=40))
def test_the_bootstrap_interval_holds_the_median(values):
    interval = bootstrap_interval(values)
    assert interval.value == np.median(values)
    assert min(values) <= interval.low <= interval.value <= interval.high <= max(values)


def test_the_bootstrap_is_seeded_and_degenerate_cases_say_so():
    values = [3, 3, 4, 9, 27, 3, 76]
    assert bootstrap_interval(values, seed=1) == bootstrap_interval(values, seed=1)
    assert bootstrap_interval([3, 3, 3]) == Estimate(3.0, 3.0, 3.0)
    single = bootstrap_interval([5])
    assert single.value == 5 and math.isnan(single.low)
    assert bootstrap_interval([]).format() == "-"
    assert bootstrap_interval([0.5, 1.0], np.mean).format(".0%").startswith("75% [")
