"""95% confidence intervals for the guard's evaluation figures.

Rates of independent yes/no outcomes (a benign query flagged, an attack run that succeeded or
was detected) get Wilson score intervals, which stay inside [0, 1] and are sensible at 0 of n.
Statistics of a few attack runs (the median of queries to detection, the mean DSR, which is
an average of per-run ratios rather than a count of trials) get percentile bootstrap intervals
over the runs. Both are ``Estimate``s, as the membership metrics' bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import binomtest

from voxaudit.errors import VoxauditError
from voxaudit.mia.metrics import Estimate


def wilson(successes: int, trials: int, level: float = 0.95) -> Estimate:
    """``successes / trials`` with its Wilson score interval."""
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise VoxauditError(f"wilson: need 0 <= successes <= trials; got {successes}/{trials}")
    if trials == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    ci = binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return Estimate(successes / trials, float(ci.low), float(ci.high))


def bootstrap_interval(
    values: Sequence[float],
    statistic: Callable[..., np.ndarray] = np.median,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """``statistic(values)`` with a percentile bootstrap interval over the values.

    ``statistic`` takes an array and an ``axis`` (``np.median``, ``np.mean``). One value has
    no interval (NaN bounds); no value, no estimate.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    value = float(statistic(data, axis=-1))
    if data.size == 1:
        return Estimate(value, float("nan"), float("nan"))
    draws = np.random.default_rng(seed).integers(0, data.size, size=(resamples, data.size))
    estimates = statistic(data[draws], axis=-1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return Estimate(value, float(low), float(high))
