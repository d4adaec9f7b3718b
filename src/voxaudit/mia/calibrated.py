"""Per-example calibrated attacks: LiRA and RMIA.

A global threshold on the loss confuses "hard example" with "non-member". These attacks compare
the target model's statistic on each example with reference (shadow) models' statistics on the
*same* example, so each example gets its own yardstick. No library provides them, so the
per-example statistics are written here; densities come from :mod:`scipy.stats`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import norm

from voxaudit.errors import VoxauditError

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


def _reference(stats: np.ndarray, is_in: np.ndarray | None, who: str) -> tuple[np.ndarray, ...]:
    """Checked ``[models, examples]`` statistics and IN mask (``None`` = all OUT)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] == 0:
        raise VoxauditError(f"{who}: expected a [models, examples] array, got {stats.shape}")
    if not np.isfinite(stats).all():
        raise VoxauditError(f"{who}: reference statistics must be finite")
    is_in = np.zeros(stats.shape, dtype=bool) if is_in is None else np.asarray(is_in)
    if is_in.shape != stats.shape or is_in.dtype != bool:
        raise VoxauditError(f"{who}: the IN mask must be a bool array of shape {stats.shape}")
    return stats, is_in


def _target(stats: np.ndarray, n: int, who: str) -> np.ndarray:
    stats = np.asarray(stats, dtype=np.float64)
    if stats.shape != (n,):
        raise VoxauditError(f"{who}: target statistics of shape {stats.shape}; expected ({n},)")
    if not np.isfinite(stats).all():
        raise VoxauditError(f"{who}: target statistics must be finite")
    return stats


def _population(population: np.ndarray, n: int) -> np.ndarray:
    """Checked population indices over ``n`` columns, from indices or a bool mask."""
    population = np.asarray(population)
    if population.dtype == bool:
        if population.shape != (n,):
            raise VoxauditError(
                f"RMIA: population mask of shape {population.shape}; expected ({n},)"
            )
        population = np.flatnonzero(population)
    elif population.size and not np.issubdtype(population.dtype, np.integer):
        raise VoxauditError("RMIA: population must be an index array or a bool mask")
    if population.ndim != 1 or population.size == 0:
        raise VoxauditError("RMIA: the population must be a non-empty 1-D index array or mask")
    if ((population < 0) | (population >= n)).any():
        raise VoxauditError(f"RMIA: population indices must lie in [0, {n})")
    return population


class LiRA:
    """Likelihood-ratio attack (Carlini et al. 2022, "Membership Inference Attacks From First
    Principles").

    Per example, a Gaussian over shadow models that trained on it (IN) and one over those that
    did not (OUT). ``"online"`` scores the log-likelihood ratio IN vs OUT; ``"offline"`` needs
    OUT shadows only and scores the one-sided ``log P(OUT statistic <= x)``. Statistics must be
    oriented so that higher = more member-like, e.g. :func:`logit_confidence` of the loss.

    ``fixed_variance`` pools one std for IN and one for OUT over all examples (each around its
    own example's mean), which is what makes LiRA work with a few shadow models; otherwise
    every example needs two IN (online) and two OUT shadows for its own std. An example with no
    OUT shadow (or, online, no IN shadow) is an error. Stds are floored at ``min_std``.
    """

    def __init__(
        self,
        mode: Literal["online", "offline"] = "online",
        fixed_variance: bool = False,
        min_std: float = 1e-3,
    ) -> None:
        self.mode = mode
        self.fixed_variance = fixed_variance
        self.min_std = min_std

    def fit(self, shadow_stats: np.ndarray, shadow_in: np.ndarray | None = None) -> LiRA:
        """Learn ``mu_out_``, ``std_out_`` and, online, ``mu_in_``, ``std_in_`` (one per example).

        ``shadow_stats[i, j]`` is shadow model i's statistic on example j; ``shadow_in[i, j]``
        whether model i trained on j (``None``: none did, which suits offline only).
        """
        if self.mode not in ("online", "offline"):
            raise VoxauditError(f"LiRA mode must be 'online' or 'offline', not {self.mode!r}")
        if not self.min_std > 0:
            raise VoxauditError(f"LiRA min_std must be positive, not {self.min_std}")
        stats, is_in = _reference(shadow_stats, shadow_in, "LiRA")
        self.mu_out_, self.std_out_ = self._gaussian(stats, ~is_in, "OUT")
        self.mu_in_ = self.std_in_ = None
        if self.mode == "online":
            self.mu_in_, self.std_in_ = self._gaussian(stats, is_in, "IN")
        return self

    def _gaussian(self, stats: np.ndarray, mask: np.ndarray, side: str) -> tuple[np.ndarray, ...]:
        """Per-example mean and std of the statistic over the shadows in ``mask``."""
        count = mask.sum(axis=0)
        needed = 1 if self.fixed_variance else 2
        short = int((count < needed).sum())
        if short:
            hint = "" if self.fixed_variance else " (fixed_variance=True needs only one)"
            raise VoxauditError(
                f"LiRA: {short} example(s) have fewer than {needed} {side} shadow model(s){hint}"
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

    def score(self, target_stats: np.ndarray) -> np.ndarray:
        """Membership score of each example from the target model's statistic."""
        x = _target(target_stats, len(self.mu_out_), "LiRA")
        if self.mode == "offline":
            return norm.logcdf(x, self.mu_out_, self.std_out_)
        return norm.logpdf(x, self.mu_in_, self.std_in_) - norm.logpdf(
            x, self.mu_out_, self.std_out_
        )


class RMIA:
    """Relative membership inference attack (Zarifzadeh et al. 2024, "Low-Cost High-Power
    Membership Inference Attacks").

    Likelihoods are ``p(x|θ) = exp(-loss)`` (or a classifier's probability of the true label).
    ``p(x)``, the likelihood averaged over reference models, calibrates each example: online,
    the mean over all reference models, for examples that some reference models trained on and
    some did not; offline, for examples that no reference model trained on,
    ``((1 + a) p_OUT(x) + (1 - a)) / 2`` with ``a = offline_a``, i.e. ``p_IN`` approximated by
    ``a p_OUT + (1 - a)``. The score of x is the fraction of population examples z with
    ``(p(x|θ) / p(x)) / (p(z|θ) / p(z)) >= gamma``.
    """

    def __init__(self, gamma: float = 2.0, offline_a: float = 0.3) -> None:
        self.gamma = gamma
        self.offline_a = offline_a

    def fit(
        self, reference_likelihoods: np.ndarray, reference_in: np.ndarray | None = None
    ) -> RMIA:
        """Learn ``p_x_``, the calibrating likelihood of each column, and ``online_``.

        ``reference_likelihoods[i, j]`` is reference model i's likelihood of column j, over
        the candidate examples and the population examples; ``reference_in[i, j]`` whether
        model i trained on j (``None``: none did, i.e. offline throughout).
        """
        if self.gamma <= 0:
            raise VoxauditError(f"RMIA gamma must be positive, not {self.gamma}")
        if not 0 <= self.offline_a <= 1:
            raise VoxauditError(f"RMIA offline_a must lie in [0, 1], not {self.offline_a}")
        likelihoods, is_in = _reference(reference_likelihoods, reference_in, "RMIA")
        likelihoods = self._floor(likelihoods)
        n_in = is_in.sum(axis=0)
        only_in = int((n_in == len(is_in)).sum())
        if only_in:
            raise VoxauditError(f"RMIA: {only_in} example(s) have no OUT reference model")
        self.online_ = n_in > 0
        p_out = np.where(is_in, 0.0, likelihoods).sum(axis=0) / (len(is_in) - n_in)
        offline = ((1 + self.offline_a) * p_out + (1 - self.offline_a)) / 2
        self.p_x_ = np.where(self.online_, likelihoods.mean(axis=0), offline)
        return self

    @staticmethod
    def _floor(likelihoods: np.ndarray) -> np.ndarray:
        if (likelihoods < 0).any():
            raise VoxauditError("RMIA: likelihoods must be non-negative")
        # An underflowed likelihood of 0 would make the ratios undefined.
        return np.maximum(likelihoods, np.finfo(np.float64).tiny)

    def score(self, target_likelihoods: np.ndarray, population: np.ndarray) -> np.ndarray:
        """Membership score of every column from the target model's likelihoods.

        ``population`` (indices, or a bool mask over the columns) picks the population
        examples z, which must be known non-members of the target model: they are the yardstick
        that a member's likelihood ratio should dominate.
        """
        likelihoods = self._floor(_target(target_likelihoods, len(self.p_x_), "RMIA"))
        ratio = likelihoods / self.p_x_
        reference = np.sort(ratio[_population(population, len(ratio))])
        # ratio_x / ratio_z >= gamma  <=>  ratio_z <= ratio_x / gamma, as every ratio is > 0.
        return np.searchsorted(reference, ratio / self.gamma, side="right") / len(reference)
