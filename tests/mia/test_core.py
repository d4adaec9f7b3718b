"""The audit core: checks before work, the null control, cross-fitting, user attacks, results."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxaudit.data.corpus import Corpus, Utterance
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia import families
from voxaudit.mia.attacks import ThresholdAttack, register_attack, unregister_attack
from voxaudit.mia.configs import AsrAuditConfig, ClassifierAuditConfig
from voxaudit.mia.core import CROSS_FIT, PERMUTATION_NULL, AuditedModel, run_audit
from voxaudit.mia.fitting import cross_fit_halves, permuted

RATE = 8000
FAST = {"classifiers": ("logistic",), "cv": 2, "n_bootstrap": 100, "draws": 1, "snrs_db": (20.0,)}


class Lookup:
    """An ``UtteranceClassifier`` that is sure of the recordings it memorized, unsure of others."""

    sample_rate = RATE

    def __init__(self, corpus: Corpus, memorized: set[str]) -> None:
        self.classes = sorted({u.speaker for u in corpus})
        self.known = {self._key(u.load()): u.speaker for u in corpus if u.id in memorized}

    @staticmethod
    def _key(wave: np.ndarray) -> float:
        return round(float(np.asarray(wave, np.float64)[:200].sum()), 4)

    def predict_proba(self, waveforms):
        rows = []
        for w in waveforms:
            p = np.full(len(self.classes), 1.0)
            speaker = self.known.get(self._key(w))
            if speaker is not None:
                p[self.classes.index(speaker)] = 50.0
            else:
                p += np.abs(np.asarray(w[: len(p)], np.float64))  # unsure, not tied
            rows.append(p / p.sum())
        return np.array(rows)

    def utterance_loss(self, waveforms, labels):
        p = self.predict_proba(waveforms)
        return -np.log(p[np.arange(len(labels)), [self.classes.index(x) for x in labels]])


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    rng = np.random.default_rng(0)
    return Corpus(
        [
            Utterance(
                f"s{s}_{k}",
                f"s{s}",
                "",
                samples=rng.standard_normal(800).astype(np.float32) * 0.2,
                sample_rate=RATE,
            )
            for s in range(8)
            for k in range(8)
        ]
    )


def halves(corpus: Corpus) -> tuple[list[str], list[str]]:
    return [u.id for u in corpus if int(u.id[-1]) < 4], [u.id for u in corpus if int(u.id[-1]) >= 4]


def audit(corpus, target, tmp_path, shadows=(), **options):
    members, nonmembers = halves(corpus)
    split = AuditSplit.from_membership(corpus, members, nonmembers, shadows=[s[1] for s in shadows])
    config = ClassifierAuditConfig(**{**FAST, **options})
    return run_audit(families.get("classifier"), corpus, split, target, [s[0] for s in shadows],
                     tmp_path, config=config, progress=False)  # fmt: skip


def test_a_target_that_trained_on_its_holdout_is_refused_before_any_query(corpus, tmp_path):
    members, nonmembers = halves(corpus)
    model = Lookup(corpus, set(members))
    leaky = AuditedModel("target", "leaky", model, frozenset([*members, nonmembers[0]]), "speaker")
    with pytest.raises(VoxauditError, match=r"trained on 1 utterance\(s\) of the split's target"):
        audit(corpus, leaky, tmp_path)
    assert not (tmp_path / "features").exists()


def test_a_target_without_recorded_ids_is_flagged_on_the_first_screen(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel("target", "t", Lookup(corpus, set(members)), label="speaker")
    report = audit(corpus, target, tmp_path)
    assert any("records no training ids" in w for w in report["warnings"])
    assert report["setup"]["target_trained_ids"] == "unrecorded"


def test_without_shadows_attacks_are_cross_fitted_and_the_null_permutes_labels(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel(
        "target", "t", Lookup(corpus, set(members)), frozenset(members), "speaker"
    )
    report = audit(corpus, target, tmp_path)
    assert report["setup"]["attacks_fitted_on"] == CROSS_FIT
    assert report["setup"]["null_control"] == PERMUTATION_NULL
    assert report["headline"]["metrics"]["auroc"]["value"] > 0.95
    assert report["null_control"]["valid"]
    assert not any(w.startswith("The target") for w in report["warnings"])


def test_a_shadow_fitted_audit_of_a_memorizer_leaks_and_of_a_null_model_does_not(corpus, tmp_path):
    members, _ = halves(corpus)
    shadow_ids = [f"s{s}_{k}" for s in range(8) for k in (0, 1, 4, 5)]
    shadow_out = [f"s{s}_{k}" for s in range(8) for k in (2, 3, 6, 7)]
    shadow = AuditedModel("shadow-0", "shadow", Lookup(corpus, set(shadow_ids)),
                          frozenset(shadow_ids), "speaker")  # fmt: skip
    null = AuditedModel("null", "null", Lookup(corpus, set()), frozenset(), "speaker")
    leaky = AuditedModel("target", "t", Lookup(corpus, set(members)), frozenset(members), "speaker")
    split = AuditSplit.from_membership(corpus, *halves(corpus), shadows=[(shadow_ids, shadow_out)])
    config = ClassifierAuditConfig(**FAST)
    family = families.get("classifier")
    report = run_audit(family, corpus, split, leaky, [shadow], tmp_path / "a", null=null,
                       config=config, progress=False)  # fmt: skip
    assert report["headline"]["chosen_by"].startswith("shadow data")
    assert report["headline"]["metrics"]["auroc"]["low"] > 0.9 and report["null_control"]["valid"]
    quiet = AuditedModel("target", "quiet", Lookup(corpus, set()), frozenset(members), "speaker")
    report = run_audit(family, corpus, split, quiet, [shadow], tmp_path / "b", null=null,
                       config=config, progress=False)  # fmt: skip
    auroc = report["headline"]["metrics"]["auroc"]
    assert auroc["low"] <= 0.5 <= auroc["high"]


def test_too_few_rows_to_cross_fit_say_so_and_what_to_do(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel(
        "target", "t", Lookup(corpus, set(members)), frozenset(members), "speaker"
    )
    # Two members and two non-members evaluated: a half of the speakers cannot give every
    # fold of the attack's own cross-validation both classes.
    with pytest.raises(VoxauditError, match=r"^cross-fitting \(no shadow models\).*max_per_side"):
        audit(corpus, target, tmp_path, max_per_side=2)


def test_a_null_model_that_saw_the_evaluated_data_is_refused(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel(
        "target", "t", Lookup(corpus, set(members)), frozenset(members), "speaker"
    )
    split = AuditSplit.from_membership(corpus, *halves(corpus))
    null = AuditedModel("null", "seen", Lookup(corpus, set()), frozenset(members[:1]), "speaker")
    with pytest.raises(VoxauditError, match="null control seen trained on some"):
        run_audit(families.get("classifier"), corpus, split, target, [], tmp_path, null=null,
                  config=ClassifierAuditConfig(**FAST), progress=False)  # fmt: skip


def test_wrong_config_type_and_shadow_roles_are_refused(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel("target", "t", Lookup(corpus, set(members)), label="speaker")
    split = AuditSplit.from_membership(corpus, *halves(corpus))
    family = families.get("classifier")
    with pytest.raises(VoxauditError, match="takes a ClassifierAuditConfig, not a AsrAuditConfig"):
        run_audit(family, corpus, split, target, [], tmp_path, config=AsrAuditConfig())
    stray = AuditedModel("shadow-3", "s", target.model, label="speaker")
    with pytest.raises(VoxauditError, match=r"shadow roles \['shadow-3'\] must be distinct"):
        run_audit(family, corpus, split, target, [stray], tmp_path)


def test_a_registered_user_attack_is_fitted_and_reported(corpus, tmp_path):
    members, _ = halves(corpus)
    target = AuditedModel(
        "target", "t", Lookup(corpus, set(members)), frozenset(members), "speaker"
    )
    register_attack("my entropy threshold", ThresholdAttack("entropy"), threat="grey")
    try:
        report = audit(corpus, target, tmp_path)
    finally:
        unregister_attack("my entropy threshold")
    rows = [r for r in report["results"] if r["name"] == "my entropy threshold"]
    assert [r["model"] for r in rows] == ["target", "null"]
    assert rows[0]["metrics"]["auroc"]["value"] > 0.9


def test_cross_fit_halves_keep_speakers_whole_and_both_sides_in_each_half():
    groups = np.repeat([f"s{k}" for k in range(8)], 4)
    labels = np.tile([True, True, False, False], 8)
    fold = cross_fit_halves(groups, labels, seed=0)
    for g in set(groups):
        assert len(set(fold[groups == g])) == 1
    for half in (0, 1):
        assert labels[fold == half].any() and not labels[fold == half].all()
    speakers = np.repeat([f"s{k}" for k in range(8)], 2)
    pure = np.repeat([True] * 4 + [False] * 4, 2)
    shuffled = permuted(pure, speakers, seed=0)
    assert shuffled.sum() == pure.sum()
    assert all(len(set(shuffled[speakers == g])) == 1 for g in set(speakers))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=40),
       st.integers(0, 2**16))  # fmt: skip
def test_the_permutation_null_keeps_every_speakers_member_count(rows, seed):
    groups = np.array([f"s{g}" for g, _ in rows])
    labels = np.array([member for _, member in rows])
    shuffled = permuted(labels, groups, seed)
    speakers = sorted(set(groups))
    if all(len(set(labels[groups == g])) == 1 for g in speakers):
        # Whole speakers shuffled: each keeps one label, and as many speakers are members.
        assert all(len(set(shuffled[groups == g])) == 1 for g in speakers)
        assert sum(shuffled[groups == g][0] for g in speakers) == sum(
            labels[groups == g][0] for g in speakers
        )
    else:  # shuffled within each speaker: its member count is kept
        assert all(shuffled[groups == g].sum() == labels[groups == g].sum() for g in speakers)
