"""Quantile-regression membership inference (Bertran et al., NeurIPS 2023, "Scalable Membership
Inference Attacks via Quantile Regression"; amazon-science/quantile-mia).

No shadow model and no reference model: a regressor, fitted on examples known never to have
trained the audited model, predicts from what is known of an example without that model (its
length and loudness, its transcript's length, a base model's loss on it) the ``alpha``-quantile
of the audited model's score (here its negative loss) on non-members like it. An example whose
score beats its own predicted quantile is flagged a member, so the false-positive rate on
non-members is about ``1 - alpha`` for every kind of example, easy or hard, without a threshold
fitted on members.

:class:`QuantileAttack` follows the attack protocol of :mod:`voxaudit.mia.attacks`;
:func:`context_table` builds the per-example columns it reads (family ``context``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData, as_attack_data
from voxaudit.mia.attacks import _matrix, fitted_data
from voxaudit.mia.table import FeatureTable, register_family

CONTEXT = "context"
register_family(
    CONTEXT,
    "what is known of an example without the audited model: its length, loudness, transcript "
    "length, a reference model's loss",
    "black",
)
#: The column holding the audited model's score (higher = more member-like).
SCORE = "score"
#: Rows above the quantile that a leaf of the residuals' quantile regressor must hold.
MIN_TAIL = 10


class QuantileAttack(BaseEstimator):
    """Quantile-regression membership inference: a member when the audited model's score
    beats the ``alpha``-quantile that a regressor predicts for non-members like the example.

    The quantile is fitted in two steps, both ``HistGradientBoostingRegressor(loss=
    "quantile")``: the conditional median of the score, then the ``alpha``-quantile of the
    median's out-of-fold residuals. Bertran et al. fit the high quantile directly, on tens of
    thousands of public non-members; on an audit's few hundred, boosting the pinball loss at
    0.99 barely leaves the global quantile (nearly all its gradients have one sign), and
    in-sample residuals, shrunk by the fit, would put the quantile too low. The residuals'
    quantile varies with the example only where every leaf can hold ``MIN_TAIL`` rows above
    it (``MIN_TAIL / (1 - alpha)`` rows a leaf); otherwise it is one number.

    Parameters
    ----------
    statistic : str, default="score"
        The column with the audited model's score of each row, higher = more member-like
        (e.g. the negative loss).
    features : sequence of str, optional
        The columns the regressor reads: they must not depend on the audited model's
        membership (see :func:`context_table`). None: every column but ``statistic``; with
        no column at all the quantile is one number, the plain ``alpha``-quantile.
    alpha : float, default=0.99
        The predicted quantile: ``1 - alpha`` is the target false-positive rate.
    max_iter, learning_rate : int, float
        The regressors' boosting rounds and step.
    min_samples_leaf : int, optional
        The median regressor's smallest leaf. None: a twentieth of the fitting rows, at
        least 5, so that the leaves grow finer with the data.
    cv : int, default=5
        Folds of the out-of-fold residuals (fewer when there are fewer rows).
    random_state : int, default=0
        Seeds the folds and the regressors.

    Attributes
    ----------
    columns_ : tuple of str
        The feature columns read.
    median_ : HistGradientBoostingRegressor or None
        The conditional median (None without feature columns or with one fitting row).
    tail_ : HistGradientBoostingRegressor or None
        The residuals' conditional ``alpha``-quantile, where the rows allow it.
    offset_ : float or None
        Otherwise the residuals' ``alpha``-quantile (without a median, the scores').
    n_fitted_ : int
        The non-member rows it was fitted on.
    shadow_auroc_ : None
        Fitted on non-members only, it has no AUROC of its own before the target is seen.
    """

    def __init__(
        self,
        statistic: str = SCORE,
        features: Sequence[str] | None = None,
        alpha: float = 0.99,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        min_samples_leaf: int | None = None,
        cv: int = 5,
        random_state: int = 0,
    ) -> None:
        self.statistic = statistic
        self.features = features
        self.alpha = alpha
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.min_samples_leaf = min_samples_leaf
        self.cv = cv
        self.random_state = random_state

    def fit(
        self, X: AttackData | FeatureTable, y: Sequence[bool] | np.ndarray | None = None
    ) -> QuantileAttack:
        """Fit the quantile regressors on the non-member rows of ``X``.

        ``y`` is each row's membership; only rows with ``y`` False are read, so the rows may
        all be known non-members (``y=None``: every row is one).
        """
        if not 0 < self.alpha < 1:
            raise VoxauditError(f"QuantileAttack alpha must lie in (0, 1), not {self.alpha}")
        if self.cv < 2:
            raise VoxauditError(f"QuantileAttack cv must be at least 2, not {self.cv}")
        data = as_attack_data(X)
        n = len(data)
        outside = np.ones(n, dtype=bool) if y is None else ~np.asarray(y, dtype=bool)
        if outside.shape != (n,):
            raise VoxauditError(f"y has shape {outside.shape}; expected ({n},)")
        if not outside.any():
            raise VoxauditError("QuantileAttack needs a non-member row to fit on")
        self.columns_ = self._columns(data.table)
        scores = _matrix(data.table, [self.statistic])[outside, 0]
        self.n_fitted_ = len(scores)
        self.shadow_auroc_ = None
        self.median_ = self.tail_ = None
        if not self.columns_ or len(scores) < 2:  # nothing to regress on, or no fold to hold out
            self.offset_ = float(np.quantile(scores, self.alpha))
            return self
        x = _matrix(data.table, self.columns_)[outside]
        leaf = self.min_samples_leaf or max(5, len(scores) // 20)
        residuals = np.empty(len(scores))
        folds = KFold(min(self.cv, len(scores)), shuffle=True, random_state=self.random_state)
        for train, held in folds.split(x):
            residuals[held] = scores[held] - self._regressor(0.5, leaf).fit(
                x[train], scores[train]
            ).predict(x[held])
        self.median_ = self._regressor(0.5, leaf).fit(x, scores)
        tail_leaf = int(np.ceil(MIN_TAIL / (1 - self.alpha)))
        if len(scores) >= 2 * tail_leaf:
            self.tail_ = self._regressor(self.alpha, tail_leaf).fit(x, residuals)
            self.offset_ = None
        else:
            self.offset_ = float(np.quantile(residuals, self.alpha))
        return self

    def _regressor(self, quantile: float, leaf: int) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss="quantile",
            quantile=quantile,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            min_samples_leaf=leaf,
            random_state=self.random_state,
        )

    def _columns(self, table: FeatureTable) -> tuple[str, ...]:
        if self.features is None:
            return tuple(c for c in table.columns if c != self.statistic)
        columns = tuple(self.features)
        if self.statistic in columns:
            raise VoxauditError(
                f"QuantileAttack: the regressor cannot read the score it predicts, "
                f"{self.statistic!r}"
            )
        return columns

    def quantile(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The predicted ``alpha``-quantile of a non-member's score, for each row."""
        table = fitted_data(self, X).table
        if self.median_ is None:
            return np.full(len(table), self.offset_)
        x = _matrix(table, self.columns_)
        tail = self.tail_.predict(x) if self.tail_ is not None else self.offset_
        return self.median_.predict(x) + tail

    def score(self, X: AttackData | FeatureTable) -> np.ndarray:
        """How far each row's score beats its predicted quantile (higher = more likely member)."""
        table = fitted_data(self, X).table
        return _matrix(table, [self.statistic])[:, 0] - self.quantile(X)

    def predict(self, X: AttackData | FeatureTable) -> np.ndarray:
        """Members where the score beats the predicted quantile: a non-member is flagged with
        probability about ``1 - alpha``."""
        return self.score(X) > 0


def context_table(
    ids: Sequence[str],
    speakers: Sequence[str],
    waves: Sequence[np.ndarray],
    sample_rate: int,
    extra: Mapping[str, np.ndarray] | None = None,
) -> FeatureTable:
    """What is known of each example without the audited model, as family ``context``.

    The duration, the log RMS level and the zero-crossing rate of the waveform (length, loudness
    and a crude brightness: what makes a recording easy or hard for most speech models), then
    the ``extra`` columns (a transcript's length, reference models' losses), none of which
    depends on whether the audited model trained on the example.

    Parameters
    ----------
    ids, speakers : the rows.
    waves : each row's waveform.
    sample_rate : the waveforms' sample rate.
    extra : more columns by name, one value per row.
    """
    signals = [np.asarray(w, dtype=np.float64) for w in waves]
    # The floor keeps the level of silence finite.
    rms = np.array([np.sqrt(np.sum(w**2) / max(1, w.size)) for w in signals])
    columns = {
        "duration_s": np.array([w.size / sample_rate for w in signals]),
        "log_rms": np.log(rms + 1e-8),
        "zero_crossing_rate": np.array(
            [np.count_nonzero(np.diff(np.signbit(w))) / max(1, w.size - 1) for w in signals]
        ),
        **{name: np.asarray(values, dtype=np.float64) for name, values in (extra or {}).items()},
    }
    names = tuple(columns)
    return FeatureTable(
        tuple(ids),
        tuple(speakers),
        names,
        (CONTEXT,) * len(names),
        np.column_stack([columns[c] for c in names]),
    )
