"""The classifier membership audit end to end, on models whose membership answer is known."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import make_split
from voxaudit.data.synth import synthesize_corpus, synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.composite_attacks import PerClassAttack
from voxaudit.mia.configs import ClassifierAuditConfig
from voxaudit.mia.core import AuditedModel, run_audit
from voxaudit.mia.families.classifier import ClassifierFamily
from voxaudit.mia.results import read_report
from voxaudit.mia.table import FeatureTable
from voxaudit.models.classifier import SpokenClassifier, classifier_for
from voxaudit.train.run import train_model

FAST = {
    "snrs_db": (20.0, 0.0),
    "draws": 2,
    "classifiers": ("logistic",),
    "n_bootstrap": 200,
    "min_per_side": 2,
}
LABEL_ONLY = {"label only", "correct", "boundary_snr_db"}


def audit_classifier(*args, **kwargs):
    return run_audit(ClassifierFamily(), *args, **kwargs)


@pytest.fixture(scope="module")
def corpus():
    return synthesize_corpus_in_memory(n_speakers=4, per_speaker=16, seed=5)


class Memorizer:
    """A speaker-ID 'model' that is sure of the recordings it trained on and unsure of the rest.

    It knows a recording by the hash of its samples, so any noise makes it a stranger: a
    perfectly overfitted classifier, whose membership leak every attack should find.
    """

    def __init__(self, corpus, train_ids, seed):
        self.sample_rate = 16000
        self.classes = sorted({u.speaker for u in corpus})
        self.known = {self._key(corpus[i].load(16000)): corpus[i].speaker for i in train_ids}
        self.seed = seed

    @staticmethod
    def _key(wave):
        return hashlib.sha1(np.asarray(wave, dtype=np.float32).tobytes()).hexdigest()

    def predict_proba(self, waveforms):
        rows = []
        for wave in waveforms:
            key = self._key(wave)
            if key in self.known:
                row = np.full(len(self.classes), 0.01)
                row[self.classes.index(self.known[key])] = 1.0
            else:  # a stranger: a guess, the same for the same recording
                digest = int(key[:8], 16)
                row = np.random.default_rng([self.seed, digest]).dirichlet(np.ones(4))
            rows.append(row / row.sum())
        return np.array(rows)

    def utterance_loss(self, waveforms, labels):
        rows = self.predict_proba(waveforms)
        return np.array(
            [-np.log(r[self.classes.index(y)]) for r, y in zip(rows, labels, strict=True)]
        )


def _memorizer(corpus, split, role, seed):
    model = Memorizer(corpus, split.train_ids(role), seed)
    return AuditedModel(role, f"memorizer-{role}", model, label="speaker")


def test_audit_finds_a_memorizer_and_its_null_control_sits_at_chance(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=2)
    target = _memorizer(corpus, split, "target", 0)
    shadows = [_memorizer(corpus, split, f"shadow-{k}", k + 1) for k in range(2)]
    report = audit_classifier(
        corpus, split, target, shadows, tmp_path,
        config=ClassifierAuditConfig(threat="grey", **FAST), progress=False,
    )  # fmt: skip
    assert read_report(tmp_path) == json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "examples.csv").exists()
    results = report["results"]
    targets = sorted((r["name"], r["features"]) for r in results if r["model"] == "target")
    nulls = sorted((r["name"], r["features"]) for r in results if r["model"] == "null")
    assert targets == nulls
    names = {name for name, _ in targets}
    assert {
        "shadow attack", "shadow attack, per class", "threshold on loss", "threshold on correct",
        "threshold on modified_entropy", "threshold on boundary_snr_db", "RMIA",
        "LiRA offline, fixed variance",
    } <= names  # fmt: skip
    assert {f for _, f in targets} >= {"sorted probabilities", "label only", "all features"}
    for r in results:
        auroc = r["metrics"]["auroc"]
        if r["model"] == "target":
            # Sure of every member and never of a stranger: every grey-box attack separates
            # them. Labels alone tell less: a stranger's guess is right a quarter of the time.
            label_only = r["features"] in LABEL_ONLY
            assert auroc["value"] > (0.7 if label_only else 0.9), (r["name"], r["features"], auroc)
            assert {"precision", "recall"} <= set(r["metrics"]) or r["name"].startswith(
                ("LiRA", "RMIA")
            )
        else:
            assert auroc["low"] <= 0.5 <= auroc["high"], (r["name"], r["features"], auroc)
    accuracy = report["setup"]["classification_accuracy"]["target"]
    assert accuracy["members"] == 1.0 and accuracy["nonmembers"] < 1.0
    assert report["setup"]["null_control"] == "memorizer-shadow-0 (as null control)"


def test_black_box_runs_label_only_attacks_on_a_real_classifier(corpus, tmp_path):
    split = make_split(corpus, "sample", seed=0, n_shadow=2, shadow_mode="halves")
    models = []
    for k, role in enumerate(split.roles[:3]):
        torch.manual_seed(k)
        net = classifier_for(list(corpus), "speaker", hidden=8, n_mels=16)
        models.append(AuditedModel(role, f"tiny-{role}", SpokenClassifier(net), label="speaker"))
    report = audit_classifier(
        corpus, split, models[0], models[1:], tmp_path,
        config=ClassifierAuditConfig(threat="black", **FAST), progress=False,
    )  # fmt: skip
    features = {r["features"] for r in report["results"]}
    assert features == LABEL_ONLY
    assert report["setup"]["threat"] == "black"


def test_what_cannot_make_an_audit_is_refused(corpus, tmp_path):
    sample = make_split(corpus, "sample", seed=0, n_shadow=1)
    target = _memorizer(corpus, sample, "target", 0)
    shadow = _memorizer(corpus, sample, "shadow-0", 1)
    with pytest.raises(VoxauditError, match="shadow roles"):
        audit_classifier(
            corpus, sample, target, [_memorizer(corpus, sample, "target", 2)], tmp_path
        )
    digits = AuditedModel("shadow-0", "digits", shadow.model, label="transcript")
    with pytest.raises(VoxauditError, match="classifies by 'transcript'"):
        audit_classifier(corpus, sample, target, [digits], tmp_path)
    speaker = make_split(corpus, "speaker", seed=0, n_shadow=1, reference_speakers=0)
    with pytest.raises(VoxauditError, match="sample-level split"):
        audit_classifier(corpus, speaker, target, [shadow], tmp_path)


def test_load_classifier_model_reads_role_label_and_trained_ids(tmp_path):
    synthesize_corpus(tmp_path / "c", n_speakers=2, per_speaker=4, workers=1, progress=False)
    split = make_split(load_corpus(tmp_path / "c"), "sample", seed=0, n_shadow=1)
    config = {
        "model": {"label": "speaker", "hidden": 8, "n_mels": 16},
        "train": {"epochs": 1, "batch_size": 4, "device": "cpu"},
    }
    run = tmp_path / "run"
    train_model(
        "classifier", tmp_path / "c", split.save(tmp_path / "s.json"), "shadow-0", config, run,
        progress=False,
    )  # fmt: skip
    model = ClassifierFamily().load(run, device="cpu")
    assert (model.role, model.label) == ("shadow-0", "speaker")
    assert model.trained_ids == frozenset(split.train_ids("shadow-0"))
    assert ClassifierFamily().load(run, "null", device="cpu").role == "null"
    with pytest.raises(VoxauditError, match="trained as 'shadow-0', not as 'target'"):
        ClassifierFamily().load(run, "target", device="cpu")


def test_per_class_attack_learns_what_membership_looks_like_in_each_class():
    # Members sit high in class "a" and low in class "b": pooled, the feature says nothing.
    rng = np.random.default_rng(0)
    n = 40
    classes = np.repeat(["a", "b", "c"], [n, n, 4])
    member = np.tile([True, False], len(classes) // 2)
    sign = np.where(classes == "b", -1.0, 1.0)
    x = sign * np.where(member, 1.0, -1.0) + 0.3 * rng.standard_normal(len(classes))
    ids = [f"r{k}" for k in range(len(classes))]
    table = FeatureTable(ids, ids, ["prob_top1"], ["probability"], x[:, None])
    data = AttackData(table, classes=classes)
    attack = PerClassAttack(classifiers=("logistic",), cv=3, min_per_side=4).fit(data, member)
    # "c" has 2 members and 2 non-members: too few for a model of its own.
    assert set(attack.per_class_) == {"a", "b"}
    scores = attack.score(data)
    ab = classes != "c"
    assert roc_auc_score(member[ab], scores[ab]) > 0.95
    assert roc_auc_score(member[ab], attack.global_.score(table)[ab]) < 0.7
    assert (attack.predict(data)[ab] == member[ab]).mean() > 0.9
