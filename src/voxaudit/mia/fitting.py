"""Fitting attacks and scoring each model's rows, the same for every family.

With shadow data an attack is fitted once on the shadows' rows; without (cross-fitting), each
half of the target's speakers is scored by attacks fitted on the other half, and the null
control, when there is no null model, is the same pipeline with permuted membership labels.
Each attack's rows become result rows (:func:`entries`), target first, then the null control.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.configs import AuditConfig
from voxaudit.mia.core import Entry
from voxaudit.mia.results import result_entry


def grouped_folds(cv: int, labels: np.ndarray, groups: np.ndarray) -> int:
    """Cross-validation folds: ``cv``, but no more than groups on the smaller side (at least 2),
    since a group never straddles folds."""
    per_class = min(len(set(groups[labels])), len(set(groups[~labels])))
    return max(2, min(cv, per_class))


def permuted(labels: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Membership labels shuffled, the null control when there is no null model: what the
    pipeline gives when membership is noise. Where every group (speaker) holds one label, whole
    groups are shuffled, so that a speaker keeps one label for all its rows; otherwise labels
    are shuffled within each group, so that every speaker keeps its count of members: the null
    breaks only the recording-level link, and its folds can be dealt wherever the target's can
    (a shuffle across speakers can leave a speaker, and then a fold, with one class)."""
    rng = np.random.default_rng([seed, *b"permutation null"])
    names = sorted(set(groups.tolist()))
    pure = all(len(set(labels[groups == g].tolist())) == 1 for g in names)
    if pure:
        first = [bool(labels[groups == g][0]) for g in names]
        shuffled = dict(zip(names, rng.permutation(first).tolist(), strict=True))
        return np.array([shuffled[g] for g in groups.tolist()], dtype=bool)
    out = np.array(labels, dtype=bool)
    for name in names:
        rows = np.flatnonzero(groups == name)
        out[rows] = rng.permutation(out[rows])
    return out


def cross_fit_halves(groups: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Fold 0 or 1 for each row: two halves of the groups (speakers), so that no speaker is
    on both sides, each half holding members and non-members."""
    rng = np.random.default_rng([seed, *b"cross-fit"])
    names = [str(g) for g in rng.permutation(sorted(set(groups.tolist())))]
    # Member speakers first, then the rest, dealt alternately: both halves get both sides.
    names.sort(key=lambda g: not labels[groups == g].all())
    fold = np.zeros(len(groups), dtype=int)
    for k, name in enumerate(names):
        fold[groups == name] = k % 2
    for half in (0, 1):
        side = labels[fold == half]
        if side.all() or not side.any():
            raise VoxauditError(
                "cross-fitting (no shadow models) needs members and non-members in both halves "
                f"of the evaluated speakers; {len(names)} speaker(s) cannot give that: give "
                "shadow models, or evaluate more speakers"
            )
    return fold


@dataclass
class Scored:
    """One attack's scores and decisions on the rows of one model, and its AUROC on the data
    it was fitted on (shadow rows, or the other half when cross-fitting; never these rows)."""

    scores: np.ndarray
    predictions: np.ndarray | None  # None: the attack gives scores only
    shadow_auroc: float | None


@dataclass
class View:
    """The rows one model is scored on, and their membership labels."""

    data: AttackData
    labels: np.ndarray


def fit_and_score(
    make: Callable[[View], Any],
    shadow: View | None,
    evaluated: Mapping[str, View],
    groups: np.ndarray,
    seed: int,
) -> tuple[dict[str, Scored], Any]:
    """Fit attacks from ``make`` (fresh estimators for the rows they will be fitted on) and
    score each model's rows; the scores by role, and the attack fitted on shadow rows (None
    when cross-fitting, where each role had two).

    With ``shadow`` rows the attack is fitted once on them. Without (cross-fitting), every
    model's rows are scored by two attacks, each fitted on the target's rows of the other half
    of the speakers (``groups``) with that model's labels, so that the permuted-label null
    control goes through exactly the pipeline of the target.
    """
    if shadow is not None:
        attack = make(shadow).fit(shadow.data, shadow.labels)
        return {role: _scored(attack, view.data) for role, view in evaluated.items()}, attack
    target = evaluated["target"]
    fold = cross_fit_halves(groups, target.labels, seed)
    out = {}
    for role, view in evaluated.items():
        scores = np.empty(len(view.labels))
        predictions = np.empty(len(view.labels), dtype=bool)
        aurocs = []
        for k in (0, 1):
            fitted_on, scored = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            fitting = View(target.data.take(fitted_on), view.labels[fitted_on])
            try:
                attack = make(fitting).fit(fitting.data, fitting.labels)
            except VoxauditError as exc:  # the attack's own folds, on a half too small for them
                members = int(fitting.labels.sum())
                raise VoxauditError(
                    f"cross-fitting (no shadow models): an attack for the {role} model, fitted "
                    f"on half of the evaluated speakers ({members} member and "
                    f"{len(fitting.labels) - members} non-member rows), failed: {exc}. Give "
                    "shadow models, or evaluate more recordings (max_per_side)"
                ) from exc
            part = _scored(attack, view.data.take(scored))
            scores[scored], predictions[scored] = part.scores, part.predictions
            if part.shadow_auroc is not None:
                aurocs.append(part.shadow_auroc)
        out[role] = Scored(scores, predictions, float(np.mean(aurocs)) if aurocs else None)
    return out, None


def _scored(attack: Any, data: AttackData) -> Scored:
    return Scored(
        np.asarray(attack.score(data), dtype=np.float64),
        np.asarray(attack.predict(data), dtype=bool),
        getattr(attack, "shadow_auroc_", None),
    )


def entries(
    name: str,
    features: str,
    scored: Mapping[str, Scored],
    labels: Mapping[str, np.ndarray],
    ids: Mapping[str, Sequence[str]],
    speakers: Mapping[str, Sequence[str]],
    config: AuditConfig,
    *,
    importances: Mapping[str, float] | None = None,
    notes: Mapping[str, str | None] | str | None = None,
    headline_candidate: bool = True,
) -> list[Entry]:
    """Result rows of one attack: the target first, then the null control."""
    rows = []
    for role in ("target", "null"):
        if role not in scored:
            continue
        note = notes.get(role) if isinstance(notes, Mapping) else notes
        rows.append(
            result_entry(
                name, features, role, scored[role].scores, labels[role],
                ids=list(ids[role]), speakers=list(speakers[role]),
                predictions=scored[role].predictions,
                feature_importances=importances if role == "target" else None,
                n_bootstrap=config.n_bootstrap, seed=config.seed, notes=note,
                shadow_auroc=scored[role].shadow_auroc, headline_candidate=headline_candidate,
            )
        )  # fmt: skip
    return rows
