"""The privacy gate: ``voxaudit audit CONFIG --fail-above auroc=0.6`` for ML pipelines.

A bound holds when no attack on the target, at any audited level, exceeds it (point estimate):
every row counts, not only the headline, so the gate errs on the side of failing a model.
An audit whose null control is not at chance (some null row's AUROC differs from 0.5 after a
Holm-Bonferroni correction over the level's null rows) fails the gate too: its figures do not
measure leakage, so they cannot clear a model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from voxaudit.errors import VoxauditError
from voxaudit.mia.results import metric_key

EXIT_LEAK = 1
EXIT_INVALID = 3  # 2 is taken by bad input


@dataclass(frozen=True)
class GateResult:
    passed: bool
    exit_code: int
    line: str  # the one-line summary a CI log shows


def parse_bounds(specs: Iterable[str]) -> dict[str, float]:
    """``["auroc=0.6", "tpr@1%fpr=0.05"]`` (or comma-separated) as report metric keys."""
    bounds: dict[str, float] = {}
    for spec in (part.strip() for item in specs for part in item.split(",")):
        if not spec:
            continue
        name, _, value = spec.partition("=")
        key = metric_key(name)
        try:
            bound = float(value)
        except ValueError:
            raise VoxauditError(
                f"--fail-above {spec!r}: expected METRIC=NUMBER, e.g. auroc=0.6"
            ) from None
        if key not in ("auroc", "accuracy") and not re.fullmatch(r"tpr_at_.+%_fpr", key):
            raise VoxauditError(
                f"--fail-above {spec!r}: unknown metric {name.strip().lower()!r}; use auroc, "
                "accuracy or tpr@X%fpr (e.g. tpr@1%fpr)"
            )
        bounds[key] = bound
    return bounds


def check(report: Mapping[str, Any], bounds: Mapping[str, float]) -> GateResult:
    """Whether the audit ``report`` stays within ``bounds``; the exit code and summary line."""
    exceeded, worst, invalid = [], [], []
    for level in report["levels"]:
        mia = level["mia"]
        if mia["kind"] != "verdicts":
            continue  # scores have no ground truth: nothing to gate on
        if any(s["level"] == level["level"] and not s["valid"] for s in report["summary"]):
            invalid.append(level["level"])
        targets = [r for r in mia["results"] if r["model"] == "target"]
        for key, bound in bounds.items():
            values = [
                (r["metrics"][key]["value"], r) for r in targets
                if r["metrics"].get(key, {}).get("value") is not None
            ]  # fmt: skip
            if not values:
                raise VoxauditError(f"privacy gate: no attack at {level['level']} level has {key}")
            value, result = max(values, key=lambda pair: pair[0])
            text = f"{level['level']} {_name(key)} {value:.3f}"
            worst.append(f"{text} <= {bound:g}")
            if value > bound:
                exceeded.append(f"{text} > {bound:g} ({result['name']}, {result['features']})")
    if invalid:
        return GateResult(
            False, EXIT_INVALID,
            f"privacy gate: INVALID audit at {', '.join(invalid)} level (null control not at "
            "chance); no verdict",
        )  # fmt: skip
    if exceeded:
        return GateResult(False, EXIT_LEAK, "privacy gate: FAIL " + "; ".join(exceeded))
    if not worst:
        return GateResult(True, 0, "privacy gate: pass (no level with verdicts to check)")
    return GateResult(True, 0, "privacy gate: pass (" + "; ".join(worst) + ")")


def _name(key: str) -> str:
    match = re.fullmatch(r"tpr_at_(.+)%_fpr", key)
    return f"tpr@{match.group(1)}%fpr" if match else key
