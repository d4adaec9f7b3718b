"""Threshold and shadow-classifier attacks on synthetic feature tables; the attack protocol
every attack follows; the family and attack registries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import expit
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.attacks import (
    ShadowAttack,
    ThresholdAttack,
    decision_threshold,
    default_classifier,
    register_attack,
    registered_attacks,
    unregister_attack,
)
from voxaudit.mia.calibrated import RMIA, LiRA
from voxaudit.mia.composite_attacks import PerClassAttack, SeedAveraged
from voxaudit.mia.configs import CLASSIFIERS, parse_decision
from voxaudit.mia.table import (
    FAMILIES,
    FeatureTable,
    family_info,
    known_families,
    register_family,
)

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
    from voxaudit.mia.configs import AsrAuditConfig, ClassifierAuditConfig, SpeakerAuditConfig

    config = {
        "asr": AsrAuditConfig,
        "classifier": ClassifierAuditConfig,
        "speaker": SpeakerAuditConfig,
    }[family]
    assert config(decision="recall=0.9").decision == "recall=0.9"
    with pytest.raises(VoxauditError, match="recall must be a number"):
        config(decision="recall=2")


# --- the attack protocol --------------------------------------------------------------------


def calibration_data(likelihood: bool, n_models: int = 8, n: int = 300) -> tuple[AttackData, ...]:
    """References and a target with a per-example signal, as logit confidences (LiRA) or
    likelihoods (RMIA); the last 100 rows are the population (non-members). The fitting data's
    target statistic is noise, the scoring data's the target's."""
    rng = np.random.default_rng(0)
    mu = rng.normal(0.0, 3.0, n)
    reference_in = np.argsort(rng.random((n_models, n)), axis=0) < n_models // 2
    reference = mu + reference_in + rng.normal(0.0, 0.5, (n_models, n))
    is_member = (rng.random(n) < 0.5) & (np.arange(n) < n - 100)
    target = mu + is_member + rng.normal(0.0, 0.5, n)
    ids = [f"x{j}" for j in range(n)]
    column, transform = ("likelihood", expit) if likelihood else ("logit_confidence", np.asarray)

    def data(stat: np.ndarray) -> AttackData:
        table = FeatureTable(ids, ids, [column], ["loss"], transform(stat)[:, None])
        return AttackData(
            table,
            reference=transform(reference),
            reference_in=reference_in,
            population=np.arange(n) >= n - 100,
        )

    return data(rng.normal(size=n)), data(target)


def protocol_case(kind: str):
    """(attack, data to fit on, its labels, other data to score) for one attack class."""
    table, is_member = synthetic(n=120)
    test, _ = synthetic(n=60, seed=1)
    classes = np.arange(120) % 2
    if kind == "threshold":
        return ThresholdAttack("loss", decision="recall=0.9"), table, is_member, test
    if kind == "shadow":
        return ShadowAttack(SMALL, cv=3, random_state=2), table, is_member, test
    if kind == "per class":
        attack = PerClassAttack({"logistic": LogisticRegression()}, cv=3, min_per_side=10)
        return (
            attack,
            AttackData(table, classes=classes),
            is_member,
            AttackData(test, classes=np.arange(60) % 3),
        )
    if kind == "seed averaged":
        attack = SeedAveraged(ShadowAttack(SMALL, cv=3, random_state=5), n_seeds=2)
        return attack, AttackData(table, groups=table.speakers), is_member, test
    fit, score = calibration_data(likelihood=kind == "rmia")
    attack = LiRA(fixed_variance=True) if kind == "lira" else RMIA(gamma=1.5)
    return attack, fit, None, score


KINDS = ["threshold", "shadow", "per class", "seed averaged", "lira", "rmia"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_attack_is_a_scikit_learn_estimator(kind):
    attack, x, y, other = protocol_case(kind)
    assert isinstance(attack, BaseEstimator)
    params = attack.get_params(deep=False)
    twin = clone(attack)
    assert type(twin) is type(attack) and repr(twin) == repr(attack)
    assert twin.get_params(deep=False).keys() == params.keys()
    # get_params -> __init__ and set_params round-trip.
    assert repr(type(attack)(**params)) == repr(attack)
    assert twin.set_params(**params) is twin and repr(twin) == repr(attack)

    for method in (attack.score, attack.predict):
        with pytest.raises(NotFittedError):
            method(other)
    assert attack.fit(x, y) is attack
    scores, predictions = attack.score(other), attack.predict(other)
    assert scores.shape == predictions.shape == (len(other),)
    assert predictions.dtype == bool
    assert attack.shadow_auroc_ is None or 0.0 <= attack.shadow_auroc_ <= 1.0
    # A clone of a fitted attack is unfitted, and fitted alike it scores alike.
    refit = clone(attack)
    with pytest.raises(NotFittedError):
        refit.score(other)
    np.testing.assert_array_equal(refit.fit(x, y).score(other), scores)
    np.testing.assert_array_equal(refit.predict(other), predictions)
    assert refit.shadow_auroc_ == attack.shadow_auroc_


@pytest.mark.parametrize("kind", KINDS)
def test_shadow_auroc_comes_from_the_fitting_data_only(kind):
    attack, x, y, other = protocol_case(kind)
    before = attack.fit(x, y).shadow_auroc_
    assert before > 0.8  # the signal in the shadow (or reference) data
    attack.score(other)
    assert attack.shadow_auroc_ == before
    if kind in ("lira", "rmia"):
        # Fitted beside a target statistic of pure noise, or beside the real target's: the
        # references alone decide.
        assert clone(attack).fit(other).shadow_auroc_ == before


def test_threshold_shadow_auroc_is_its_auroc_on_the_fitting_rows():
    table, is_member = synthetic()
    target, target_member = synthetic(seed=3, shift=-1.5)  # members now have a higher loss
    attack = ThresholdAttack("loss").fit(table, is_member)
    assert attack.shadow_auroc_ == pytest.approx(roc_auc_score(is_member, attack.score(table)))
    assert roc_auc_score(target_member, attack.score(target)) < 0.2 < 0.8 < attack.shadow_auroc_


def test_shadow_attack_shadow_auroc_is_the_best_cross_validated_mean():
    table, is_member = synthetic()
    attack = ShadowAttack(SMALL, feature_sets={"noise": "noise", "loss": "loss"})
    attack.fit(table, is_member)
    assert attack.shadow_auroc_ == max(r["auroc_mean"] for r in attack.cv_results_)
    grouped = ShadowAttack(SMALL).fit(AttackData(table, groups=table.speakers), is_member)
    explicit = ShadowAttack(SMALL).fit(table, is_member, groups=table.speakers)
    assert grouped.cv_results_ == explicit.cv_results_


def test_per_class_attack_reads_classes_from_the_attack_data():
    table, is_member = synthetic(n=120)
    attack = PerClassAttack({"logistic": LogisticRegression()}, cv=3)
    with pytest.raises(VoxauditError, match=r"true class of each row.*classes="):
        attack.fit(table, is_member)
    attack.fit(AttackData(table, classes=np.arange(120) % 2), is_member)
    assert attack.shadow_auroc_ == attack.global_.shadow_auroc_
    with pytest.raises(VoxauditError, match="true class of each row"):
        attack.score(table)


def test_seed_averaged_averages_clones_with_consecutive_seeds():
    table, is_member = synthetic(n=200)
    test, test_member = synthetic(n=240, seed=1)
    base = ShadowAttack(("random_forest",), cv=3, random_state=7)
    attack = SeedAveraged(base, n_seeds=3).fit(table, is_member)
    assert [a.random_state for a in attack.estimators_] == [7, 8, 9]
    assert base.random_state == 7 and not hasattr(base, "model_")  # the template is untouched
    single = [clone(base).set_params(random_state=s).fit(table, is_member) for s in (7, 8, 9)]
    np.testing.assert_allclose(attack.score(test), np.mean([a.score(test) for a in single], 0))
    votes = np.sum([a.predict(test) for a in single], axis=0)
    np.testing.assert_array_equal(attack.predict(test), votes >= 2)
    assert attack.shadow_auroc_ == pytest.approx(np.mean([a.shadow_auroc_ for a in single]))

    aurocs = [roc_auc_score(test_member, a.score(test)) for a in single]
    notes = attack.notes(test, test_member)
    assert notes.startswith(
        f"score averaged over 3 attack-classifier seed(s); per seed AUROC "
        f"{np.mean(aurocs):.3f} +- {np.std(aurocs):.3f}, TPR at 1% FPR "
    )
    assert attack.selection() == {
        "selected": [list(a.selected_) for a in single],
        "cv_results": single[0].cv_results_,
    }
    assert SeedAveraged(base, n_seeds=1).fit(table, is_member).notes(test, test_member) is None
    assert attack.set_params(attack__cv=2).attack.cv == 2  # nested parameters reach the template


def test_seed_averaged_errors():
    table, is_member = synthetic(n=60)
    with pytest.raises(VoxauditError, match="integer random_state; ThresholdAttack has None"):
        SeedAveraged(ThresholdAttack("loss")).fit(table, is_member)
    with pytest.raises(VoxauditError, match="n_seeds must be a positive integer"):
        SeedAveraged(ShadowAttack(SMALL), n_seeds=0).fit(table, is_member)


# --- registries -----------------------------------------------------------------------------


def test_built_in_families_are_registered_first_in_table_order():
    assert known_families()[: len(FAMILIES)] == FAMILIES
    assert family_info("transcript").threat == "black"
    assert family_info("adversarial").threat == "white"
    assert family_info("loss").description.startswith("per-utterance loss")
    with pytest.raises(VoxauditError, match="unknown feature famil"):
        family_info("made_up")


def test_a_registered_family_can_be_used_and_an_unregistered_one_is_refused():
    with pytest.raises(VoxauditError, match=r"unknown feature famil\(ies\) user_probe;.*register"):
        FeatureTable(["u0"], ["s"], ["probe"], ["user_probe"], [[1.0]])
    register_family("user_probe", "a linear probe's membership logit", threat="white")
    register_family("user_probe", "a linear probe's membership logit", threat="white")  # again
    assert "user_probe" in known_families()
    assert family_info("user_probe").threat == "white"
    with pytest.raises(VoxauditError, match="already registered"):
        register_family("user_probe", "something else")
    with pytest.raises(VoxauditError, match="already registered"):
        register_family("loss", "per-utterance loss, raw and length-normalized", threat="black")
    with pytest.raises(VoxauditError, match="threat must be one of black, grey, white"):
        register_family("user_other", "x", threat="root")

    table, is_member = synthetic()
    probe = FeatureTable(table.ids, table.speakers, ["probe"], ["user_probe"], table.values[:, :1])
    joined = FeatureTable.concat_columns([table, probe])
    attack = ShadowAttack(SMALL, feature_sets={"probe": "user_probe"}).fit(joined, is_member)
    assert attack.columns_ == ("probe",)
    assert joined.select().columns == joined.columns


class _Constant(BaseEstimator):
    """A user's attack: everyone is a member, a little."""

    def __init__(self, level: float = 0.5) -> None:
        self.level = level

    def fit(self, X, y=None):
        self.shadow_auroc_ = None
        return self

    def score(self, X):
        return np.full(len(X), self.level)

    def predict(self, X):
        return self.score(X) >= 0.5


@pytest.fixture
def user_attack():
    attack = _Constant(0.7)
    register_attack("user: constant", attack, threat="grey")
    yield attack
    unregister_attack("user: constant")


def test_a_registered_attack_is_offered_at_its_threat_and_above(user_attack):
    assert "user: constant" not in registered_attacks("black")
    for threat in ("grey", "white"):
        offered = registered_attacks(threat)["user: constant"]
        assert isinstance(offered, _Constant) and offered.level == 0.7
        assert offered is not user_attack  # a fresh clone each time
    user_attack.level = 0.1  # the registry kept its own copy
    assert registered_attacks("grey")["user: constant"].level == 0.7
    table, _ = synthetic(n=10)
    assert registered_attacks("white")["user: constant"].fit(table).predict(table).all()
    with pytest.raises(VoxauditError, match="already registered"):
        register_attack("user: constant", _Constant())
    with pytest.raises(VoxauditError, match="threat must be one of"):
        registered_attacks("root")


class _NoParams:
    def fit(self, X, y=None):
        return self

    def score(self, X):
        return np.zeros(len(X))

    def predict(self, X):
        return np.zeros(len(X), dtype=bool)


def test_registering_what_is_not_an_attack_estimator_is_refused():
    with pytest.raises(VoxauditError, match="StandardScaler has no score, predict; an attack"):
        register_attack("user: scaler", StandardScaler())
    with pytest.raises(VoxauditError, match="clone cannot copy _NoParams"):
        register_attack("user: no params", _NoParams())
    with pytest.raises(VoxauditError, match="threat must be one of"):
        register_attack("user: constant", _Constant(), threat="root")
    with pytest.raises(VoxauditError, match="no attack named"):
        unregister_attack("user: never registered")
    assert not any(name.startswith("user:") for name in registered_attacks("white"))
