import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxaudit.errors import VoxauditError
from voxaudit.mia.results import new_report, result_entry
from voxaudit.pipeline.gate import EXIT_INVALID, EXIT_LEAK, check, parse_bounds
from voxaudit.report.audit import level_summary


def _metric(value):
    return {"value": value, "low": value - 0.05, "high": value + 0.05}


def _report(aurocs, valid=True, tpr=0.2):
    results = [
        {
            "name": f"attack {k}",
            "features": "loss",
            "model": model,
            "metrics": {
                "auroc": _metric(a if model == "target" else 0.5),
                "tpr_at_1%_fpr": _metric(tpr),
            },
        }
        for k, a in enumerate(aurocs)
        for model in ("target", "null")
    ]
    return {
        "summary": [{"level": "sample", "valid": valid}],
        "levels": [{"level": "sample", "mia": {"kind": "verdicts", "results": results}}],
    }


def test_the_gate_passes_within_bounds_and_fails_on_the_strongest_attack():
    report = _report([0.55, 0.71])
    passed = check(report, {"auroc": 0.8})
    assert passed.passed and passed.exit_code == 0 and "auroc 0.710 <= 0.8" in passed.line
    failed = check(report, {"auroc": 0.6, "tpr_at_1%_fpr": 0.5})
    assert not failed.passed and failed.exit_code == EXIT_LEAK
    assert failed.line == "privacy gate: FAIL sample auroc 0.710 > 0.6 (attack 1, loss)"


def test_an_invalid_audit_never_passes_the_gate():
    result = check(_report([0.51], valid=False), {"auroc": 0.9})
    assert not result.passed and result.exit_code == EXIT_INVALID and "INVALID" in result.line


def _audited(null_shift: float) -> dict:
    """An audit report of one level, its membership report built by the verdict rules."""
    rng = np.random.default_rng(0)
    is_member = np.repeat([True, False], 200)
    ids = [f"utt-{i}" for i in range(400)]
    rows = []
    for k in range(4):
        for model, shift in (("target", 0.3), ("null", null_shift if k == 3 else 0.0)):
            scores = rng.normal(size=400) + shift * is_member
            rows.append(
                result_entry(f"attack {k}", "loss", model, scores, is_member, ids=ids,
                             n_bootstrap=100, shadow_auroc=0.6)
            )  # fmt: skip
    mia = new_report({"level": "sample", "threat": "grey"}, results=rows)
    level = {"level": "sample", "mia": mia}
    return {"summary": [level_summary(level, "grey")], "levels": [level]}


def test_validity_is_the_holm_corrected_null_control_of_the_report():
    passed = check(_audited(0.0), {"auroc": 0.9})
    assert passed.passed, passed.line
    failed = check(_audited(0.8), {"auroc": 0.9})  # one null row separates the two sets
    assert not failed.passed and failed.exit_code == EXIT_INVALID


def test_a_metric_no_attack_reports_is_an_error_not_a_pass():
    with pytest.raises(VoxauditError, match=r"no attack at sample level has tpr_at_0\.1%_fpr"):
        check(_report([0.7]), {"tpr_at_0.1%_fpr": 0.1})


def test_scores_only_levels_have_nothing_to_gate():
    report = {"summary": [], "levels": [{"level": "sample", "mia": {"kind": "scores"}}]}
    assert check(report, {"auroc": 0.5}).passed


METRICS = {"auroc": "auroc", "accuracy": "accuracy", "tpr@1%fpr": "tpr_at_1%_fpr",
           "TPR@0.1%FPR": "tpr_at_0.1%_fpr"}  # fmt: skip


@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(METRICS)), st.floats(0, 1, allow_nan=False)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_bounds_parse_to_report_keys_whether_repeated_or_comma_joined(pairs, joined):
    specs = [f"{name}={value!r}" for name, value in pairs]
    parsed = parse_bounds([",".join(specs)] if joined else specs)
    assert parsed == {METRICS[name]: value for name, value in pairs}


@given(st.text(max_size=20))
def test_any_other_bound_is_refused_with_the_spec_named(spec):
    try:
        parsed = parse_bounds([spec])
    except VoxauditError as exc:
        assert "--fail-above" in str(exc)
    else:  # only well-formed bounds (or nothing at all) get through
        assert all(re.fullmatch(r"auroc|accuracy|tpr_at_\d+(\.\d+)?%_fpr", k) for k in parsed)
