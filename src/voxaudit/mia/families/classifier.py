"""The utterance-classifier family: was this recording in the speaker-ID (or spoken-word)
classifier's training set? (papers 002 and 004), at sample level.

Features (``voxaudit.mia.classifier_features``): whether the prediction is right and the
decision boundary's distance under Gaussian noise (black box), the sorted probability vector,
loss, confidence and entropies (grey box). Attacks: Shokri et al.'s shadow attack on the sorted
probabilities, global and per class; metric thresholds (loss, confidence, entropy, modified
entropy); label-only attacks (correctness, boundary distance, a shadow attack on both); and the
calibrated LiRA and RMIA on the logit-scaled true-class confidence. Classifiers have no
gradient features yet, so a white-box audit runs the grey-box attacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.classifier_features import ClassifierFeatures, true_label_loss
from voxaudit.mia.composite_attacks import PerClassAttack
from voxaudit.mia.configs import ClassifierAuditConfig
from voxaudit.mia.core import AuditedModel, AuditRun, Entry
from voxaudit.mia.evaluation import EvalSet
from voxaudit.mia.families.tabular import Fitted, TabularFamily, View
from voxaudit.mia.fitting import grouped_folds
from voxaudit.mia.table import FeatureTable
from voxaudit.models.access import Access
from voxaudit.models.classifier import label_function


class ClassifierFamily(TabularFamily):
    """Utterance classifiers (``voxaudit.models.base.UtteranceClassifier``)."""

    name = "classifier"
    train_kind = "classifier"
    levels = ("sample",)
    config_type = ClassifierAuditConfig
    statistic_name = "true-label confidence"
    uses_classes = True
    thresholds: ClassVar[Mapping[str, str]] = {
        "correct": "black",
        "boundary_snr_db": "black",
        "loss": "grey",
        "confidence": "grey",
        "entropy": "grey",
        "modified_entropy": "grey",
    }
    feature_sets: ClassVar[Mapping[str, tuple[tuple[str, ...], str]]] = {
        "label only": (("prediction", "noise"), "black"),
        "sorted probabilities": (("probability",), "grey"),
        "all features": (("prediction", "noise", "probability", "loss", "confidence"), "grey"),
    }

    def label_of(self, model: AuditedModel) -> Callable[[Utterance], str]:
        return label_function(model.label or "speaker")

    def extractor(self, config: ClassifierAuditConfig) -> ClassifierFeatures:
        return ClassifierFeatures(
            top_k=config.top_k,
            snrs_db=config.snrs_db,
            draws=config.draws,
            batch_size=config.batch_size,
            seed=config.seed,
        )

    def loss(self, access: Access, waves: list[np.ndarray], labels: list[str]) -> np.ndarray:
        return true_label_loss(access, waves, labels)

    def check_data(
        self, corpus: Corpus, split: AuditSplit, shadow_roles: Sequence[str], config: Any
    ) -> None:
        if split.level != "sample":
            raise VoxauditError(
                "a classifier membership audit asks about recordings: it needs a sample-level split"
            )

    def check(self, run: AuditRun) -> None:
        target = run.target
        for model in (target, *run.shadows, *([run.null] if run.null else []), *run.references):
            if not hasattr(model.model, "predict_proba"):
                raise VoxauditError(
                    f"{model.source}: {type(model.model).__name__} has no predict_proba(); the "
                    "classifier audit needs an UtteranceClassifier (voxaudit.models.base)"
                )
            if model.label != target.label:
                raise VoxauditError(
                    f"{model.source}: classifies by {model.label!r}, the target by {target.label!r}"
                )
        # Every recording's label is read now (a column some rows lack fails here, with the
        # row named), not after the features of half the corpus were extracted.
        label_of = self.label_of(target)
        for utterance in run.corpus:
            label_of(utterance)

    def extra_attacks(self, run: AuditRun, fitted: Fitted) -> list[Entry]:
        """Shokri et al.'s attack with one attack model per true class, on sorted probabilities."""
        c = run.config
        if not c.allows("grey"):
            return []
        made: list[PerClassAttack] = []

        def make(view: View) -> PerClassAttack:
            attack = PerClassAttack(
                classifiers=c.classifiers,
                feature_sets={"sorted probabilities": ("probability",)},
                cv=grouped_folds(c.cv, view.labels, view.data.groups),
                min_per_side=c.min_per_side,
                random_state=c.seed,
                decision=c.decision,
            )
            made.append(attack)
            return attack

        rows, attack = fitted.evaluate_with_attack("shadow attack, per class",
                                                   "sorted probabilities", make)  # fmt: skip
        last = attack or made[-1]
        classes = len(np.unique(np.concatenate(list((fitted.classes or {}).values()))))
        note = (
            f"{len(last.per_class_)} of {classes} classes have their own attack model (at least "
            f"{c.min_per_side} member and non-member rows); the rest use the global one"
        )
        for row in rows:
            row["notes"] = note
        return rows

    def setup_extra(
        self, run: AuditRun, tables: dict[str, FeatureTable], sets: dict[str, EvalSet]
    ) -> dict[str, Any]:
        def accuracy(role: str) -> dict[str, float]:
            # The train-test gap the attacks exploit (paper 004, section 4.3).
            correct = tables[role].column("correct").astype(bool)
            member = sets[role].is_member
            return {
                "members": round(float(correct[member].mean()), 4),
                "nonmembers": round(float(correct[~member].mean()), 4),
            }

        return {"classification_accuracy": {role: accuracy(role) for role in tables}}

    def describe(self, model: AuditedModel) -> dict[str, Any]:
        return {"label": model.label, "classes": len(model.model.classes)}

    def load(self, path: str | Path, role: str | None = None, device: str = "auto") -> AuditedModel:
        from voxaudit.models.checkpoints import checkpoint_role, resolve_device
        from voxaudit.models.classifier import SpokenClassifier

        role, train_ids = checkpoint_role(path, role)
        classifier = SpokenClassifier.load(path, resolve_device(device))
        return AuditedModel(role, str(path), classifier, train_ids, classifier.model.label)

    def utility(self, model: AuditedModel, corpus: Corpus, ids: Sequence[str]) -> tuple[str, float]:
        classifier = model.model
        label_of = self.label_of(model)
        utterances = [corpus[i] for i in ids]
        probabilities = classifier.predict_proba(
            [u.load(classifier.sample_rate) for u in utterances]
        )
        predicted = [classifier.classes[k] for k in np.asarray(probabilities).argmax(axis=1)]
        truth = [label_of(u) for u in utterances]
        return "accuracy", float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
