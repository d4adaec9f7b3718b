"""Per-example calibrated attacks: LiRA and RMIA.

A global threshold on the loss confuses "hard example" with "non-member". These attacks compare
the target model's statistic on each example with reference (shadow) models' statistics on the
*same* example, so each example gets its own yardstick. No library provides them, so the
per-example statistics are written here; densities come from :mod:`scipy.stats`.

Both follow the attack protocol of :mod:`voxaudit.mia.attacks`: ``fit(X)`` learns per-row
parameters from ``X.reference`` and ``X.reference_in`` (the reference models' statistic on each
row and whether each trained on it), and ``score(X)`` reads the audited model's statistic from
the column ``statistic`` of ``X.table``, for the same rows, in the same order.

Their ``shadow_auroc_`` is computed on the reference models alone, leave one out: each reference
model in turn plays the target, the attack is fitted on the others and scores that model's own
statistic, and the AUROC is taken against that model's own membership, on the rows where the
others allow a fit (for RMIA, those outside ``X.population``; the pseudo-target's yardstick is
the population rows it did not train on). It is the mean over the reference models that can
play the target (those with members and non-members among such rows), and ``None`` when none
can: with too few references, references that trained on none of the rows (as offline attacks
often have) or, for RMIA, no population at fit. It never reads the audited model's statistics,
so an audit can rank attacks by it before looking at the target.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData, as_attack_data
from voxaudit.mia.attacks import fitted_data
from voxaudit.mia.table import FeatureTable

#: ``pseudo_target(k, others)``: reference model k's scores and membership on the rows it could
#: be scored on, by the attack fitted on the reference models in the mask ``others``; or None.
_PseudoTarget = Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray] | None]

# The logit of the smallest normal float64 probability: the clip keeps Gaussian fits finite.
LOGIT_LIMIT = float(-np.log(np.finfo(np.float64).tiny))


def logit_confidence(loss: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))`` with ``p = exp(-loss)``: the Gaussian-friendly statistic of LiRA.

    ``loss`` is a per-utterance length-normalized negative log-likelihood (so ``>= 0``).
    """
    loss = np.asarray(loss, dtype=np.float64)
    if np.isnan(loss).any() or (loss < 0).any():
        raise VoxauditError("logit_confidence: losses must be non-negative numbers")
    # log(1 - p) = log(-expm1(-loss)) keeps its precision where p is close to 1.
    with np.errstate(divide="ignore"):
        logit = -loss - np.log(-np.expm1(-loss))
    return np.clip(logit, -LOGIT_LIMIT, LOGIT_LIMIT)


def without_out_reference(reference_in: np.ndarray) -> int:
    """How many examples (columns of ``reference_in``, reference model x example) every
    reference model trained on: RMIA has no OUT likelihood to calibrate them by."""
    return int(np.asarray(reference_in, dtype=bool).all(axis=0).sum())


def _reference(data: AttackData, who: str) -> tuple[np.ndarray, np.ndarray]:
    """The checked ``[models, rows]`` reference statistics and IN mask (``None`` = all OUT)."""
    if data.reference is None:
        raise VoxauditError(
            f"{who}: fitting needs the reference models' statistics: "
            "pass AttackData(table, reference=..., reference_in=...)"
        )
    if not np.isfinite(data.reference).all():
        raise VoxauditError(f"{who}: reference statistics must be finite")
    is_in = data.reference_in
    if is_in is None:
        is_in = np.zeros(data.reference.shape, dtype=bool)
    return data.reference, is_in


def _target(attack: LiRA | RMIA, X: AttackData | FeatureTable, who: str) -> AttackData:
    """``X`` once the attack is fitted and ``X`` holds the rows it was fitted on."""
    data = fitted_data(attack, X)
    if data.ids != attack.ids_:
        raise VoxauditError(
            f"{who}: scored rows must be the {len(attack.ids_)} rows it was fitted on, in the "
            f"same order; got {len(data)} row(s)"
            + ("" if len(data) != len(attack.ids_) else " in another order or with other ids")
        )
    return data


def _statistic(data: AttackData, column: str, who: str) -> np.ndarray:
    stats = data.table.column(column)
    if not np.isfinite(stats).all():
        raise VoxauditError(f"{who}: the target's {column!r} must be finite")
    return stats


def _leave_one_out(is_in: np.ndarray, pseudo_target: _PseudoTarget) -> float | None:
    """The mean AUROC over the reference models that can play the target (see the module
    docstring), or None."""
    aurocs = []
    for k in range(len(is_in)):
        others = np.arange(len(is_in)) != k
        scored = pseudo_target(k, others) if others.any() else None
        if scored is None:
            continue
        scores, labels = scored
        if 0 < labels.sum() < len(labels):
            aurocs.append(roc_auc_score(labels, scores))
    return float(np.mean(aurocs)) if aurocs else None


class LiRA(BaseEstimator):
    """Likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks From First
    Principles").

    Per example, a Gaussian over reference models that trained on it (IN) and one over those
    that did not (OUT). ``"online"`` scores the log-likelihood ratio IN vs OUT; ``"offline"``
    needs OUT references only and scores the one-sided ``log P(OUT statistic <= x)``.
    Statistics must be oriented so that higher = more member-like, e.g.
    :func:`logit_confidence` of the loss.

    Parameters
    ----------
    statistic : str, default="logit_confidence"
        The column of the scored table holding the audited model's statistic;
        ``X.reference`` at fit holds the same statistic of the reference models.
    mode : {"online", "offline"}, default="online"
        With IN and OUT Gaussians, or OUT only.
    fixed_variance : bool, default=False
        Pool one std for IN and one for OUT over all examples (each around its own example's
        mean), which is what makes LiRA work with a few reference models; otherwise every
        example needs two IN (online) and two OUT references for its own std. An example with
        no OUT reference (or, online, no IN reference) is an error.
    min_std : float, default=1e-3
        The floor of every std.

    Attributes
    ----------
    mu_out_, std_out_ : ndarray of shape (n_rows,)
        Each example's OUT Gaussian.
    mu_in_, std_in_ : ndarray of shape (n_rows,) or None
        Each example's IN Gaussian, online.
    ids_ : tuple of str
        The rows fitted, which :meth:`score` must be given.
    shadow_auroc_ : float or None
        Leave-one-reference-out AUROC (see the module docstring).

    Notes
    -----
    :meth:`predict` flags a member where the score says IN is at least as likely as OUT
    (online: log-ratio >= 0) or, offline, where the statistic is at least the OUT mean
    (``P(OUT <= x) >= 1/2``), which flags about half of the non-members: read offline LiRA by
    its ROC.
    """

    def __init__(
        self,
        statistic: str = "logit_confidence",
        mode: Literal["online", "offline"] = "online",
        fixed_variance: bool = False,
        min_std: float = 1e-3,
    ) -> None:
        self.statistic = statistic
        self.mode = mode
        self.fixed_variance = fixed_variance
        self.min_std = min_std

    def fit(self, X: AttackData, y: None = None) -> LiRA:
        """Learn each row's Gaussians from ``X.reference`` and ``X.reference_in``.

        ``X.reference[i, j]`` is reference model i's statistic on row j; ``X.reference_in[i,
        j]`` whether model i trained on j (``None``: none did, which suits offline only). ``y``
        is ignored: the membership that matters is the references'.
        """
        if self.mode not in ("online", "offline"):
            raise VoxauditError(f"LiRA mode must be 'online' or 'offline', not {self.mode!r}")
        if not self.min_std > 0:
            raise VoxauditError(f"LiRA min_std must be positive, not {self.min_std}")
        data = as_attack_data(X)
        stats, is_in = _reference(data, "LiRA")
        self.mu_out_, self.std_out_, self.mu_in_, self.std_in_ = self._gaussians(stats, is_in)
        self.ids_ = data.ids
        self.shadow_auroc_ = _leave_one_out(is_in, self._pseudo_target(stats, is_in))
        return self

    def _gaussians(
        self, stats: np.ndarray, is_in: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Each example's OUT and (online) IN mean and std."""
        mu_out, std_out = self._gaussian(stats, ~is_in, "OUT")
        mu_in = std_in = None
        if self.mode == "online":
            mu_in, std_in = self._gaussian(stats, is_in, "IN")
        return mu_out, std_out, mu_in, std_in

    def _gaussian(self, stats: np.ndarray, mask: np.ndarray, side: str) -> tuple[np.ndarray, ...]:
        """Per-example mean and std of the statistic over the references in ``mask``."""
        count = mask.sum(axis=0)
        short = int((count < self._needed).sum())
        if short:
            hint = "" if self.fixed_variance else " (fixed_variance=True needs only one)"
            raise VoxauditError(
                f"LiRA: {short} example(s) have fewer than {self._needed} {side} shadow "
                f"model(s){hint}"
            )
        mean = np.where(mask, stats, 0.0).sum(axis=0) / count
        squares = np.where(mask, (stats - mean) ** 2, 0.0).sum(axis=0)
        if self.fixed_variance:
            # Pooled: each example's mean costs one degree of freedom.
            dof = count.sum() - len(count)
            if dof == 0:
                raise VoxauditError(f"LiRA: no example has two {side} shadow models to pool")
            std = np.full(len(count), np.sqrt(squares.sum() / dof))
        else:
            std = np.sqrt(squares / (count - 1))
        return mean, np.maximum(std, self.min_std)

    @property
    def _needed(self) -> int:
        """References a side needs on an example: one to pool a variance, else two."""
        return 1 if self.fixed_variance else 2

    def _pseudo_target(self, stats: np.ndarray, is_in: np.ndarray) -> _PseudoTarget:
        def scored(k: int, others: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
            rest, rest_in = stats[others], is_in[others]
            rows = (~rest_in).sum(axis=0) >= self._needed
            if self.mode == "online":
                rows &= rest_in.sum(axis=0) >= self._needed
            if not rows.any():
                return None
            try:
                gaussians = self._gaussians(rest[:, rows], rest_in[:, rows])
            except VoxauditError:  # e.g. nothing to pool a variance over
                return None
            return self._log_ratio(stats[k, rows], *gaussians), is_in[k, rows]

        return scored

    def _log_ratio(
        self,
        x: np.ndarray,
        mu_out: np.ndarray,
        std_out: np.ndarray,
        mu_in: np.ndarray | None,
        std_in: np.ndarray | None,
    ) -> np.ndarray:
        if self.mode == "offline":
            return norm.logcdf(x, mu_out, std_out)
        return norm.logpdf(x, mu_in, std_in) - norm.logpdf(x, mu_out, std_out)

    def score(self, X: AttackData | FeatureTable) -> np.ndarray:
        """Membership score of each row from the audited model's ``statistic``."""
        data = _target(self, X, "LiRA")
        x = _statistic(data, self.statistic, "LiRA")
        return self._log_ratio(x, self.mu_out_, self.std_out_, self.mu_in_, self.std_in_)

    def predict(self, X: AttackData | FeatureTable) -> np.ndarray:
        """Members where IN is at least as likely as OUT (offline: x at least the OUT mean)."""
        return self.score(X) >= (np.log(0.5) if self.mode == "offline" else 0.0)


class RMIA(BaseEstimator):
    """Relative membership inference attack (Zarifzadeh et al. 2024, "Low-Cost High-Power
    Membership Inference Attacks").

    Likelihoods are ``p(x|θ) = exp(-loss)`` (or a classifier's probability of the true label).
    ``p(x)``, the likelihood averaged over reference models, calibrates each example: online,
    the mean over all reference models, for examples that some reference models trained on and
    some did not; offline, for examples that no reference model trained on,
    ``((1 + a) p_OUT(x) + (1 - a)) / 2`` with ``a = offline_a``, i.e. ``p_IN`` approximated by
    ``a p_OUT + (1 - a)``. The score of x is the fraction of population examples z with
    ``(p(x|θ) / p(x)) / (p(z|θ) / p(z)) >= gamma``.

    Parameters
    ----------
    statistic : str, default="likelihood"
        The column of the scored table holding the audited model's likelihood of each row;
        ``X.reference`` at fit holds the reference models' likelihoods.
    gamma : float, default=2.0
        How much higher x's likelihood ratio must be than z's for x to dominate z.
    offline_a : float, default=0.3
        The ``a`` of the offline ``p_IN`` approximation, in [0, 1].

    Attributes
    ----------
    p_x_ : ndarray of shape (n_rows,)
        The calibrating likelihood of each row.
    online_ : bool ndarray of shape (n_rows,)
        The rows calibrated online.
    ids_ : tuple of str
        The rows fitted, which :meth:`score` must be given.
    shadow_auroc_ : float or None
        Leave-one-reference-out AUROC (see the module docstring), over the rows outside
        ``X.population`` (``None`` without a population at fit). The pseudo-target's
        population is the population rows it did not train on.

    Notes
    -----
    :meth:`predict` flags a member where x dominates at least half of the population.
    """

    def __init__(
        self, statistic: str = "likelihood", gamma: float = 2.0, offline_a: float = 0.3
    ) -> None:
        self.statistic = statistic
        self.gamma = gamma
        self.offline_a = offline_a

    def fit(self, X: AttackData, y: None = None) -> RMIA:
        """Learn ``p_x_`` and ``online_`` from ``X.reference`` and ``X.reference_in``.

        ``X.reference[i, j]`` is reference model i's likelihood of row j, over the candidate
        rows and the population rows; ``X.reference_in[i, j]`` whether model i trained on j
        (``None``: none did, i.e. offline throughout). ``y`` is ignored.
        """
        if self.gamma <= 0:
            raise VoxauditError(f"RMIA gamma must be positive, not {self.gamma}")
        if not 0 <= self.offline_a <= 1:
            raise VoxauditError(f"RMIA offline_a must lie in [0, 1], not {self.offline_a}")
        data = as_attack_data(X)
        likelihoods, is_in = _reference(data, "RMIA")
        likelihoods = self._floor(likelihoods)
        only_in = without_out_reference(is_in)
        if only_in:
            raise VoxauditError(f"RMIA: {only_in} example(s) have no OUT reference model")
        self.p_x_, self.online_ = self._calibration(likelihoods, is_in)
        self.ids_ = data.ids
        self.shadow_auroc_ = None
        if data.population is not None:
            scored = self._pseudo_target(likelihoods, is_in, data.population)
            self.shadow_auroc_ = _leave_one_out(is_in, scored)
        return self

    def _calibration(
        self, likelihoods: np.ndarray, is_in: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``p(x)`` of each column and whether it is online; every column has an OUT model."""
        n_in = is_in.sum(axis=0)
        online = n_in > 0
        p_out = np.where(is_in, 0.0, likelihoods).sum(axis=0) / (len(is_in) - n_in)
        offline = ((1 + self.offline_a) * p_out + (1 - self.offline_a)) / 2
        return np.where(online, likelihoods.mean(axis=0), offline), online

    @staticmethod
    def _floor(likelihoods: np.ndarray) -> np.ndarray:
        if (likelihoods < 0).any():
            raise VoxauditError("RMIA: likelihoods must be non-negative")
        # An underflowed likelihood of 0 would make the ratios undefined.
        return np.maximum(likelihoods, np.finfo(np.float64).tiny)

    def _pseudo_target(
        self, likelihoods: np.ndarray, is_in: np.ndarray, population: np.ndarray
    ) -> _PseudoTarget:
        def scored(k: int, others: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
            rest, rest_in = likelihoods[others], is_in[others]
            rows = (~rest_in).any(axis=0)  # p(x) needs an OUT model among the others
            yardstick = rows & population & ~is_in[k]
            candidates = rows & ~population
            if not (yardstick.any() and candidates.any()):
                return None
            p_x, _ = self._calibration(rest[:, rows], rest_in[:, rows])
            ratio = np.empty(len(rows))
            ratio[rows] = likelihoods[k, rows] / p_x
            scores = self._dominated(ratio[candidates], ratio[yardstick])
            return scores, is_in[k, candidates]

        return scored

    def _dominated(self, ratio: np.ndarray, population_ratio: np.ndarray) -> np.ndarray:
        reference = np.sort(population_ratio)
        # ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma, as every ratio is > 0.
        return np.searchsorted(reference, ratio / self.gamma, side="right") / len(reference)

    def score(self, X: AttackData) -> np.ndarray:
        """Membership score of every row from the audited model's likelihoods.

        ``X.population`` picks the population rows z, which must be known non-members of the
        audited model: they are the yardstick that a member's likelihood ratio should dominate.
        """
        data = _target(self, X, "RMIA")
        if data.population is None or not data.population.any():
            raise VoxauditError(
                "RMIA: scoring needs the known non-members of the audited model: "
                "pass AttackData(table, population=...) marking at least one row"
            )
        ratio = self._floor(_statistic(data, self.statistic, "RMIA")) / self.p_x_
        return self._dominated(ratio, ratio[data.population])

    def predict(self, X: AttackData) -> np.ndarray:
        """Members where x dominates at least half of the population."""
        return self.score(X) >= 0.5
