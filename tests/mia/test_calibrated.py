"""LiRA and RMIA on simulated shadow models where examples differ widely in difficulty."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from voxaudit.errors import VoxauditError
from voxaudit.mia.attack_data import AttackData
from voxaudit.mia.calibrated import RMIA, LiRA, logit_confidence
from voxaudit.mia.table import FeatureTable

DELTA, NOISE = 1.0, 0.5


def balanced_in(n_models: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Each example is IN for exactly half of the models, as in Carlini et al."""
    return np.argsort(rng.random((n_models, n)), axis=0) < n_models // 2


def simulate(n_models: int, n: int = 2000, seed: int = 0, all_out: bool = False):
    """Statistic ~ N(mu_j + DELTA, NOISE) IN and N(mu_j, NOISE) OUT, mu_j spread widely.

    Returns the shadow statistics and IN mask (all False with ``all_out``), and a fresh target
    model's statistics and membership.
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 3.0, n)
    shadow_in = np.zeros((n_models, n), bool) if all_out else balanced_in(n_models, n, rng)
    shadow = mu + DELTA * shadow_in + rng.normal(0.0, NOISE, (n_models, n))
    is_member = rng.random(n) < 0.5
    target = mu + DELTA * is_member + rng.normal(0.0, NOISE, n)
    return shadow, shadow_in, target, is_member


def data(
    reference: np.ndarray,
    reference_in: np.ndarray | None = None,
    target: np.ndarray | None = None,
    population: np.ndarray | None = None,
    column: str = "logit_confidence",
) -> AttackData:
    """One row per example: the target's statistic (if any) beside the references'."""
    ids = [f"x{j}" for j in range(reference.shape[1])]
    if target is None:
        table = FeatureTable(ids, ids, (), (), np.zeros((len(ids), 0)))
    else:
        table = FeatureTable(ids, ids, (column,), ("loss",), target[:, None])
    return AttackData(table, reference=reference, reference_in=reference_in, population=population)


def likelihoods(reference, reference_in=None, target=None, population=None) -> AttackData:
    return data(reference, reference_in, target, population, column="likelihood")


def test_logit_confidence_is_the_logit_of_exp_minus_loss():
    loss = np.array([0.05, 0.5, 1.0, 3.0])
    p = np.exp(-loss)
    np.testing.assert_allclose(logit_confidence(loss), np.log(p / (1 - p)))
    extreme = logit_confidence(np.array([0.0, 1e-300, 1e6, np.inf]))
    assert np.isfinite(extreme).all()
    assert extreme[0] > extreme[1] > 0 > extreme[2] >= extreme[3]
    with pytest.raises(VoxauditError, match="non-negative"):
        logit_confidence(np.array([0.1, -0.2]))


def test_lira_online_beats_a_global_threshold():
    shadow, shadow_in, target, is_member = simulate(16)
    raw = roc_auc_score(is_member, target)
    x = data(shadow, shadow_in, target)
    lira = roc_auc_score(is_member, LiRA().fit(x).score(x))
    assert raw < 0.7
    assert lira > 0.85
    assert lira > raw + 0.15


def test_lira_offline_needs_out_shadows_only():
    shadow, shadow_in, target, is_member = simulate(8, all_out=True)
    offline = LiRA(mode="offline").fit(data(shadow))
    assert offline.mu_in_ is None
    np.testing.assert_array_equal(offline.mu_out_, shadow.mean(axis=0))
    assert roc_auc_score(is_member, offline.score(data(shadow, target=target))) > 0.8
    with pytest.raises(VoxauditError, match=r"2000 example.*IN"):
        LiRA().fit(data(shadow, shadow_in))

    # With IN shadows present, offline reads only the OUT ones.
    shadow, shadow_in, target, is_member = simulate(16)
    poisoned = np.where(shadow_in, 1e9, shadow)
    offline = LiRA(mode="offline").fit(data(poisoned, shadow_in))
    assert roc_auc_score(is_member, offline.score(data(poisoned, shadow_in, target))) > 0.8


def test_lira_fixed_variance_works_with_four_shadow_models():
    shadow, shadow_in, target, is_member = simulate(4)
    raw = roc_auc_score(is_member, target)
    x = data(shadow, shadow_in, target)
    fixed = LiRA(fixed_variance=True).fit(x)
    assert np.unique(fixed.std_in_).size == 1
    assert fixed.std_in_[0] == pytest.approx(NOISE, rel=0.1)
    per_example = roc_auc_score(is_member, LiRA().fit(x).score(x))
    pooled = roc_auc_score(is_member, fixed.score(x))
    assert pooled > 0.85
    assert pooled > raw + 0.15
    assert pooled > per_example


def test_lira_errors_count_the_examples_lacking_shadows():
    shadow, shadow_in, _, _ = simulate(4, n=10)
    shadow_in[:, :3] = True
    with pytest.raises(VoxauditError, match=r"3 example.*OUT"):
        LiRA(fixed_variance=True).fit(data(shadow, shadow_in))
    with pytest.raises(VoxauditError, match=r"3 example.*OUT"):
        LiRA(mode="offline").fit(data(shadow, shadow_in))
    with pytest.raises(VoxauditError, match=r"10 example.*IN"):
        LiRA(fixed_variance=True).fit(data(shadow, np.zeros_like(shadow_in)))
    # Per-example variance needs two shadows a side; one is enough when the variance is pooled.
    shadow_in = np.zeros((4, 10), dtype=bool)
    shadow_in[0] = True
    shadow_in[1, :4] = True
    with pytest.raises(VoxauditError, match=r"6 example.*fewer than 2 IN.*fixed_variance"):
        LiRA().fit(data(shadow, shadow_in))
    fixed = LiRA(fixed_variance=True).fit(data(shadow, shadow_in))
    with pytest.raises(VoxauditError, match="the 10 rows it was fitted on"):
        fixed.score(data(shadow[:, :4], target=np.zeros(4)))
    with pytest.raises(VoxauditError, match="fitting needs the reference"):
        LiRA().fit(data(shadow).table)
    with pytest.raises(VoxauditError, match="no column 'logit_confidence'"):
        fixed.score(data(shadow))


def simulate_likelihoods(
    n_models: int = 8, n: int = 1000, m: int = 1000, seed: int = 0, all_out: bool = False
):
    """As :func:`simulate`, through a sigmoid; the last ``m`` columns are the population.

    The population is a fresh draw of non-members of the target; reference models train on
    half of every column, candidates and population alike (on none with ``all_out``).
    """
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 3.0, n + m)
    shape = (n_models, n + m)
    reference_in = np.zeros(shape, bool) if all_out else balanced_in(n_models, n + m, rng)
    reference = expit(mu + DELTA * reference_in + rng.normal(0.0, NOISE, shape))
    is_member = np.concatenate([rng.random(n) < 0.5, np.zeros(m, dtype=bool)])
    target = expit(mu + DELTA * is_member + rng.normal(0.0, NOISE, n + m))
    population = np.arange(n, n + m)
    return reference, reference_in, target, is_member, population


def test_rmia_online_beats_a_global_threshold():
    reference, reference_in, target, is_member, population = simulate_likelihoods()
    n = population[0]
    x = likelihoods(reference, reference_in, target, population)
    rmia = RMIA().fit(x)
    assert rmia.online_.all()
    raw = roc_auc_score(is_member[:n], target[:n])
    assert raw < 0.7
    assert roc_auc_score(is_member[:n], rmia.score(x)[:n]) > raw + 0.15


def test_rmia_offline_beats_a_global_threshold():
    reference, reference_in, target, is_member, population = simulate_likelihoods(all_out=True)
    n = population[0]
    x = likelihoods(reference, target=target, population=population)
    rmia = RMIA().fit(x)
    assert not rmia.online_.any()
    np.testing.assert_allclose(rmia.p_x_, (1.3 * reference.mean(axis=0) + 0.7) / 2)
    all_out = likelihoods(reference, reference_in, target, population)
    np.testing.assert_array_equal(RMIA().fit(all_out).score(all_out), rmia.score(x))
    raw = roc_auc_score(is_member[:n], target[:n])
    assert roc_auc_score(is_member[:n], rmia.score(x)[:n]) > raw + 0.08
    # The simulated p_IN is far from a * p_OUT + (1 - a) for a = 0.3; a = 1 fits it better.
    tuned = RMIA(offline_a=1.0).fit(x).score(x)
    assert roc_auc_score(is_member[:n], tuned[:n]) > raw + 0.15


def test_rmia_population_as_mask_or_indices():
    reference, reference_in, target, _, population = simulate_likelihoods(n=50, m=40)
    mask = np.zeros(len(target), dtype=bool)
    mask[population] = True
    by_mask = likelihoods(reference, reference_in, target, mask)
    by_index = likelihoods(reference, reference_in, target, population)
    rmia = RMIA().fit(by_mask)
    np.testing.assert_array_equal(rmia.score(by_mask), rmia.score(by_index))
    with pytest.raises(VoxauditError, match="needs the known non-members"):
        rmia.score(likelihoods(reference, reference_in, target))
    with pytest.raises(VoxauditError, match="marking at least one row"):
        rmia.score(likelihoods(reference, reference_in, target, np.zeros(len(target), bool)))


def test_rmia_vectorized_equals_the_double_loop():
    rng = np.random.default_rng(3)
    n_models, n, m = 6, 7, 5
    reference = rng.random((n_models, n + m))
    reference_in = rng.random((n_models, n + m)) < 0.5
    reference_in[0] = False  # so that every column has an OUT model
    reference_in[:, -1] = False  # and one column is calibrated offline
    target = rng.random(n + m)
    population = np.arange(n, n + m)
    for gamma in (0.5, 1.0, 2.0):
        x = likelihoods(reference, reference_in, target, population)
        rmia = RMIA(gamma=gamma, offline_a=0.3).fit(x)
        p_x = np.empty(n + m)
        for j in range(n + m):
            is_in = reference_in[:, j]
            if is_in.any():
                p_x[j] = reference[:, j].mean()
            else:
                p_x[j] = (1.3 * reference[~is_in, j].mean() + 0.7) / 2
        expected = np.array(
            [
                np.mean([(target[x] / p_x[x]) / (target[z] / p_x[z]) >= gamma for z in population])
                for x in range(n + m)
            ]
        )
        np.testing.assert_allclose(rmia.p_x_, p_x)
        np.testing.assert_allclose(rmia.score(x), expected)


def test_rmia_errors():
    with pytest.raises(VoxauditError, match=r"2 example.*no OUT"):
        RMIA().fit(
            likelihoods(np.full((2, 3), 0.5), np.array([[True, True, False], [True, True, True]]))
        )
    with pytest.raises(VoxauditError, match="non-negative"):
        RMIA().fit(likelihoods(np.array([[0.5, -0.1]])))
    with pytest.raises(VoxauditError, match="gamma"):
        RMIA(gamma=0).fit(likelihoods(np.full((2, 3), 0.5)))


def test_lira_shadow_auroc_leaves_one_reference_out_and_never_reads_the_target():
    shadow, shadow_in, target, _ = simulate(8)
    # The fitting data has no target statistic at all: only the references are read.
    lira = LiRA(fixed_variance=True).fit(data(shadow, shadow_in))
    assert lira.shadow_auroc_ > 0.8
    # By hand: each reference model scored by the attack fitted on the other seven.
    aurocs = []
    for k in range(8):
        others = np.arange(8) != k
        pseudo = LiRA(fixed_variance=True).fit(data(shadow[others], shadow_in[others]))
        aurocs.append(roc_auc_score(shadow_in[k], pseudo.score(data(shadow, target=shadow[k]))))
    assert lira.shadow_auroc_ == pytest.approx(np.mean(aurocs))
    offline = LiRA(mode="offline", fixed_variance=True).fit(data(shadow, shadow_in))
    assert offline.shadow_auroc_ > 0.8
    assert LiRA().fit(data(shadow, shadow_in, target)).shadow_auroc_ > 0.75


def test_lira_shadow_auroc_is_chance_without_a_signal_and_none_without_a_pseudo_target():
    rng = np.random.default_rng(1)
    shadow_in = balanced_in(8, 2000, rng)
    shadow = rng.normal(0.0, 3.0, 2000) + rng.normal(0.0, NOISE, (8, 2000))
    assert LiRA(fixed_variance=True).fit(data(shadow, shadow_in)).shadow_auroc_ == pytest.approx(
        0.5, abs=0.05
    )
    # References that trained on no row: no pseudo-target has members.
    all_out, _, _, _ = simulate(8, n=200, all_out=True)
    assert LiRA(mode="offline").fit(data(all_out)).shadow_auroc_ is None
    # Four halves: three others never give an example two IN and two OUT models.
    four, four_in, _, _ = simulate(4, n=200)
    assert LiRA().fit(data(four, four_in)).shadow_auroc_ is None


def test_rmia_shadow_auroc_leaves_one_reference_out():
    reference, reference_in, target, _, population = simulate_likelihoods(n=500, m=500)
    rmia = RMIA().fit(likelihoods(reference, reference_in, target, population))
    assert rmia.shadow_auroc_ > 0.8
    # The target's likelihoods play no part in it.
    other = RMIA().fit(likelihoods(reference, reference_in, target[::-1], population))
    assert other.shadow_auroc_ == rmia.shadow_auroc_
    # By hand for one pseudo-target: the population rows it did not train on are its yardstick.
    k, others = 0, np.arange(8) != 0
    pseudo_population = population[~reference_in[k, population]]
    pseudo = RMIA().fit(likelihoods(reference[others], reference_in[others]))
    scores = pseudo.score(
        likelihoods(reference[others], target=reference[k], population=pseudo_population)
    )
    assert 0.8 < roc_auc_score(reference_in[k, :500], scores[:500]) < 1
    # Without a population at fit there is nothing to rank a pseudo-target against.
    assert RMIA().fit(likelihoods(reference, reference_in)).shadow_auroc_ is None
    # Two halves: when the other model is OUT on a row, the pseudo-target is IN on it.
    two, two_in, _, _, two_population = simulate_likelihoods(n_models=2, n=100, m=100)
    assert RMIA().fit(likelihoods(two, two_in, population=two_population)).shadow_auroc_ is None


def test_rmia_shadow_auroc_is_chance_without_a_signal():
    rng = np.random.default_rng(2)
    reference_in = balanced_in(8, 1000, rng)
    reference = expit(rng.normal(0.0, 3.0, 1000) + rng.normal(0.0, NOISE, (8, 1000)))
    rmia = RMIA().fit(likelihoods(reference, reference_in, population=np.arange(500, 1000)))
    assert rmia.shadow_auroc_ == pytest.approx(0.5, abs=0.05)
