"""Quantile-regression membership inference: no shadow model, no reference model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

from tests.mia.test_reference import Toy, classifier_audit, row, takes, toy_corpus
from voxaudit.data.splits import AuditSplit
from voxaudit.errors import VoxauditError
from voxaudit.mia.core import AuditedModel
from voxaudit.mia.quantile import CONTEXT, SCORE, QuantileAttack, context_table
from voxaudit.mia.table import FeatureTable

QUANTILE = "quantile regression (alpha=0.99)"


def simulate(n: int, seed: int) -> tuple[FeatureTable, np.ndarray]:
    """A score that falls steeply with the example's difficulty ``x`` (known without the
    model) and rises by 1 on members: a global threshold mixes up easy non-members and hard
    members; a threshold per ``x`` does not."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 2))
    member = rng.random(n) < 0.5
    score = -4 * x[:, 0] + member + rng.normal(0, 0.2, n)
    ids = [f"{seed}-{i}" for i in range(n)]
    table = FeatureTable(ids, ids, (SCORE, "x", "unrelated"), ("loss", CONTEXT, CONTEXT),
                         np.column_stack([score, x]))  # fmt: skip
    return table, member


def test_the_quantile_per_example_separates_what_a_global_threshold_cannot():
    fitting, fitting_member = simulate(1000, 0)
    scored, member = simulate(4000, 1)
    attack = QuantileAttack(alpha=0.9).fit(fitting, fitting_member)
    assert attack.n_fitted_ == (~fitting_member).sum()
    assert roc_auc_score(member, scored.column(SCORE)) < 0.75
    assert roc_auc_score(member, attack.score(scored)) > 0.99
    # Its decision flags about 1 - alpha of fresh non-members, whatever their difficulty.
    flagged = attack.predict(scored)
    assert 0.05 < flagged[~member].mean() < 0.16 and flagged[member].mean() > 0.95
    for part in (scored.column("x") < 0.5, scored.column("x") >= 0.5):
        assert 0.03 < flagged[~member & part].mean() < 0.2
    # Fitted on known non-members alone (no labels), the same.
    alone = QuantileAttack(alpha=0.9).fit(
        fitting.rows([i for i, m in zip(fitting.ids, fitting_member, strict=True) if not m])
    )
    np.testing.assert_allclose(alone.score(scored), attack.score(scored))  # fmt: skip


def test_it_is_a_clonable_estimator_and_refuses_what_it_cannot_fit():
    attack = QuantileAttack(alpha=0.999, features=("x",), max_iter=20, random_state=3)
    copy = clone(attack)
    assert copy.get_params() == attack.get_params() and copy is not attack
    table, member = simulate(200, 0)
    with pytest.raises(NotFittedError):
        copy.score(table)
    with pytest.raises(VoxauditError, match=r"alpha must lie in \(0, 1\)"):
        QuantileAttack(alpha=1.0).fit(table)
    with pytest.raises(VoxauditError, match="cannot read the score it predicts"):
        QuantileAttack(features=(SCORE, "x")).fit(table)
    with pytest.raises(VoxauditError, match="needs a non-member row"):
        QuantileAttack().fit(table, np.ones(len(table), dtype=bool))
    # With no column to regress on, the quantile is one number: the scores' own.
    bare = table.select(families=(), columns=(SCORE,))
    constant = QuantileAttack(alpha=0.9).fit(bare, member)
    expected = np.quantile(bare.column(SCORE)[~member], 0.9)
    np.testing.assert_allclose(constant.quantile(bare), expected)


def test_context_columns_are_length_level_and_zero_crossings():
    rate = 100
    loud = np.tile([1.0, -1.0], 50).astype(np.float32)
    quiet = np.full(200, 0.01, dtype=np.float32)
    table = context_table(["a", "b"], ["s", "s"], [loud, quiet], rate, {"chars": [3, 5]})
    assert table.families == (CONTEXT,) * 4
    np.testing.assert_allclose(table.column("duration_s"), [1.0, 2.0])
    np.testing.assert_allclose(table.column("log_rms"), np.log([1.0 + 1e-8, 0.01 + 1e-8]),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(table.column("zero_crossing_rate"), [1.0, 0.0])
    np.testing.assert_allclose(table.column("chars"), [3, 5])


@pytest.fixture(scope="module")
def corpus():
    # Takes 0-3 are members; of the twenty others, 32 are evaluated and the rest known
    # non-members the regressor is fitted on.
    return toy_corpus(8, 24)


def test_an_audit_with_no_shadow_and_no_base_finds_a_memorizer_by_its_quantile(corpus, tmp_path):
    members, nonmembers = takes(corpus, range(4)), takes(corpus, range(4, 24))
    split = AuditSplit.from_membership(corpus, members, nonmembers)
    leaky = AuditedModel("target", "leaky", Toy(corpus, set(members)), frozenset(members),
                         "speaker")  # fmt: skip
    report = classifier_audit(corpus, split, leaky, tmp_path / "leaky", [])
    found = row(report, QUANTILE)
    assert found["metrics"]["auroc"]["low"] > 0.9
    # The regressor reads how loud a recording is, which sets how hard it is for the model.
    loss = row(report, "threshold on loss")["metrics"]["auroc"]["value"]
    assert found["metrics"]["auroc"]["value"] > loss + 0.05
    assert "fitted on 128 known non-members outside the evaluated rows" in found["notes"]
    assert row(report, QUANTILE, "null")["metrics"]["auroc"]["low"] <= 0.5
    assert report["null_control"]["valid"]
    costs = report["setup"]["attack_costs"][f"{QUANTILE} (acoustic context)"]
    assert costs["models_trained"] == 0 and costs["forward_passes_per_example"] == 1

    quiet = AuditedModel("target", "quiet", Toy(corpus), frozenset(members), "speaker")
    report = classifier_audit(corpus, split, quiet, tmp_path / "quiet", [])
    auroc = row(report, QUANTILE)["metrics"]["auroc"]
    assert auroc["low"] <= 0.5 <= auroc["high"]


def test_with_every_known_nonmember_evaluated_the_regressor_is_cross_fitted(corpus, tmp_path):
    members, nonmembers = takes(corpus, range(4)), takes(corpus, range(4, 8))
    split = AuditSplit.from_membership(corpus, members, nonmembers)
    leaky = AuditedModel("target", "leaky", Toy(corpus, set(members)), frozenset(members),
                         "speaker")  # fmt: skip
    report = classifier_audit(corpus, split, leaky, tmp_path, [], quantile_alphas=(0.9,))
    found = row(report, "quantile regression (alpha=0.9)")
    assert "cross-fitted" in found["notes"] and found["shadow_auroc"] is None
    assert found["metrics"]["auroc"]["low"] > 0.5
    assert not any(r["name"].startswith("quantile regression (alpha=0.99") for r in
                   report["results"])  # fmt: skip
    # No shadow AUROC: it is left out of the headline choice among rows that have one.
    assert any(label.startswith("quantile regression") for label in
               report["headline"]["not_considered"])  # fmt: skip
