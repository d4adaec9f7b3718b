"""Attack metrics with stratified bootstrap 95% intervals.

A membership score is higher when the attack finds an example more likely to be a member.
Hard predictions, when given, are the attack's own decisions: its threshold was chosen on shadow
data, so accuracy, precision and recall are measured for those decisions and never re-tuned on
the evaluated data.  ``advantage`` (the best TPR - FPR over all thresholds) is the one exception
by definition, so it is an optimistic upper bound: it sits above zero even for an attack with no
signal, and is not the statistic to check a null control with (use AUROC and :func:`is_chance`).

Intervals are percentile intervals over resamples drawn with replacement within members and
within non-members separately, so every resample keeps the evaluated class balance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from voxaudit.errors import VoxauditError

# Bootstrap statistics are computed for this many (resample x example) cells at a time.
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A point estimate on the full data and its bootstrap 95% interval (NaN when undefined)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def contains(self, x: float) -> bool:
        """Whether ``x`` lies in the interval (never, for an undefined interval)."""
        return bool(self.low <= x <= self.high)

    def format(self, spec: str = ".3f") -> str:
        """``value [low, high]`` with one format spec for all three (``-`` when undefined)."""
        if math.isnan(self.value):
            return "-"
        if math.isnan(self.low):
            return f"{self.value:{spec}}"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def tpr_key(fpr: float) -> str:
    """The metric name of the TPR at this FPR: 0.001 -> ``tpr_at_0.1%_fpr``."""
    return f"tpr_at_{fpr * 100:g}%_fpr"


def roc_curve(scores: Sequence[float], is_member: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """Every operating point ``(fpr, tpr)``, from (0, 0) to (1, 1)."""
    scores, is_member, _ = _checked(scores, is_member)
    # Collinear points are real operating points too; dropping them would lower a TPR at low FPR.
    fpr, tpr, _ = skm.roc_curve(is_member, scores, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(scores: Sequence[float], is_member: Sequence[bool], fpr: float) -> float:
    """The highest TPR among operating points with FPR <= ``fpr`` (Carlini et al., LiRA).

    Only meaningful when ``n_nonmembers * fpr >= 1``: with fewer non-members the only point
    allowed is the one with no false positive at all, a stricter criterion than the one named.
    :func:`attack_metrics` reports NaN in that case.
    """
    fprs, tprs = roc_curve(scores, is_member)
    # A tolerance, so that 1/1000 counts as within 0.1% despite rounding.
    return float(tprs[fprs <= fpr * (1 + 1e-9)].max())


def attack_metrics(
    scores: Sequence[float],
    is_member: Sequence[bool],
    predictions: Sequence[bool] | None = None,
    *,
    fprs: Sequence[float] = (0.001, 0.01),
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Estimate]:
    """AUROC, advantage and TPR at each FPR, plus accuracy, precision and recall of predictions.

    A TPR at an FPR the non-members cannot resolve (``n_nonmembers * fpr < 1``) is NaN, and so
    is precision when the attack predicts no member (in the data or in some resample).
    """
    scores, is_member, predictions = _checked(scores, is_member, predictions)
    if n_bootstrap < 1:
        raise VoxauditError(f"attack metrics: n_bootstrap must be at least 1, got {n_bootstrap}")
    n_nonmembers = int((~is_member).sum())
    point = _point_statistics(scores, is_member, predictions, fprs)
    samples = _bootstrap_statistics(scores, is_member, predictions, fprs, n_bootstrap, seed)
    estimates = {}
    for name, value in point.items():
        low, high = np.percentile(samples[name], [2.5, 97.5])
        estimates[name] = Estimate(value, float(low), float(high))
    for fpr in fprs:
        if n_nonmembers * fpr < 1:
            estimates[tpr_key(fpr)] = Estimate(math.nan, math.nan, math.nan)
    return estimates


def is_chance(estimate: Estimate, chance: float = 0.5) -> bool:
    """Whether the interval contains chance: the null control's AUROC must."""
    return estimate.contains(chance)


def _checked(
    scores: Sequence[float],
    is_member: Sequence[bool],
    predictions: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=np.float64)
    is_member = _as_bool(is_member, "membership labels")
    if scores.ndim != 1 or len(scores) != len(is_member):
        raise VoxauditError(
            f"attack metrics: {scores.size} scores but {len(is_member)} membership labels"
        )
    if predictions is not None:
        predictions = _as_bool(predictions, "predictions")
        if len(predictions) != len(scores):
            raise VoxauditError(
                f"attack metrics: {len(predictions)} predictions for {len(scores)} scores"
            )
    bad = int((~np.isfinite(scores)).sum())
    if bad:
        raise VoxauditError(
            f"attack metrics: {bad} of {len(scores)} scores are not finite (NaN or infinite)"
        )
    n_members = int(is_member.sum())
    if n_members == 0 or n_members == len(is_member):
        raise VoxauditError(
            "attack metrics: need both members and non-members, got "
            f"{n_members} members and {len(is_member) - n_members} non-members"
        )
    return scores, is_member, predictions


def _as_bool(values: Sequence[bool], what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise VoxauditError(f"attack metrics: {what} must be one-dimensional")
    if array.dtype != bool and not np.isin(array, (0, 1)).all():
        raise VoxauditError(f"attack metrics: {what} must be booleans (or 0 and 1)")
    return array.astype(bool)


def _point_statistics(
    scores: np.ndarray,
    is_member: np.ndarray,
    predictions: np.ndarray | None,
    fprs: Sequence[float],
) -> dict[str, float]:
    fpr, tpr, _ = skm.roc_curve(is_member, scores, drop_intermediate=False)
    stats = {
        "auroc": float(skm.roc_auc_score(is_member, scores)),
        "advantage": float(np.max(tpr - fpr)),
    }
    for limit in fprs:
        stats[tpr_key(limit)] = float(tpr[fpr <= limit * (1 + 1e-9)].max())
    if predictions is not None:
        stats["accuracy"] = float(skm.accuracy_score(is_member, predictions))
        stats["precision"] = float(
            skm.precision_score(is_member, predictions, zero_division=np.nan)
        )
        stats["recall"] = float(skm.recall_score(is_member, predictions))
    return stats


def _bootstrap_statistics(
    scores: np.ndarray,
    is_member: np.ndarray,
    predictions: np.ndarray | None,
    fprs: Sequence[float],
    n_bootstrap: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each statistic over ``n_bootstrap`` stratified resamples, computed in chunks."""
    members = _Class(scores, is_member, predictions)
    nonmembers = _Class(scores, ~is_member, predictions)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // len(scores))
    parts = []
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        parts.append(
            _weighted_statistics(
                members, nonmembers, members.draw(rng, size), nonmembers.draw(rng, size), fprs
            )
        )
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class _Class:
    """The scores of one class in ascending order, with the predictions in the same order."""

    def __init__(self, scores: np.ndarray, mask: np.ndarray, predictions: np.ndarray | None):
        order = np.argsort(scores[mask], kind="stable")
        self.scores = scores[mask][order]
        self.predictions = None if predictions is None else predictions[mask][order]

    def __len__(self) -> int:
        return len(self.scores)

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` resamples with replacement, as counts: ``[b, i]`` draws of example i."""
        n = len(self)
        picks = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)

    def weight_below(self, weights: np.ndarray, thresholds: np.ndarray, side: str) -> np.ndarray:
        """``[b, k]``: the weight of examples below ``thresholds[k]`` (or at it, side "right")."""
        cumulative = np.zeros((len(weights), len(self) + 1))
        np.cumsum(weights, axis=1, out=cumulative[:, 1:])
        return cumulative[:, np.searchsorted(self.scores, thresholds, side=side)]

    def weight_at_least(self, weights: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """``[b, k]``: the weight of examples scoring at least ``thresholds[k]``."""
        # Every resample has as many draws as the class has examples.
        return len(self) - self.weight_below(weights, thresholds, "left")


def _weighted_statistics(
    members: _Class,
    nonmembers: _Class,
    member_weights: np.ndarray,
    nonmember_weights: np.ndarray,
    fprs: Sequence[float],
) -> dict[str, np.ndarray]:
    """The statistics of :func:`_point_statistics`, for each row of example weights.

    Resampling only reweights the examples, so a resample's ROC points are among those at the
    thresholds of the full data, and its AUROC counts the non-members below (and tied with) each
    member: both come from cumulative weights in score order, with no sort per resample.
    """
    n_members, n_nonmembers = len(members), len(nonmembers)
    lower = nonmembers.weight_below(nonmember_weights, members.scores, "left")
    tied = nonmembers.weight_below(nonmember_weights, members.scores, "right") - lower
    pairs = (member_weights * (lower + 0.5 * tied)).sum(axis=1)
    stats = {"auroc": pairs / (n_members * n_nonmembers)}

    thresholds = np.unique(np.concatenate([members.scores, nonmembers.scores]))
    true_positives = members.weight_at_least(member_weights, thresholds)
    false_positives = nonmembers.weight_at_least(nonmember_weights, thresholds)
    # The threshold above every score (no positives) is an operating point too, hence the 0.
    gain = true_positives / n_members - false_positives / n_nonmembers
    stats["advantage"] = np.maximum(gain.max(axis=1), 0.0)
    for limit in fprs:
        allowed = false_positives <= limit * n_nonmembers * (1 + 1e-9)
        stats[tpr_key(limit)] = np.where(allowed, true_positives, 0).max(axis=1) / n_members

    if members.predictions is not None:
        hits = member_weights @ members.predictions
        false_alarms = nonmember_weights @ nonmembers.predictions
        predicted = hits + false_alarms
        stats["accuracy"] = (hits + n_nonmembers - false_alarms) / (n_members + n_nonmembers)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats["precision"] = np.where(predicted > 0, hits / predicted, np.nan)
        stats["recall"] = hits / n_members
    return stats
