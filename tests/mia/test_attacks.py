"""Threshold and shadow-classifier attacks on synthetic feature tables."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from voxaudit.errors import VoxauditError
from voxaudit.mia.attacks import (
    CLASSIFIERS,
    ShadowAttack,
    ThresholdAttack,
    decision_threshold,
    default_classifier,
    parse_decision,
)
from voxaudit.mia.table import FeatureTable

SMALL = {
    "logistic": LogisticRegression(),
    "random_forest": RandomForestClassifier(n_estimators=10, random_state=0),
}


def synthetic(n: int = 400, seed: int = 0, shift: float = 1.5, speakers: int = 40):
    """Members have a lower loss; the noise and WER columns carry no signal."""
    rng = np.random.default_rng(seed)
    is_member = rng.random(n) < 0.5
    loss = rng.normal(2.0, 0.5, n) - 0.5 * shift * is_member
    table = FeatureTable(
        ids=[f"u{seed}_{i}" for i in range(n)],
        speakers=[f"s{i % speakers}" for i in range(n)],
        columns=["loss", "noise_kl", "wer"],
        families=["loss", "noise", "transcript"],
        values=np.column_stack([loss, rng.normal(size=n), rng.random(n)]),
    )
    return table, is_member


def test_threshold_finds_the_low_loss_direction_and_a_sensible_cut():
    table, is_member = synthetic()
    attack = ThresholdAttack("loss").fit(table, is_member)
    assert attack.member_if_ == "low"
    # The classes are N(2, .5) and N(1.25, .5): the accuracy-optimal cut is their midpoint.
    assert attack.threshold_ == pytest.approx(1.625, abs=0.2)
    test, test_member = synthetic(seed=1)
    assert roc_auc_score(test_member, attack.score(test)) > 0.8
    assert (attack.predict(test) == test_member).mean() > 0.7


def test_threshold_forced_high_is_reversed():
    table, is_member = synthetic()
    auto = ThresholdAttack("loss").fit(table, is_member)
    high = ThresholdAttack("loss", member_if="high").fit(table, is_member)
    assert high.member_if_ == "high"
    np.testing.assert_array_equal(high.score(table), -auto.score(table))
    assert roc_auc_score(is_member, high.score(table)) < 0.2


def test_threshold_errors():
    table, is_member = synthetic(n=20)
    with pytest.raises(VoxauditError, match="both members and non-members"):
        ThresholdAttack("loss").fit(table, np.ones(20, dtype=bool))
    with pytest.raises(VoxauditError, match="no column 'missing'"):
        ThresholdAttack("missing").fit(table, is_member)
    with pytest.raises(VoxauditError, match="member_if"):
        ThresholdAttack("loss", member_if="sideways").fit(table, is_member)


def test_accuracy_threshold_separates_separable_scores():
    labels = np.array([False, False, True, True])
    cut = decision_threshold(labels, np.array([0.1, 0.2, 0.7, 0.9]))
    assert 0.2 < cut <= 0.7


def test_recall_and_fpr_rules_pick_the_asked_operating_point():
    # non-members 0.0..0.6, members 0.35..0.95: overlapping, so each rule cuts elsewhere
    labels = np.array([False] * 7 + [True] * 7)
    scores = np.concatenate([np.linspace(0.0, 0.6, 7), np.linspace(0.35, 0.95, 7)])
    most_accurate = decision_threshold(labels, scores)
    high_recall = decision_threshold(labels, scores, "recall=1")
    low_fpr = decision_threshold(labels, scores, "fpr=0")
    assert high_recall <= most_accurate <= low_fpr
    assert high_recall < low_fpr
    assert (scores[labels] >= high_recall).all()  # every member flagged
    assert not (scores[~labels] >= low_fpr).any()  # no non-member flagged
    assert (scores[labels] >= low_fpr).sum() == 4  # the members above 0.6 only


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=2, max_size=60),
    st.floats(0.0, 1.0),
)
def test_rules_keep_their_promise_on_the_fitting_data(rows, rate):
    labels = np.array([member for member, _ in rows])
    scores = np.array([float(score) for _, score in rows])
    if labels.all() or not labels.any():
        return
    flagged = scores >= decision_threshold(labels, scores, f"recall={max(rate, 0.01)}")
    assert flagged[labels].mean() >= max(rate, 0.01) - 1e-9
    flagged = scores >= decision_threshold(labels, scores, f"fpr={rate}")
    assert flagged[~labels].mean() <= rate + 1e-9


@given(st.text(max_size=20))
def test_parse_decision_accepts_its_grammar_or_names_the_rule(spec):
    try:
        kind, rate = parse_decision(spec)
    except VoxauditError as error:
        assert repr(spec) in str(error)
    else:
        assert kind in ("accuracy", "recall", "fpr")
        assert (rate is None) == (kind == "accuracy")


def test_parse_decision_reads_the_documented_forms():
    assert parse_decision("accuracy") == ("accuracy", None)
    assert parse_decision(" Recall = 0.908 ") == ("recall", 0.908)
    assert parse_decision("fpr=0.01") == ("fpr", 0.01)
    assert parse_decision("fpr=0") == ("fpr", 0.0)
    bad_rules = ("recall", "recall=0", "recall=1.5", "fpr=x", "fpr=-0.1", "precision=0.9")
    for bad in (*bad_rules, "accuracy=1"):
        with pytest.raises(VoxauditError, match="decision"):
            parse_decision(bad)


def test_attacks_refuse_an_unknown_decision_before_fitting():
    table, is_member = synthetic(n=40)
    with pytest.raises(VoxauditError, match="unknown decision"):
        ThresholdAttack("loss", decision="best").fit(table, is_member)
    with pytest.raises(VoxauditError, match="unknown decision"):
        ShadowAttack(SMALL, decision="best").fit(table, is_member)


def test_shadow_attack_with_a_recall_rule_flags_more_members():
    table, is_member = synthetic()
    test, test_member = synthetic(seed=1)
    accurate = ShadowAttack({"logistic": LogisticRegression()}).fit(table, is_member)
    sensitive = ShadowAttack({"logistic": LogisticRegression()}, decision="recall=0.99")
    sensitive.fit(table, is_member)
    assert sensitive.threshold_ < accurate.threshold_
    assert sensitive.predict(test)[test_member].mean() > accurate.predict(test)[test_member].mean()


def test_shadow_selects_the_feature_set_with_the_signal():
    table, is_member = synthetic()
    sets = {"noise": "noise", "loss": ["loss"], "wer": ["transcript"]}
    attack = ShadowAttack(SMALL, feature_sets=sets).fit(table, is_member)
    assert attack.selected_[1] == "loss"
    assert attack.columns_ == ("loss",)
    assert len(attack.cv_results_) == len(SMALL) * len(sets)
    by_pair = {(r["classifier"], r["features"]): r for r in attack.cv_results_}
    assert by_pair["logistic", "loss"]["auroc_mean"] > 0.8
    assert by_pair["logistic", "noise"]["auroc_mean"] < 0.65
    assert 0 < attack.threshold_ < 1

    test, test_member = synthetic(seed=1)
    assert roc_auc_score(test_member, attack.score(test)) > 0.8
    assert (attack.predict(test) == test_member).mean() > 0.7


def test_shadow_feature_importances_rank_the_signal_first():
    table, is_member = synthetic()
    attack = ShadowAttack({"logistic": LogisticRegression()}).fit(table, is_member)
    assert attack.selected_ == ("logistic", "all")
    importances = attack.feature_importances(table, is_member)
    assert set(importances) == {"loss", "noise_kl", "wer"}
    assert importances["loss"] > 0.2
    assert importances["loss"] > 10 * max(abs(importances["noise_kl"]), abs(importances["wer"]))


def test_shadow_groups_keep_a_speaker_on_one_side_of_each_fold():
    # Every speaker has its own tight cluster of feature values and one membership label, and
    # no feature says anything about membership: only memorized speakers look predictable.
    rng = np.random.default_rng(0)
    n_speakers, per_speaker = 40, 10
    speaker = np.repeat(np.arange(n_speakers), per_speaker)
    centres = rng.normal(size=(n_speakers, 2))
    is_member = (rng.permutation(n_speakers) < n_speakers // 2)[speaker]
    table = FeatureTable(
        ids=[f"u{i}" for i in range(len(speaker))],
        speakers=[f"s{s}" for s in speaker],
        columns=["loss", "entropy"],
        families=["loss", "confidence"],
        values=centres[speaker] + rng.normal(scale=0.01, size=(len(speaker), 2)),
    )
    forest = {"random_forest": RandomForestClassifier(n_estimators=10, random_state=0)}
    leaky = ShadowAttack(forest).fit(table, is_member)
    grouped = ShadowAttack(forest).fit(table, is_member, groups=table.speakers)
    assert leaky.cv_results_[0]["auroc_mean"] > 0.9
    assert grouped.cv_results_[0]["auroc_mean"] < 0.75


def test_shadow_default_classifiers_run():
    table, is_member = synthetic(n=120)
    attack = ShadowAttack(cv=2).fit(table, is_member)
    assert {r["classifier"] for r in attack.cv_results_} == set(CLASSIFIERS)
    assert roc_auc_score(is_member, attack.score(table)) > 0.8
    with pytest.raises(VoxauditError, match="unknown classifier 'svm'"):
        default_classifier("svm")


def test_shadow_errors_name_the_bad_column_and_the_empty_feature_set():
    table, is_member = synthetic(n=60)
    values = table.values.copy()
    values[3, 1] = np.nan
    broken = FeatureTable(table.ids, table.speakers, table.columns, table.families, values)
    with pytest.raises(VoxauditError, match="'noise_kl' has 1 non-finite"):
        ShadowAttack(SMALL).fit(broken, is_member)
    with pytest.raises(VoxauditError, match=r"feature set 'adv'.*adversarial, score"):
        ShadowAttack(SMALL, feature_sets={"adv": ["adversarial", "score"]}).fit(table, is_member)
    with pytest.raises(VoxauditError, match="both members and non-members"):
        ShadowAttack(SMALL).fit(table, np.zeros(60, dtype=bool))
    with pytest.raises(VoxauditError, match="at least 5 groups"):
        ShadowAttack(SMALL).fit(table, is_member, groups=np.arange(60) % 3)

    attack = ShadowAttack(SMALL, feature_sets={"loss": ["loss"]}).fit(broken, is_member)
    values = values.copy()  # the table made its values read-only
    values[5, 0] = np.inf
    with pytest.raises(VoxauditError, match="'loss' has 1 non-finite"):
        attack.score(FeatureTable(table.ids, table.speakers, table.columns, table.families, values))


def test_the_default_mlp_fits_on_a_table_too_small_for_early_stopping():
    table, is_member = synthetic(n=12, speakers=12, shift=4.0)
    attack = ShadowAttack(classifiers=("mlp",), cv=2).fit(table, is_member)
    assert attack.score(table).shape == (12,)
    assert default_classifier("mlp", n_rows=12).early_stopping is False
    assert default_classifier("mlp", n_rows=500).early_stopping is True


@pytest.mark.parametrize("family", ["asr", "classifier", "speaker"])
def test_audit_configs_refuse_a_bad_decision(family):
    from voxaudit.mia.asr import AsrAuditConfig
    from voxaudit.mia.classifier_audit import ClassifierAuditConfig
    from voxaudit.mia.speaker_audit import SpeakerAuditConfig

    config = {
        "asr": AsrAuditConfig,
        "classifier": ClassifierAuditConfig,
        "speaker": SpeakerAuditConfig,
    }[family]
    assert config(decision="recall=0.9").decision == "recall=0.9"
    with pytest.raises(VoxauditError, match="recall must be a number"):
        config(decision="recall=2")
