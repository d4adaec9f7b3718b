"""Attack metrics with stratified bootstrap 95% intervals, and the tests a verdict rests on.

A membership score is higher when the attack finds an example more likely to be a member.
Hard predictions, when given, are the attack's own decisions: its threshold was chosen on shadow
data, so accuracy, precision, recall and ``advantage`` (TPR - FPR of those decisions) are
measured for them and never re-tuned on the evaluated data.  Advantage is therefore negative as
often as positive for an attack with no signal, and its interval contains 0 for a null control.
(The best TPR - FPR over all thresholds, a common variant, is >= 0 by construction and so never
reported.)  Without predictions there is no advantage.

Intervals are percentile intervals over resamples drawn with replacement within members and
within non-members separately, so every resample keeps the evaluated class balance.
:func:`joint_bootstrap_auroc` draws one set of such resamples for several attacks scored on the
same examples, for a statistic over attacks (the maximum).  :func:`auroc_p_value` tests an
AUROC against chance and :func:`holm_adjust` corrects a family of such tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
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
    """AUROC and TPR at each FPR; given predictions, also their accuracy, precision, recall and
    advantage (TPR - FPR of the predictions).

    A TPR at an FPR the non-members cannot resolve (``n_nonmembers * fpr < 1``) is NaN, and so
    is precision when the attack predicts no member (in the data or in some resample).

    Parameters
    ----------
    scores:
        Membership scores, higher for a likelier member.
    is_member:
        The ground truth, one label per score.
    predictions:
        The attack's own member / non-member decisions (threshold fixed on shadow data).
    fprs:
        The false-positive rates to report the TPR at.
    n_bootstrap, seed:
        Stratified resamples for the intervals, and their random seed.
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
    point = {"auroc": float(skm.roc_auc_score(is_member, scores))}
    for limit in fprs:
        point[tpr_key(limit)] = float(tpr[fpr <= limit * (1 + 1e-9)].max())
    if predictions is not None:
        point["accuracy"] = float(skm.accuracy_score(is_member, predictions))
        point["precision"] = float(
            skm.precision_score(is_member, predictions, zero_division=np.nan)
        )
        point["recall"] = float(skm.recall_score(is_member, predictions))
        point["advantage"] = point["recall"] - float(predictions[~is_member].mean())
    return point


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
                members,
                nonmembers,
                _draw(rng, size, len(members)),
                _draw(rng, size, len(nonmembers)),
                fprs,
            )
        )
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def joint_bootstrap_auroc(
    scores: Sequence[Sequence[float]] | np.ndarray,
    is_member: Sequence[bool],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """The AUROC of several attacks on the same stratified resamples: ``[b, k]`` is attack k's
    AUROC on resample b.

    Parameters
    ----------
    scores:
        ``scores[k][i]``: attack k's score of example i (every attack scores the same examples,
        in the same order).
    is_member:
        The ground truth of each example.
    n_bootstrap, seed:
        Resamples and their seed.
    """
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or not len(matrix):
        raise VoxauditError("joint bootstrap: need a (attacks x examples) matrix of scores")
    if n_bootstrap < 1:
        raise VoxauditError(f"joint bootstrap: n_bootstrap must be at least 1, got {n_bootstrap}")
    labels = _checked(matrix[0], is_member)[1]
    classes = []
    for row in matrix:
        row = _checked(row, labels)[0]
        classes.append((_Class(row, labels, None), _Class(row, ~labels, None)))
    n_members, n_nonmembers = len(classes[0][0]), len(classes[0][1])
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // len(labels))
    out = np.empty((n_bootstrap, len(matrix)))
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        # Counts per example in the data's order; each attack reads them in its own score order.
        member_counts = _draw(rng, size, n_members)
        nonmember_counts = _draw(rng, size, n_nonmembers)
        for k, (members, nonmembers) in enumerate(classes):
            out[start : start + size, k] = _weighted_auroc(
                members,
                nonmembers,
                member_counts[:, members.order],
                nonmember_counts[:, nonmembers.order],
            )
    return out


def auroc_p_value(scores: Sequence[float], is_member: Sequence[bool]) -> float:
    """The two-sided p-value that the AUROC differs from 0.5: the Mann-Whitney U test.

    U / (members x non-members) is the AUROC, so the test asks exactly whether members and
    non-members are told apart better (or worse) than by chance.  Scores all tied carry no
    evidence either way: p = 1.

    Parameters
    ----------
    scores:
        Membership scores.
    is_member:
        The ground truth, one label per score.
    """
    scores, is_member, _ = _checked(scores, is_member)
    p = stats.mannwhitneyu(scores[is_member], scores[~is_member], alternative="two-sided").pvalue
    return 1.0 if math.isnan(p) else float(p)


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in the order given.

    Holm's step-down: the i-th smallest of m p-values is multiplied by m - i (i from 0), a
    running maximum keeps the adjusted values in the order of the raw ones, and 1 caps them.
    Rejecting where the adjusted p is below alpha keeps the family-wise error rate at alpha
    whatever the dependence between the tests (the null rows share examples).

    Parameters
    ----------
    p_values:
        Raw p-values of the family.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise VoxauditError("Holm adjustment: need a list of p-values in [0, 1]")
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def _draw(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """``size`` resamples of n examples with replacement, as counts: ``[b, i]`` draws of i."""
    picks = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
    return np.bincount(picks.ravel(), minlength=size * n).reshape(size, n)


class _Class:
    """The scores of one class in ascending order (``order`` into the class's examples), with
    the predictions in the same order."""

    def __init__(self, scores: np.ndarray, mask: np.ndarray, predictions: np.ndarray | None):
        self.order = np.argsort(scores[mask], kind="stable")
        self.scores = scores[mask][self.order]
        self.predictions = None if predictions is None else predictions[mask][self.order]

    def __len__(self) -> int:
        return len(self.scores)

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
    resampled = {"auroc": _weighted_auroc(members, nonmembers, member_weights, nonmember_weights)}

    thresholds = np.unique(np.concatenate([members.scores, nonmembers.scores]))
    true_positives = members.weight_at_least(member_weights, thresholds)
    false_positives = nonmembers.weight_at_least(nonmember_weights, thresholds)
    for limit in fprs:
        allowed = false_positives <= limit * n_nonmembers * (1 + 1e-9)
        resampled[tpr_key(limit)] = np.where(allowed, true_positives, 0).max(axis=1) / n_members

    if members.predictions is not None:
        hits = member_weights @ members.predictions
        false_alarms = nonmember_weights @ nonmembers.predictions
        predicted = hits + false_alarms
        resampled["accuracy"] = (hits + n_nonmembers - false_alarms) / (n_members + n_nonmembers)
        with np.errstate(invalid="ignore", divide="ignore"):
            resampled["precision"] = np.where(predicted > 0, hits / predicted, np.nan)
        resampled["recall"] = hits / n_members
        resampled["advantage"] = resampled["recall"] - false_alarms / n_nonmembers
    return resampled


def _weighted_auroc(
    members: _Class, nonmembers: _Class, member_weights: np.ndarray, nonmember_weights: np.ndarray
) -> np.ndarray:
    """``[b]``: the AUROC under each row of example weights (each class in its score order)."""
    lower = nonmembers.weight_below(nonmember_weights, members.scores, "left")
    tied = nonmembers.weight_below(nonmember_weights, members.scores, "right") - lower
    pairs = (member_weights * (lower + 0.5 * tied)).sum(axis=1)
    return pairs / (len(members) * len(nonmembers))
