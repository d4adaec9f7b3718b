"""Attacks made of shadow attacks: one per true class (Shokri et al.), and one averaged over
classifier seeds. Both follow the protocol of :mod:`voxaudit.mia.attacks`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData, as_attack_data
from voxaudit.mia.attacks import ShadowAttack, fitted_data, member_labels
from voxaudit.mia.configs import CLASSIFIERS
from voxaudit.mia.metrics import tpr_at_fpr
from voxaudit.mia.table import FeatureTable


class PerClassAttack(BaseEstimator):
    """Shokri et al.'s per-class attack: one :class:`ShadowAttack` per true class of the rows.

    A member's output vector looks different for each class (how sure a model is of one speaker
    is not how sure it is of another), so each class gets its own attack model, fitted on the
    shadow rows of that class. A class with fewer than ``min_per_side`` member or non-member
    rows, or one never seen in fitting, is scored by a global attack over all rows instead.
    The classes are ``X.classes`` in :meth:`fit`, :meth:`score` and :meth:`predict` alike.

    The global attack chooses the classifier and feature set by cross-validation (grouped as
    :meth:`ShadowAttack.fit` groups); the per-class models reuse that choice and pick their own
    thresholds by stratified cross-validation within the class (no groups: for a speaker-ID
    model a class is one speaker). Per-class member probabilities are then pooled into one
    ROC: each model's probability estimates P(member | output), a common scale, and a row's hard
    decision uses its own class model's threshold.

    Parameters
    ----------
    classifiers, feature_sets, cv, random_state, decision
        As for :class:`ShadowAttack`; the per-class models use at most ``cv`` folds.
    min_per_side : int, default=4
        The fewest member and the fewest non-member rows a class needs for a model of its own.

    Attributes
    ----------
    global_ : ShadowAttack
        The attack over all rows.
    per_class_ : dict
        Each class with a model of its own, and that model.
    shadow_auroc_ : float
        The global attack's.
    """

    def __init__(
        self,
        classifiers: Sequence[str] | Mapping[str, BaseEstimator] = CLASSIFIERS,
        feature_sets: Mapping[str, Sequence[str]] | None = None,
        cv: int = 5,
        min_per_side: int = 4,
        random_state: int = 0,
        decision: str = "accuracy",
    ) -> None:
        self.classifiers = classifiers
        self.feature_sets = feature_sets
        self.cv = cv
        self.min_per_side = min_per_side
        self.random_state = random_state
        self.decision = decision

    def fit(
        self,
        X: AttackData,
        y: Sequence[bool] | np.ndarray,
        groups: Sequence[object] | np.ndarray | None = None,
    ) -> PerClassAttack:
        """Fit the global attack on all rows (grouped by ``groups``, by default ``X.groups``)
        and one attack per class with enough rows."""
        if self.min_per_side < 2:
            raise VoxauditError(f"min_per_side must be at least 2, not {self.min_per_side}")
        data = as_attack_data(X)
        classes = _classes(data)
        labels = member_labels(y, len(data))
        self.global_ = ShadowAttack(
            self.classifiers, self.feature_sets, self.cv, self.random_state, self.decision
        ).fit(data, labels, data.groups if groups is None else groups)
        classifier, features = self.global_.selected_
        # The global choice, by name, so that each class builds it for its own row count.
        if isinstance(self.classifiers, Mapping):
            chosen: Sequence[str] | Mapping[str, BaseEstimator] = {
                classifier: self.classifiers[classifier]
            }
        else:
            chosen = (classifier,)
        feature_set = None if self.feature_sets is None else {features: self.feature_sets[features]}
        self.per_class_: dict[object, ShadowAttack] = {}
        for value in np.unique(classes):
            rows = np.flatnonzero(classes == value)
            smaller = min(labels[rows].sum(), (~labels[rows]).sum())
            if smaller < self.min_per_side:
                continue
            attack = ShadowAttack(
                chosen,
                feature_set,
                cv=int(min(self.cv, smaller)),
                random_state=self.random_state,
                decision=self.decision,
            )
            self.per_class_[value] = attack.fit(_subset(data.table, rows), labels[rows])
        self.shadow_auroc_ = self.global_.shadow_auroc_
        return self

    def score(self, X: AttackData) -> np.ndarray:
        """Each row's member probability from its class's model (or the global one)."""
        return self._apply(X, lambda attack, part: attack.score(part))

    def predict(self, X: AttackData) -> np.ndarray:
        """Each row's decision by its class's model and that model's threshold."""
        return self._apply(X, lambda attack, part: attack.predict(part)).astype(bool)

    def _apply(
        self, X: AttackData, how: Callable[[ShadowAttack, FeatureTable], np.ndarray]
    ) -> np.ndarray:
        data = fitted_data(self, X)
        classes = _classes(data)
        out = np.asarray(how(self.global_, data.table), dtype=np.float64)
        for value, attack in self.per_class_.items():
            rows = np.flatnonzero(classes == value)
            if len(rows):
                out[rows] = how(attack, _subset(data.table, rows))
        return out


def _classes(data: AttackData) -> np.ndarray:
    if data.classes is None:
        raise VoxauditError(
            "PerClassAttack needs the true class of each row: pass AttackData(table, classes=...)"
        )
    return data.classes


def _subset(table: FeatureTable, rows: np.ndarray) -> FeatureTable:
    return table.rows([table.ids[i] for i in rows])


class SeedAveraged(BaseEstimator):
    """An attack refitted with several seeds: its score is their mean score.

    On a few hundred shadow rows a classifier's seed can move its AUROC noticeably; averaging
    seeds reports the attack rather than one draw of it.

    Parameters
    ----------
    attack : estimator
        The attack to refit; it needs an integer ``random_state`` parameter.
    n_seeds : int, default=10
        Clones fitted, with ``random_state`` = the attack's ``random_state`` + 0, 1, ...

    Attributes
    ----------
    estimators_ : list of estimator
        Each seed's fitted clone.
    shadow_auroc_ : float or None
        The mean of the clones' (``None`` if any clone has none).
    """

    def __init__(self, attack: BaseEstimator, n_seeds: int = 10) -> None:
        self.attack = attack
        self.n_seeds = n_seeds

    def fit(
        self, X: AttackData | FeatureTable, y: Sequence[bool] | np.ndarray | None = None, **kw: Any
    ) -> SeedAveraged:
        """Fit each seed's clone on the same data (``kw`` goes to each clone's ``fit``)."""
        if not isinstance(self.n_seeds, int | np.integer) or self.n_seeds < 1:
            raise VoxauditError(
                f"SeedAveraged n_seeds must be a positive integer, not {self.n_seeds}"
            )
        first = self.attack.get_params(deep=False).get("random_state")
        if not isinstance(first, int | np.integer):
            raise VoxauditError(
                f"SeedAveraged needs an attack with an integer random_state; "
                f"{type(self.attack).__name__} has {first!r}"
            )
        self.estimators_ = [
            clone(self.attack).set_params(random_state=int(first) + s).fit(X, y, **kw)
            for s in range(self.n_seeds)
        ]
        aurocs = [getattr(a, "shadow_auroc_", None) for a in self.estimators_]
        self.shadow_auroc_ = None if None in aurocs else float(np.mean(aurocs))
        return self

    def score(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The seeds' mean score of each row."""
        check_is_fitted(self)
        return np.mean([a.score(X) for a in self.estimators_], axis=0)

    def predict(self, X: AttackData | FeatureTable) -> np.ndarray:
        """The seeds' majority vote (a tie is a member)."""
        check_is_fitted(self)
        return np.mean([a.predict(X) for a in self.estimators_], axis=0) >= 0.5

    def notes(self, X: AttackData | FeatureTable, y: Sequence[bool] | np.ndarray) -> str | None:
        """Each seed's own AUROC and TPR at 1% FPR on these rows, as mean and std over the
        seeds; ``None`` for one seed."""
        check_is_fitted(self)
        if self.n_seeds == 1:
            return None
        labels = np.asarray(y, dtype=bool)
        aurocs = [roc_auc_score(labels, a.score(X)) for a in self.estimators_]
        text = (
            f"score averaged over {self.n_seeds} attack-classifier seed(s); per seed AUROC "
            f"{np.mean(aurocs):.3f} +- {np.std(aurocs):.3f}"
        )
        if (~labels).sum() >= 100:
            tprs = [tpr_at_fpr(a.score(X), labels, 0.01) for a in self.estimators_]
            text += f", TPR at 1% FPR {np.mean(tprs):.3f} +- {np.std(tprs):.3f}"
        return text

    def selection(self) -> dict[str, Any]:
        """What cross-validation chose for each seed, and the first seed's results (for
        attacks with ``selected_`` and ``cv_results_``, as :class:`ShadowAttack`)."""
        check_is_fitted(self)
        return {
            "selected": [list(a.selected_) for a in self.estimators_],
            "cv_results": self.estimators_[0].cv_results_,
        }
