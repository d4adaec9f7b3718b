"""Steps every membership audit over feature tables shares (ASR, classifiers).

The audits differ in what they query and which features they extract; once each model's
feature table and evaluation set exist, fitting shadow attacks, scoring the target beside its
null control and running the calibrated LiRA/RMIA on a per-utterance loss are the same. The
``config`` these helpers take is any audit config with the fields they read (``classifiers``,
``cv``, ``seed``, ``n_bootstrap``, ``population``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import ShadowAttack
from voxaudit.mia.calibrated import RMIA, LiRA, logit_confidence
from voxaudit.mia.evaluation import EvalSet, evaluation_set
from voxaudit.mia.table import FeatureTable
from voxaudit.report.mia import result_entry


class _Role(Protocol):
    role: str
    source: str
    trained_ids: frozenset[str] | None


M = TypeVar("M", bound=_Role)


def null_from_shadows(
    corpus: Corpus,
    split: AuditSplit,
    shadows: Sequence[M],
    ids: Collection[str] = (),
    speakers: Collection[str] = (),
) -> M:
    """A shadow that never trained on the evaluated utterances ``ids`` (at speaker level: nor
    on the evaluated ``speakers``), so it can serve as the null control."""
    for shadow in shadows:
        if not _saw_evidence(corpus, split, membership_ids(split, shadow.role), ids, speakers):
            return shadow
    raise VoxauditError(
        "every shadow model trained on some of the target's evaluated data (random halves "
        "including the target?): pass a null-control model trained on other data"
    )


def _saw_evidence(
    corpus: Corpus,
    split: AuditSplit,
    seen: Collection[str],
    ids: Collection[str],
    speakers: Collection[str],
) -> bool:
    """Whether a model that trained on ``seen`` saw any evaluated utterance (or voice)."""
    overlap = bool(set(seen) & set(ids))
    if split.level == "speaker":
        # At speaker level, having trained on the voice is having seen the evidence.
        overlap |= bool({corpus[i].speaker for i in seen if i in corpus} & set(speakers))
    return overlap


def evaluation_sets(
    corpus: Corpus,
    split: AuditSplit,
    target: M,
    shadows: Sequence[M],
    null: M | None,
    *,
    max_per_side: int | None,
    seed: int,
    evidence: str = "unseen",
) -> tuple[dict[str, EvalSet], M]:
    """Each model's balanced evaluation set by role, and the null control.

    Without a ``null`` model, a shadow that never saw the target's evaluated data is the null
    control. The null control answers for the target's evaluation set.
    """
    sets = {
        m.role: evaluation_set(
            split, corpus, m.role, max_per_side=max_per_side, evidence=evidence,
            trained=m.trained_ids, seed=seed,
        )
        for m in (target, *shadows)
    }  # fmt: skip
    if null is None:
        target_set = sets["target"]
        shadow = null_from_shadows(corpus, split, shadows, target_set.ids, target_set.speakers)
        null = replace(shadow, role="null", source=f"{shadow.source} (as null control)")
    elif null.trained_ids is not None and _saw_evidence(
        corpus, split, null.trained_ids, sets["target"].ids, sets["target"].speakers
    ):
        raise VoxauditError(
            f"null control {null.source} trained on some of the target's evaluated data "
            "(utterances or, at speaker level, voices): it cannot show what chance looks like"
        )
    sets["null"] = sets["target"]
    return sets, null


def stacked(tables: dict[str, FeatureTable], sets: dict[str, EvalSet], roles: Sequence[str]):
    """Shadow features stacked, their membership labels, and speakers as CV groups.

    Grouping by speaker keeps a voice (member for one shadow, non-member for another under
    random halves) from sitting on both sides of a cross-validation fold.
    """
    table = FeatureTable.concat_rows([prefixed(tables[r], r) for r in roles])
    labels = np.concatenate([sets[r].is_member for r in roles])
    return table, labels, np.array(table.speakers)


def prefixed(table: FeatureTable, role: str) -> FeatureTable:
    """Row ids made unique across models (one utterance may be evaluated on several)."""
    return FeatureTable(
        tuple(f"{role}/{i}" for i in table.ids),
        table.speakers,
        table.columns,
        table.families,
        table.values,
    )


def grouped_folds(cv: int, labels: np.ndarray, groups: np.ndarray) -> int:
    """Cross-validation folds: ``cv``, but no more than groups on the smaller side (at least 2),
    since a group never straddles folds."""
    per_class = min(len(set(groups[labels])), len(set(groups[~labels])))
    return max(2, min(cv, per_class))


def fit_shadow_attack(
    config: Any,
    name: str,
    families: tuple[str, ...],
    table: FeatureTable,
    labels: np.ndarray,
    groups: np.ndarray,
) -> ShadowAttack:
    """A shadow attack over one feature set fitted on shadow data, folds as groups allow."""
    return ShadowAttack(
        classifiers=config.classifiers,
        feature_sets={name: families},
        cv=grouped_folds(config.cv, labels, groups),
        random_state=config.seed,
        decision=config.decision,
    ).fit(table, labels, groups=groups)


def selected(attack: ShadowAttack) -> dict[str, Any]:
    """What cross-validation on shadow data chose, for the report."""
    return {"selected": list(attack.selected_), "cv_results": attack.cv_results_}


def evaluate(
    name: str,
    features: str,
    attack: Any,
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    config: Any,
    importances: dict[str, float] | None = None,
    notes: str | None = None,
) -> list[dict[str, Any]]:
    """Result entries of a fitted attack on the target and on the null control."""
    return [
        result_entry(
            name,
            features,
            role,
            attack.score(tables[role]),
            sets[role].is_member,
            predictions=attack.predict(tables[role]),
            feature_importances=importances if role == "target" else None,
            n_bootstrap=config.n_bootstrap,
            seed=config.seed,
            notes=notes,
        )
        for role in ("target", "null")
    ]


def calibrated_results(
    features: str,
    reference: np.ndarray,
    reference_in: np.ndarray,
    observed: dict[str, np.ndarray],
    target_set: EvalSet,
    config: Any,
) -> tuple[list[dict[str, Any]], list[str]]:
    """LiRA (offline and online, as the references allow) and RMIA on per-utterance losses;
    their result entries, and why a LiRA variant was left out (see :func:`lira_variants`).

    ``reference[i, j]`` is shadow i's loss (a non-negative NLL) on column j: the target's
    evaluated utterances first, then RMIA's population (known non-members of the target);
    ``reference_in[i, j]`` whether shadow i trained on j; ``observed`` the target's and the null
    control's losses on the same columns. LiRA works on ``logit_confidence`` of the loss, RMIA
    on the likelihood ``exp(-loss)``.
    """
    n = len(target_set)
    ids = (*target_set.ids, *(f"population/{j}" for j in range(reference.shape[1] - n)))

    def data(
        role: str, column: str, statistic: Callable[[np.ndarray], np.ndarray], columns: slice
    ) -> AttackData:
        """One model's statistic on the columns, beside the references' (the same for all)."""
        rows = ids[columns]
        # The attacks read no speakers, and the population's are not passed here: ids stand in.
        table = FeatureTable(rows, rows, (column,), ("loss",), statistic(observed[role][columns]))
        return AttackData(
            table,
            reference=statistic(reference[:, columns]),
            reference_in=reference_in[:, columns],
            population=np.arange(len(rows)) >= n if len(rows) > n else None,
        )

    results: list[dict[str, Any]] = []
    variants, left_out = lira_variants(reference_in[:, :n])
    lira_data = {
        role: data(role, "logit_confidence", logit_confidence, slice(n))
        for role in ("target", "null")
    }
    for name, lira in variants:
        lira.fit(lira_data["target"])
        results += [
            result_entry(
                name, features, role,
                lira.score(lira_data[role]), target_set.is_member,
                n_bootstrap=config.n_bootstrap, seed=config.seed,
            )
            for role in ("target", "null")
        ]  # fmt: skip
    if reference.shape[1] > n:
        rmia_data = {
            role: data(role, "likelihood", lambda loss: np.exp(-loss), slice(None))
            for role in ("target", "null")
        }
        rmia = RMIA().fit(rmia_data["target"])
        results += [
            result_entry(
                "RMIA", features, role,
                rmia.score(rmia_data[role])[:n], target_set.is_member,
                n_bootstrap=config.n_bootstrap, seed=config.seed,
            )
            for role in ("target", "null")
        ]  # fmt: skip
    return results, left_out


def lira_variants(reference_in: np.ndarray) -> tuple[list[tuple[str, LiRA]], list[str]]:
    """The LiRA variants that references with membership ``reference_in`` (shadow x evaluated
    utterance) can fit, and why any other was left out.

    Offline LiRA pools one variance over the OUT references: every utterance needs one, and
    some utterance two. Online LiRA also needs an IN reference for every utterance (and two
    for some) and pools a variance per side; with 8 references or more and two of each side
    for every utterance it is also fitted with a variance per utterance and side (Carlini et
    al. fix the variance below 64 references: the pooled one is the robust variant).
    """
    outs, ins = (~reference_in).sum(axis=0), reference_in.sum(axis=0)
    out_side = bool((outs >= 1).all() and (outs >= 2).any())
    in_side = bool((ins >= 1).all() and (ins >= 2).any())
    variants: list[tuple[str, LiRA]] = []
    left_out = []
    if out_side:
        variants.append(("LiRA offline, fixed variance", LiRA(mode="offline", fixed_variance=True)))
    else:
        left_out.append(
            "LiRA offline: it needs, for every evaluated utterance, a shadow model that did not "
            "train on it, and two for some utterance (use more shadow models)"
        )
    if out_side and in_side:
        variants.append(("LiRA online, fixed variance", LiRA(mode="online", fixed_variance=True)))
        if len(reference_in) >= 8 and (ins >= 2).all() and (outs >= 2).all():
            variants.append(("LiRA online", LiRA(mode="online", fixed_variance=False)))
    elif ins.any():
        left_out.append(
            "LiRA online: it needs, for every evaluated utterance, a shadow model that trained "
            "on it and one that did not, and two of each for some utterance (use at least 4 "
            "shadow models on random halves that include the target's pools)"
        )
    return variants, left_out


def reference_membership(split: AuditSplit, shadows: Sequence[M], ids: Sequence[str]) -> np.ndarray:
    """Whether each shadow (reference) model trained on each of ``ids``: ``[shadow, id]``."""
    return np.stack([membership(split, s.role, ids) for s in shadows])


def population(
    split: AuditSplit, candidates: list[str], shadow_roles: list[str], config: Any
) -> list[str]:
    """Known non-members of the target for RMIA: utterances no target pool holds.

    Each must be OUT for at least one reference (shadow) model, or p(z) has no OUT estimate.
    """
    everything = {i for ids in split.pools.values() for i in ids}
    target_pools = {
        i for name, ids in split.pools.items() if name.startswith("target") for i in ids
    }
    in_every = set.intersection(*(membership_ids(split, role) for role in shadow_roles))
    pool = sorted(everything - target_pools - set(candidates) - in_every)
    rng = np.random.default_rng(config.seed)
    if len(pool) > config.population:
        pool = [pool[i] for i in np.sort(rng.choice(len(pool), config.population, replace=False))]
    return pool


def membership_ids(split: AuditSplit, role: str) -> set[str]:
    """Every utterance the model in ``role`` trained on (or, at speaker level, whose voice)."""
    return set(split.train_ids(role)) | set(split.unseen_ids(role))


def membership(split: AuditSplit, role: str, ids: Sequence[str]) -> np.ndarray:
    """Whether the model in ``role`` counts each of ``ids`` as a member."""
    trained = membership_ids(split, role)
    return np.array([i in trained for i in ids])


def checkpoint_role(path: str | Path, role: str | None) -> tuple[str, frozenset[str] | None]:
    """The split role a ``voxaudit train`` checkpoint was trained for, and its trained ids.

    ``role`` overrides the recorded one (e.g. ``"null"``) and must agree with it when both are
    known, except for the null control. The trained ids (None when unrecorded) exclude a
    validation share carved from the pool.
    """
    from voxaudit.train.loop import read_checkpoint

    state = read_checkpoint(path)
    recorded = (state.get("metadata") or {}).get("role")
    if role is None and recorded is None:
        raise VoxauditError(f"{path}: the checkpoint records no split role; give it explicitly")
    if role not in (None, "null") and recorded not in (None, role):
        raise VoxauditError(f"{path}: trained as {recorded!r}, not as {role!r}")
    train_ids = (state.get("data") or {}).get("train_ids")
    return role or recorded, frozenset(train_ids) if train_ids is not None else None
