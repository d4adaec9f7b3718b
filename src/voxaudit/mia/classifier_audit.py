"""Sample-level membership audit of an utterance classifier (``voxaudit mia classifier``).

"Was this recording in the speaker-ID (or spoken-digit) classifier's training set?" (papers 002
and 004), on a sample-level split, under one threat model. One run:

1. queries each model (target, shadows, null control) on its balanced evaluation set through
   ``Access`` at the audit's threat level and extracts :mod:`voxaudit.mia.classifier_features`
   (cached, so a stopped run resumes);
2. fits every attack on the shadow models' features only:

   * Shokri et al.'s shadow-training attack on the sorted probability vector, global and per
     class (:class:`~voxaudit.mia.attacks.PerClassAttack`: one attack model per true class,
     the per-class member probabilities pooled into one ROC), and a shadow attack on every
     feature the threat shows;
   * metric thresholds: loss, confidence, entropy, modified entropy (grey box);
   * label-only attacks: correctness (Yeom et al.'s gap attack), the decision-boundary distance
     under Gaussian noise, and a shadow attack on both (black box);
   * calibrated LiRA (offline with a fixed variance; online when some shadows trained on each
     evaluated utterance and some did not) and RMIA, with the shadows as reference models, on
     the logit-scaled true-class confidence (grey box);

3. scores the target and the null control (a model that never saw the evaluated utterances,
   whose AUROC must contain 0.5) with every attack; accuracy, precision and recall of each
   attack's own decisions (thresholds chosen on shadow data), AUROC and TPR at low FPR, each
   with a bootstrap 95% interval, go to ``report.json`` and ``report.html``.

Classifiers have no gradient features yet, so a white-box audit runs the grey-box attacks.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxaudit.data.corpus import Corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import CLASSIFIERS, PerClassAttack, ThresholdAttack, parse_decision
from voxaudit.mia.audit_common import (
    calibrated_results,
    checkpoint_role,
    evaluate,
    evaluation_sets,
    fit_shadow_attack,
    grouped_folds,
    population,
    reference_membership,
    selected,
    stacked,
)
from voxaudit.mia.classifier_features import ClassifierFeatures, true_label_loss
from voxaudit.mia.evaluation import EvalSet
from voxaudit.mia.feature_cache import model_digest
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access, AccessLevel
from voxaudit.models.classifier import label_function
from voxaudit.progress import track
from voxaudit.report.mia import new_report, result_entry, write_report

#: Shadow attacks: name -> (feature families, least threat that has them).
SHADOW_ATTACKS: dict[str, tuple[tuple[str, ...], str]] = {
    "label only": (("prediction", "noise"), "black"),
    "sorted probabilities": (("probability",), "grey"),
    "all features": (("prediction", "noise", "probability", "loss", "confidence"), "grey"),
}
#: Metric threshold attacks: column -> least threat that has it.
THRESHOLDS = {
    "correct": "black",
    "boundary_snr_db": "black",
    "loss": "grey",
    "confidence": "grey",
    "entropy": "grey",
    "modified_entropy": "grey",
}


@dataclass(frozen=True)
class ClassifierAuditConfig:
    """What a classifier audit extracts and how it evaluates."""

    threat: str = "grey"
    top_k: int = 3  # length of the sorted probability vector
    snrs_db: tuple[float, ...] = (30.0, 20.0, 10.0, 5.0, 0.0, -5.0)
    draws: int = 8
    max_per_side: int | None = 500  # members (and as many non-members) per model
    classifiers: tuple[str, ...] = CLASSIFIERS
    cv: int = 5  # cross-validation folds on shadow data (fewer when there are fewer speakers)
    decision: str = "accuracy"  # attacks' operating point on shadow rows: recall=R, fpr=F
    min_per_side: int = 4  # per-class attack: a class's fewest member / non-member shadow rows
    population: int = 500  # RMIA population utterances (known non-members of the target)
    batch_size: int = 16
    n_bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.threat not in [level.value for level in AccessLevel]:
            raise VoxauditError(f"unknown threat {self.threat!r}; use black, grey or white")
        parse_decision(self.decision)

    def allows(self, threat: str) -> bool:
        return AccessLevel(self.threat).rank >= AccessLevel(threat).rank


@dataclass
class AuditClassifier:
    """A classifier the audit queries: its role, where it came from, the model and its label.

    ``label`` names what its classes are (``"speaker"`` or ``"transcript"``, see
    ``voxaudit.models.classifier.LABELS``). ``trained_ids``, when known, are the utterances it
    really trained on (a validation share carved from its pool is then not counted as members).
    """

    role: str  # "target", "shadow-K" or "null"
    source: str
    classifier: Any  # a SpokenClassifier, or anything with classes, sample_rate, predict_proba
    label: str
    trained_ids: frozenset[str] | None = None


def audit_classifier(
    corpus: Corpus,
    split: AuditSplit,
    target: AuditClassifier,
    shadows: Sequence[AuditClassifier],
    out_dir: str | Path,
    null: AuditClassifier | None = None,
    config: ClassifierAuditConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the audit, write ``report.json`` and ``report.html`` to ``out_dir``; the report."""
    config = config or ClassifierAuditConfig()
    out_dir = Path(out_dir)
    started = time.time()
    split.check(corpus)
    _check(split, target, shadows, null)
    sets, null = evaluation_sets(
        corpus, split, target, shadows, null, max_per_side=config.max_per_side,
        seed=config.seed,
    )  # fmt: skip
    extractor = ClassifierFeatures(
        top_k=config.top_k,
        snrs_db=config.snrs_db,
        draws=config.draws,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    tables = {
        m.role: _features(m, sets[m.role], corpus, extractor, config, out_dir, progress)
        for m in (target, *shadows, null)
    }
    shadow_roles = [s.role for s in shadows]
    label_of = label_function(target.label)
    classes = {role: np.array([label_of(corpus[i]) for i in s.ids]) for role, s in sets.items()}
    results, selection = _shadow_attacks(tables, sets, classes, shadow_roles, config)
    results += _threshold_attacks(tables, sets, shadow_roles, config)
    if config.allows("grey"):
        calibrated, left_out = _calibrated(
            corpus, split, sets, target, shadows, null, config, progress
        )
        results += calibrated
        if left_out:
            selection["calibrated attacks left out"] = left_out
    report = new_report(
        _setup(corpus, split, target, shadows, null, sets, tables, config, started),
        results=results,
        selection=selection,
    )
    write_report(out_dir, report)
    return report


def _check(
    split: AuditSplit,
    target: AuditClassifier,
    shadows: Sequence[AuditClassifier],
    null: AuditClassifier | None,
) -> None:
    """Refuse what cannot make a valid sample-level classifier audit, naming the culprit."""
    if split.level != "sample":
        raise VoxauditError(
            "a classifier membership audit asks about recordings: it needs a sample-level split"
        )
    if not shadows:
        raise VoxauditError("a classifier membership audit needs at least one shadow model")
    roles = [s.role for s in shadows]
    if len(set(roles)) != len(roles) or not set(roles) <= set(split.roles[1:]):
        raise VoxauditError(
            f"shadow roles {roles} must be distinct shadow roles of the split: "
            + ", ".join(split.roles[1:])
        )
    for model in (target, *shadows, *([null] if null else [])):
        label_function(model.label)
        if model.label != target.label:
            raise VoxauditError(
                f"{model.source}: classifies by {model.label!r}, the target by {target.label!r}"
            )


def _features(
    model: AuditClassifier,
    eval_set: EvalSet,
    corpus: Corpus,
    extractor: ClassifierFeatures,
    config: ClassifierAuditConfig,
    out_dir: Path,
    progress: bool,
) -> FeatureTable:
    access = Access(model.classifier, config.threat)
    label_of = label_function(model.label)
    utterances = [corpus[i] for i in eval_set.ids]
    return extractor.extract(
        access,
        [u.load(access.sample_rate) for u in utterances],
        [label_of(u) for u in utterances],
        list(eval_set.ids),
        list(eval_set.speakers),
        cache_dir=out_dir / "features" / model.role,
        progress=progress,
        model_id=model_digest(model.classifier, model.source),
    )


def _shadow_attacks(
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    classes: dict[str, np.ndarray],
    shadow_roles: Sequence[str],
    config: ClassifierAuditConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Shadow-model attacks per feature set, and Shokri's per-class attack."""
    shadow_table, labels, groups = stacked(tables, sets, shadow_roles)
    results: list[dict[str, Any]] = []
    selection: dict[str, Any] = {"groups": "speaker", "ablations": {}}
    for name, (families, threat) in SHADOW_ATTACKS.items():
        if not config.allows(threat):
            continue
        attack = fit_shadow_attack(config, name, families, shadow_table, labels, groups)
        selection["ablations"][name] = selected(attack)
        importances = attack.feature_importances(shadow_table, labels)
        results += evaluate("shadow attack", name, attack, tables, sets, config, importances)
    if config.allows("grey"):
        results += _per_class(
            shadow_table, labels, groups, tables, sets, classes, config, selection
        )
    return results, selection


def _per_class(
    shadow_table: FeatureTable,
    labels: np.ndarray,
    groups: np.ndarray,
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    classes: dict[str, np.ndarray],
    config: ClassifierAuditConfig,
    selection: dict[str, Any],
) -> list[dict[str, Any]]:
    """Shokri et al.'s attack with one attack model per true class, on sorted probabilities."""
    shadow_classes = np.concatenate([classes[role] for role in sets if role.startswith("shadow")])
    attack = PerClassAttack(
        classifiers=config.classifiers,
        feature_sets={"sorted probabilities": ("probability",)},
        cv=grouped_folds(config.cv, labels, groups),
        min_per_side=config.min_per_side,
        random_state=config.seed,
        decision=config.decision,
    ).fit(AttackData(shadow_table, classes=shadow_classes, groups=groups), labels)
    fitted = len(attack.per_class_)
    total = len(np.unique(shadow_classes))
    selection["per class"] = {**selected(attack.global_), "classes_with_own_model": fitted}
    notes = (
        f"{fitted} of {total} classes have their own attack model (at least "
        f"{config.min_per_side} member and non-member shadow rows); the rest use the global one"
    )
    data = {role: AttackData(tables[role], classes=classes[role]) for role in ("target", "null")}
    return [
        result_entry(
            "shadow attack, per class", "sorted probabilities", role,
            attack.score(data[role]), sets[role].is_member,
            predictions=attack.predict(data[role]),
            n_bootstrap=config.n_bootstrap, seed=config.seed, notes=notes,
        )
        for role in ("target", "null")
    ]  # fmt: skip


def _threshold_attacks(
    tables: dict[str, FeatureTable],
    sets: dict[str, EvalSet],
    shadow_roles: Sequence[str],
    config: ClassifierAuditConfig,
) -> list[dict[str, Any]]:
    """One-feature thresholds, direction and cut chosen on the shadow rows."""
    shadow_table, labels, _ = stacked(tables, sets, shadow_roles)
    results: list[dict[str, Any]] = []
    for column, threat in THRESHOLDS.items():
        if config.allows(threat) and column in shadow_table.columns:
            attack = ThresholdAttack(column, decision=config.decision).fit(shadow_table, labels)
            results += evaluate(f"threshold on {column}", column, attack, tables, sets, config)
    return results


def _calibrated(
    corpus: Corpus,
    split: AuditSplit,
    sets: dict[str, EvalSet],
    target: AuditClassifier,
    shadows: Sequence[AuditClassifier],
    null: AuditClassifier,
    config: ClassifierAuditConfig,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """LiRA and RMIA on the true-label loss, with the shadows as reference models."""
    candidates = list(sets["target"].ids)
    extra = population(split, candidates, [s.role for s in shadows], config)
    ids = candidates + extra
    label_of = label_function(target.label)
    utterances = [corpus[i] for i in ids]
    waves = [u.load(target.classifier.sample_rate) for u in utterances]
    labels = [label_of(u) for u in utterances]

    def losses(model: AuditClassifier) -> np.ndarray:
        return true_label_loss(Access(model.classifier, config.threat), waves, labels)

    reference = np.stack([losses(s) for s in track(shadows, "reference losses", enabled=progress)])
    reference_in = reference_membership(split, shadows, ids)
    observed = {"target": losses(target), "null": losses(null)}
    return calibrated_results(
        "true-label confidence", reference, reference_in, observed, sets["target"], config
    )


def _setup(
    corpus: Corpus,
    split: AuditSplit,
    target: AuditClassifier,
    shadows: Sequence[AuditClassifier],
    null: AuditClassifier,
    sets: dict[str, EvalSet],
    tables: dict[str, FeatureTable],
    config: ClassifierAuditConfig,
    started: float,
) -> dict[str, Any]:
    def accuracy(role: str) -> dict[str, float]:
        # The train-test gap the attacks exploit (paper 004, section 4.3).
        correct = tables[role].column("correct").astype(bool)
        member = sets[role].is_member
        return {
            "members": round(float(correct[member].mean()), 4),
            "nonmembers": round(float(correct[~member].mean()), 4),
        }

    model = getattr(target.classifier, "model", target.classifier)
    return {
        "family": "classifier",
        "model_class": type(model).__name__,
        "label": target.label,
        "classes": len(target.classifier.classes),
        "target": target.source,
        "shadows": [s.source for s in shadows],
        "null_control": null.source,
        "level": split.level,
        "threat": config.threat,
        "corpus": {"name": corpus.name, "fingerprint": split.corpus_fingerprint},
        "split": split.summary(),
        "evaluated": {
            role: {"members": s.n_members, "nonmembers": s.n_nonmembers} for role, s in sets.items()
        },
        "classification_accuracy": {role: accuracy(role) for role in tables},
        "config": asdict(config),
        "seconds": round(time.time() - started, 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "device": str(next(model.parameters()).device)
            if hasattr(model, "parameters")
            else "cpu",
        },
    }


def load_classifier_model(
    path: str | Path, role: str | None = None, device: str = "auto"
) -> AuditClassifier:
    """A built-in utterance classifier from its ``voxaudit train`` run folder (or checkpoint).

    The role comes from the checkpoint's metadata; ``role`` overrides it (e.g. ``"null"``) and
    must agree with it when both are known, except for the null control.
    """
    from voxaudit.models.classifier import SpokenClassifier
    from voxaudit.train.loop import resolve_device

    role, train_ids = checkpoint_role(path, role)
    classifier = SpokenClassifier.load(path, resolve_device(device))
    return AuditClassifier(role, str(path), classifier, classifier.model.label, train_ids)
