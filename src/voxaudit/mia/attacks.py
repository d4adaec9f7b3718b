"""Membership inference attacks over feature tables: a one-feature threshold and shadow classifiers.

They are fitted on shadow data (rows whose membership is known, from models the auditor trained)
and then score the target's rows. Scores are always oriented so that higher = more likely member.

Every attack here and in :mod:`voxaudit.mia.calibrated` is a scikit-learn estimator with one
protocol: ``fit(X, y=None, **kw)`` returns the attack, ``score(X)`` gives one membership score
per row (higher = more likely member), ``predict(X)`` one bool per row, and ``X`` is an
:class:`~voxaudit.mia.attack_data.AttackData` or a bare
:class:`~voxaudit.mia.table.FeatureTable`. ``__init__`` only stores parameters, so
:func:`sklearn.base.clone`, ``get_params`` and ``set_params`` work, and scoring before fitting
raises :class:`sklearn.exceptions.NotFittedError`. A fitted attack's ``shadow_auroc_`` says how
well it separates members on the data it was fitted on (shadow data, never the target's), so
that an audit can choose its headline attack before it looks at the target.

:func:`register_attack` makes an attack of one's own available to audits at a threat model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData, as_attack_data
from voxaudit.mia.configs import CLASSIFIERS, parse_decision
from voxaudit.mia.table import THREATS, FeatureTable


def default_classifier(
    name: str, random_state: int = 0, n_rows: int | None = None
) -> BaseEstimator:
    """The seeded scikit-learn classifier behind one of the names in ``CLASSIFIERS``.

    ``n_rows``, when known, is how many rows it will be fitted on.
    """
    if name == "logistic":
        return LogisticRegression(max_iter=1000)
    if name == "random_forest":
        return RandomForestClassifier(random_state=random_state)
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(random_state=random_state)
    if name == "mlp":
        return MLPClassifier(
            hidden_layer_sizes=(32, 16),
            # Early stopping holds out a stratified 10%, which needs a few rows of each class.
            early_stopping=n_rows is None or n_rows >= 50,
            max_iter=500,
            random_state=random_state,
        )
    raise VoxauditError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")


def member_labels(is_member: Sequence[bool] | np.ndarray, n_rows: int) -> np.ndarray:
    """``is_member`` as a bool array of one label per row, with both classes present."""
    labels = np.asarray(is_member)
    if labels.shape != (n_rows,):
        raise VoxauditError(f"is_member has shape {labels.shape}; expected ({n_rows},)")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        raise VoxauditError("is_member must hold booleans (or 0/1)")
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise VoxauditError("an attack needs both members and non-members to fit on")
    return labels


def _matrix(table: FeatureTable, columns: Sequence[str]) -> np.ndarray:
    """These columns, in this order; a non-finite value is an error that names its column."""
    values = np.column_stack([table.column(name) for name in columns])
    bad = ~np.isfinite(values)
    if bad.any():
        j = int(np.flatnonzero(bad.any(axis=0))[0])
        raise VoxauditError(
            f"feature column {columns[j]!r} has {int(bad[:, j].sum())} non-finite value(s)"
        )
    return values


def decision_threshold(labels: np.ndarray, scores: np.ndarray, decision: str = "accuracy") -> float:
    """The cut ``t`` (``scores >= t`` predicts a member) that ``decision`` asks of this data.

    ``"accuracy"``: the most accurate cut; ``"recall=R"``: the highest cut that still flags at
    least R of the members; ``"fpr=F"``: the lowest cut that flags at most F of the
    non-members. Fitted on shadow rows, the last two fix an auditor's operating point before
    the target is seen.
    """
    kind, rate = parse_decision(decision)
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)
    if kind == "accuracy":
        positives = labels.sum()
        best = int(np.argmax(tpr * positives + (1 - fpr) * (len(labels) - positives)))
    elif kind == "recall":
        best = int(np.flatnonzero(tpr >= rate - 1e-12)[0])
    else:
        best = int(np.flatnonzero(fpr <= rate + 1e-12)[-1])
    if best == 0 or best == len(thresholds) - 1:
        return float(thresholds[best])
    # Halfway to the next lower score: the same decisions here, with a margin on both sides.
    return float((thresholds[best] + thresholds[best + 1]) / 2)


#: The hidden activations an ``MLPClassifier`` may use, by its ``activation`` name.
_MLP_ACTIVATIONS = {
    "identity": lambda z: z,
    "logistic": expit,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
}
#: Where a classifier that gives only probabilities (a forest) has its log-odds cut off: a
#: probability within a double's resolution of 0 or 1 carries no further order.
_PROBABILITY_FLOOR = float(np.finfo(np.float64).eps)


def member_log_odds(model: BaseEstimator, x: np.ndarray) -> np.ndarray:
    """The log-odds of the member class (``True``) for each row of ``x``, never through an
    underflowed probability.

    ``log(p / (1 - p))`` of a probability that rounded to 0 or 1 is infinite, and every row
    beyond that point ties. So the log-odds come from the classifier's own scale: its
    ``decision_function`` where it has one (logistic regression, gradient boosting: their
    log-odds exactly), the output layer's pre-activation of an MLP, and otherwise (a forest,
    whose probabilities are vote shares) the probability, clipped a double's resolution from 0
    and 1 so that unanimous votes stay finite.

    Parameters
    ----------
    model : estimator
        A fitted binary classifier (or a pipeline ending in one) of bool labels.
    x : ndarray of shape (n_rows, n_columns)
        The rows, as the classifier takes them.
    """
    if hasattr(model, "decision_function"):
        return np.asarray(model.decision_function(x), dtype=np.float64)
    final = model[-1] if isinstance(model, Pipeline) else model
    if isinstance(final, MLPClassifier) and final.out_activation_ == "logistic":
        values = model[:-1].transform(x) if isinstance(model, Pipeline) else x
        hidden = _MLP_ACTIVATIONS[final.activation]
        for layer, (weights, bias) in enumerate(zip(final.coefs_, final.intercepts_, strict=True)):
            values = values @ weights + bias
            if layer < len(final.coefs_) - 1:
                values = hidden(values)
        return np.asarray(values[:, 0], dtype=np.float64)
    probability = np.clip(
        model.predict_proba(x)[:, 1], _PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR
    )
    return np.log(probability) - np.log1p(-probability)


def fitted_data(attack: BaseEstimator, X: AttackData | FeatureTable) -> AttackData:
    """``X`` as attack data, once ``attack`` is known to be fitted (else ``NotFittedError``)."""
    check_is_fitted(attack)
    return as_attack_data(X)


class ThresholdAttack(BaseEstimator):
    """The one-feature baseline: a member if ``column`` is on the member side of a threshold.

    Parameters
    ----------
    column : str
        The feature table column to threshold.
    member_if : {"low", "high", "auto"}, default="auto"
        Which side of the threshold members are on: ``"low"`` (e.g. loss, WER), ``"high"``, or
        ``"auto"``, which takes the direction with the higher AUROC on the data given to
        :meth:`fit` (``"high"`` on a tie).
    decision : str, default="accuracy"
        How to place the threshold on the fitting data (see :func:`decision_threshold`): by
        default the most accurate cut.

    Attributes
    ----------
    member_if_ : {"low", "high"}
        The side chosen.
    threshold_ : float
        The cut, in column units.
    shadow_auroc_ : float
        The signed column's AUROC on the fitting rows.
    """

    def __init__(
        self,
        column: str,
        member_if: Literal["low", "high", "auto"] = "auto",
        decision: str = "accuracy",
    ) -> None:
        self.column = column
        self.member_if = member_if
        self.decision = decision

    def fit(self, X: AttackData | FeatureTable, y: Sequence[bool] | np.ndarray) -> ThresholdAttack:
        """Learn ``member_if_``, ``threshold_`` and ``shadow_auroc_`` from rows of known
        membership ``y``."""
        if self.member_if not in ("low", "high", "auto"):
            raise VoxauditError(
                f"member_if must be 'low', 'high' or 'auto', not {self.member_if!r}"
            )
        parse_decision(self.decision)
        data = as_attack_data(X)
        labels = member_labels(y, len(data))
        values = _matrix(data.table, [self.column])[:, 0]
        direction = self.member_if
        if direction == "auto":
            direction = "high" if roc_auc_score(labels, values) >= 0.5 else "low"
        self.member_if_ = direction
        self.threshold_ = self._sign * decision_threshold(
            labels, self._sign * values, self.decision
        )
        self.shadow_auroc_ = float(roc_auc_score(labels, self._sign * values))
        return self

    @property
    def _sign(self) -> float:
        return 1.0 if self.member_if_ == "high" else -1.0

    def score(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The column, signed so that higher = more likely member."""
        data = fitted_data(self, X)
        return self._sign * _matrix(data.table, [self.column])[:, 0]

    def predict(self, X: AttackData | FeatureTable) -> np.ndarray:
        """True for the rows on the member side of ``threshold_``."""
        return self.score(X) >= self._sign * self.threshold_


class ShadowAttack(BaseEstimator):
    """Shadow-model attack: a classifier from features to membership, chosen by cross-validation.

    Every (classifier, feature set) pair is cross-validated with AUROC on the shadow data given
    to :meth:`fit`, the pair with the best mean is refitted on all of it, and the refitted model's
    member probability is the score.

    Parameters
    ----------
    classifiers : sequence of str or mapping of str to estimator, default=CLASSIFIERS
        Names from ``CLASSIFIERS`` or a mapping of names to scikit-learn classifiers (e.g. a
        smaller forest); each is preceded by a ``StandardScaler``. One classifier and several
        feature sets make a feature ablation.
    feature_sets : mapping of str to families, default=None
        A name for each set of feature table families (or one family), e.g.
        ``{"wer": "transcript", "loss": ["loss", "confidence"]}``; ``None`` is one set,
        ``"all"``, with every column.
    cv : int, default=5
        Cross-validation folds.
    random_state : int, default=0
        Seeds the folds and the default classifiers.
    decision : str, default="accuracy"
        How to place ``threshold_`` (see :func:`decision_threshold`).

    Attributes
    ----------
    selected_ : tuple of (str, str)
        The (classifier, feature set) chosen.
    cv_results_ : list of dict
        One dict per pair: classifier, features, auroc_mean, auroc_std.
    columns_ : tuple of str
        The selected feature set's columns.
    model_ : Pipeline
        The selected pair refitted on every row.
    threshold_ : float
        The cut on the member probability that ``decision`` asks of the out-of-fold
        probabilities of the selected pair (by default the most accurate, not 0.5: shadow data
        need not be balanced).
    shadow_auroc_ : float
        The selected pair's mean cross-validated AUROC.
    out_of_fold_log_odds_ : ndarray of shape (n_rows,)
        The selected pair's out-of-fold member log-odds (:func:`member_log_odds`) of every
        fitting row: what a scored row's log-odds is read against.
    is_member_ : ndarray of shape (n_rows,)
        The fitting rows' membership.
    column_range_ : ndarray of shape (2, n_columns)
        The lowest and highest value of each of ``columns_`` on the fitting rows: beyond them
        the attack extrapolates.
    """

    def __init__(
        self,
        classifiers: Sequence[str] | Mapping[str, BaseEstimator] = CLASSIFIERS,
        feature_sets: Mapping[str, Sequence[str]] | None = None,
        cv: int = 5,
        random_state: int = 0,
        decision: str = "accuracy",
    ) -> None:
        self.classifiers = classifiers
        self.feature_sets = feature_sets
        self.cv = cv
        self.random_state = random_state
        self.decision = decision

    def fit(
        self,
        X: AttackData | FeatureTable,
        y: Sequence[bool] | np.ndarray,
        groups: Sequence[object] | np.ndarray | None = None,
    ) -> ShadowAttack:
        """Cross-validate every pair, keep the best, refit it on all rows.

        Folds are stratified by membership ``y``. ``groups`` (by default ``X.groups``; e.g. the
        shadow model or the speaker of each row) keeps each group within one fold
        (``StratifiedGroupKFold``), so that a speaker never sits on both sides of a split.
        """
        data = as_attack_data(X)
        groups = data.groups if groups is None else groups
        # Candidates are ranked by cross-validated AUROC, so an MLP stopped at max_iter is judged
        # by its results; a ConvergenceWarning per fold would only bury the audit's output.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self._fit(data.table, y, groups)

    def _fit(
        self,
        table: FeatureTable,
        is_member: Sequence[bool] | np.ndarray,
        groups: Sequence[object] | np.ndarray | None,
    ) -> ShadowAttack:
        parse_decision(self.decision)  # a bad rule fails before cross-validation, not after
        labels = member_labels(is_member, len(table))
        pipelines = self._pipelines(len(labels))
        sets = self._feature_sets(table)
        matrices = {name: _matrix(table, columns) for name, columns in sets.items()}
        folds = self._folds(labels, groups)

        self.cv_results_ = []
        out_of_fold, out_of_fold_log_odds = {}, {}
        for classifier, pipeline in pipelines.items():
            for features, x in matrices.items():
                probability = np.empty(len(labels))
                log_odds = np.empty(len(labels))
                aurocs = []
                for train, test in folds:
                    model = clone(pipeline).fit(x[train], labels[train])
                    probability[test] = model.predict_proba(x[test])[:, 1]
                    log_odds[test] = member_log_odds(model, x[test])
                    # A fold of one group can hold one class only: its AUROC is undefined.
                    if 0 < labels[test].sum() < len(test):
                        aurocs.append(roc_auc_score(labels[test], probability[test]))
                if not aurocs:
                    raise VoxauditError(
                        "every cross-validation test fold holds one class only; "
                        "use fewer folds or more groups"
                    )
                out_of_fold[classifier, features] = probability
                out_of_fold_log_odds[classifier, features] = log_odds
                self.cv_results_.append(
                    {
                        "classifier": classifier,
                        "features": features,
                        "auroc_mean": float(np.mean(aurocs)),
                        "auroc_std": float(np.std(aurocs)),
                    }
                )
        best = max(self.cv_results_, key=lambda row: row["auroc_mean"])
        self.selected_ = (best["classifier"], best["features"])
        self.columns_ = sets[best["features"]]
        self.model_ = clone(pipelines[best["classifier"]]).fit(matrices[best["features"]], labels)
        self.threshold_ = decision_threshold(labels, out_of_fold[self.selected_], self.decision)
        self.shadow_auroc_ = best["auroc_mean"]
        self.out_of_fold_log_odds_ = out_of_fold_log_odds[self.selected_]
        self.is_member_ = labels
        selected = matrices[best["features"]]
        self.column_range_ = np.stack([selected.min(axis=0), selected.max(axis=0)])
        return self

    def _pipelines(self, n_rows: int) -> dict[str, Pipeline]:
        if isinstance(self.classifiers, Mapping):
            estimators = dict(self.classifiers)
        else:
            estimators = {
                name: default_classifier(name, self.random_state, n_rows)
                for name in self.classifiers
            }
        if not estimators:
            raise VoxauditError("ShadowAttack needs at least one classifier")
        return {name: make_pipeline(StandardScaler(), est) for name, est in estimators.items()}

    def _feature_sets(self, table: FeatureTable) -> dict[str, tuple[str, ...]]:
        if self.feature_sets is None:
            return {"all": table.columns}
        if not self.feature_sets:
            raise VoxauditError("ShadowAttack needs at least one feature set")
        sets = {}
        for name, families in self.feature_sets.items():
            families = [families] if isinstance(families, str) else list(families)
            columns = table.select(families).columns
            if not columns:
                raise VoxauditError(
                    f"feature set {name!r}: the table has no column of the famil(ies) "
                    f"{', '.join(families) or '(none)'}"
                )
            sets[name] = columns
        return sets

    def _folds(
        self, labels: np.ndarray, groups: Sequence[object] | np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.cv < 2:
            raise VoxauditError(f"cv must be at least 2, not {self.cv}")
        x = np.zeros((len(labels), 1))
        if groups is None:
            if min(labels.sum(), (~labels).sum()) < self.cv:
                raise VoxauditError(f"cv={self.cv} folds need at least {self.cv} rows per class")
            splitter = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            return list(splitter.split(x, labels))
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise VoxauditError(f"groups has shape {groups.shape}; expected {labels.shape}")
        n_groups = len(np.unique(groups))
        if n_groups < self.cv:
            raise VoxauditError(
                f"cv={self.cv} folds need at least {self.cv} groups, not {n_groups}"
            )
        # Stratified as well as grouped: with speaker groups membership is constant within a
        # group, and plain GroupKFold can then leave a fold with one class.
        splitter = StratifiedGroupKFold(self.cv, shuffle=True, random_state=self.random_state)
        folds = list(splitter.split(x, labels, groups))
        for k, (train, _) in enumerate(folds):
            if labels[train].all() or not labels[train].any():
                raise VoxauditError(
                    f"cross-validation fold {k}: the training part holds one class only; "
                    "use fewer folds or more groups"
                )
        return folds

    def score(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The selected model's member probability for each row."""
        data = fitted_data(self, X)
        return self.model_.predict_proba(_matrix(data.table, self.columns_))[:, 1]

    def log_odds(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The selected model's member log-odds for each row (:func:`member_log_odds`): the
        order of :meth:`score`, kept where the probability rounds to 0 or 1."""
        data = fitted_data(self, X)
        return member_log_odds(self.model_, _matrix(data.table, self.columns_))

    def predict(self, X: AttackData | FeatureTable) -> np.ndarray:
        """True for the rows whose member probability reaches ``threshold_``."""
        return self.score(X) >= self.threshold_

    def feature_importances(
        self,
        X: AttackData | FeatureTable,
        y: Sequence[bool] | np.ndarray,
        n_repeats: int = 5,
    ) -> dict[str, float]:
        """Mean AUROC drop when each selected column is shuffled, on these rows."""
        table = fitted_data(self, X).table
        result = permutation_importance(
            self.model_,
            _matrix(table, self.columns_),
            member_labels(y, len(table)),
            scoring="roc_auc",
            n_repeats=n_repeats,
            random_state=self.random_state,
        )
        return dict(zip(self.columns_, map(float, result.importances_mean), strict=True))


# --- registry -------------------------------------------------------------------------------

_ATTACKS: dict[str, tuple[BaseEstimator, str]] = {}


def register_attack(name: str, attack: BaseEstimator, threat: str = "black") -> None:
    """Make an unfitted attack available to audits at ``threat`` and above.

    Parameters
    ----------
    name : str
        The attack's name in results and reports; a name is registered once
        (:func:`unregister_attack` frees it).
    attack : estimator
        An unfitted estimator with ``fit``, ``score`` and ``predict`` that
        :func:`sklearn.base.clone` can copy; the registry keeps a clone, so later changes to
        ``attack`` do not reach it.
    threat : {"black", "grey", "white"}, default="black"
        The least threat model whose access the attack's features need.
    """
    if threat not in THREATS:
        raise VoxauditError(
            f"attack {name!r}: threat must be one of {', '.join(THREATS)}, not {threat!r}"
        )
    if name in _ATTACKS:
        raise VoxauditError(f"an attack named {name!r} is already registered")
    missing = [m for m in ("fit", "score", "predict") if not callable(getattr(attack, m, None))]
    if missing:
        raise VoxauditError(
            f"attack {name!r}: {type(attack).__name__} has no {', '.join(missing)}; "
            "an attack needs fit, score and predict"
        )
    try:
        copy = clone(attack)
    except Exception as error:  # clone raises TypeError or RuntimeError; __init__ may raise any
        raise VoxauditError(
            f"attack {name!r}: sklearn.base.clone cannot copy {type(attack).__name__} "
            "(subclass BaseEstimator and let __init__ only store its parameters)"
        ) from error
    _ATTACKS[name] = (copy, threat)


def unregister_attack(name: str) -> None:
    """Forget a registered attack."""
    if _ATTACKS.pop(name, None) is None:
        raise VoxauditError(f"no attack named {name!r} is registered")


def registered_attacks(threat: str) -> dict[str, BaseEstimator]:
    """Fresh, unfitted clones of the registered attacks that ``threat`` allows (black < grey <
    white), by name, in registration order."""
    if threat not in THREATS:
        raise VoxauditError(f"threat must be one of {', '.join(THREATS)}, not {threat!r}")
    allowed = THREATS[: THREATS.index(threat) + 1]
    return {name: clone(attack) for name, (attack, least) in _ATTACKS.items() if least in allowed}
