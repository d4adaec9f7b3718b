"""The verdict rules a report's first screen rests on, from every row's per-example scores.

* the **headline** attack (:func:`choose_headline`), chosen on shadow data before the target
  was seen; only when no candidate row has a shadow AUROC, the maximum target AUROC, with an
  interval that accounts for taking a maximum;
* the **null control** (:func:`null_control`): the audit is invalid only if some null row's
  AUROC differs from 0.5 after a Holm-Bonferroni correction over all null rows;
* **warnings** (:func:`evidence_warnings`) when the evaluation units are too few for a metric
  or a usable interval;
* the plain-language **risk** reading of the headline (:func:`risk_level`, :func:`risk_summary`).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from voxaudit.errors import VoxauditError
from voxaudit.mia.metrics import (
    Estimate,
    auroc_p_value,
    holm_adjust,
    is_chance,
    joint_bootstrap_auroc,
)

ALPHA = 0.05  # family-wise, for the null control
WIDE_INTERVAL = 0.2  # a headline AUROC interval wider than this gets a warning
MIN_PER_SIDE = 50  # so do fewer members or non-members than this
CHANCE_HALF_WIDTH = 0.05  # the interval half-width at chance the warning sizes the audit for
SHADOW_CHOICE = "shadow data (highest shadow AUROC, before the target was seen)"
MODELS = ("target", "null")
TOP_EXAMPLES = 10  # the headline attack's highest-scoring target examples, in the report
_TPR_KEY = re.compile(r"tpr_at_(.+)%_fpr")


def choose_headline(
    results: Sequence[Mapping[str, Any]], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The attack the risk reading rests on, chosen without looking at the target's AUROC.

    Among target rows with ``headline_candidate``, the one with the highest ``shadow_auroc``
    (the first on ties); its own metrics and intervals stand, since the choice did not use the
    target.  Only when no candidate has a shadow AUROC: the one with the highest target AUROC,
    whose AUROC interval covers the largest true AUROC of the candidates.  It comes from a joint
    stratified bootstrap (every candidate's AUROC on the same resamples of the shared examples):
    c, the 95th percentile over resamples of the largest deviation of any candidate from its
    own AUROC, makes every candidate's AUROC +- c hold together with probability 95%, so the
    maximum lies in max +- c.  (The plain percentile interval of the resampled maximum is no such
    interval: the resampled maximum sits above the observed one, itself above the true one, and
    with ten candidates at chance it covered 0.5 in about 1 run in 5.)  When the rows do not
    share their examples, the interval is the largest lower and upper bound of Bonferroni-widened
    per-row intervals.  Other metrics are the chosen row's own.

    Parameters
    ----------
    results:
        Result rows with their per-example scores.
    n_bootstrap, seed:
        Resamples and seed of the bootstrap of the maximum.
    """
    candidates = [r for r in results if r["model"] == "target" and r["headline_candidate"]]
    if not candidates:
        raise VoxauditError("report: no target row is a headline candidate")
    rated = [r for r in candidates if r["shadow_auroc"] is not None]
    not_considered = [row_label(r) for r in candidates if r["shadow_auroc"] is None]
    if rated:
        best = max(rated, key=lambda r: r["shadow_auroc"])  # max keeps the first on ties
        chosen_by, metrics = SHADOW_CHOICE, copy.deepcopy(best["metrics"])
    else:
        rated, not_considered = candidates, []
        best = max(candidates, key=lambda r: r["metrics"]["auroc"]["value"])
        metrics = copy.deepcopy(best["metrics"])
        rows = "target row" if len(candidates) == 1 else "target rows"
        aligned = _aligned_scores(candidates)
        if aligned is not None:
            observed = np.array([r["metrics"]["auroc"]["value"] for r in candidates])
            samples = joint_bootstrap_auroc(*aligned, n_bootstrap=n_bootstrap, seed=seed)
            spread = np.percentile(np.abs(samples - observed).max(axis=1), 95)
            value = metrics["auroc"]["value"]
            low, high = max(value - spread, 0.0), min(value + spread, 1.0)
            how = (
                "interval by joint bootstrap of the maximum (a simultaneous 95% band over the "
                "rows: the largest deviation of any row on the same resamples)"
            )
        else:
            low, high = _bonferroni_max_interval(candidates, n_bootstrap, seed)
            how = (
                "interval from Bonferroni-widened per-row bootstrap intervals (the rows do not "
                "share their examples, so no joint bootstrap)"
            )
        chosen_by = f"maximum over {len(candidates)} {rows}; {how}"
        metrics["auroc"] = json_estimate(
            Estimate(metrics["auroc"]["value"], float(low), float(high))
        )
    examples = best["examples"]
    ranked = sorted(range(len(examples["id"])), key=lambda i: -examples["score"][i])
    top = [
        {
            "id": examples["id"][i],
            "speaker": examples["speaker"][i] if "speaker" in examples else None,
            "score": examples["score"][i],
            "is_member": examples["is_member"][i],
        }
        for i in ranked[:TOP_EXAMPLES]
    ]
    return {
        "name": best["name"],
        "features": best["features"],
        "chosen_by": chosen_by,
        "n_candidates": len(rated),
        "not_considered": not_considered,
        "n_members": best["n_members"],
        "n_nonmembers": best["n_nonmembers"],
        "shadow_auroc": best["shadow_auroc"],
        "metrics": metrics,
        "top_examples": top,
    }


def _aligned_scores(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """Every row's scores in the first row's id order, and the labels; None unless the rows
    score the same examples with the same membership."""
    first = rows[0]["examples"]
    truth = dict(zip(first["id"], first["is_member"], strict=True))
    matrix = []
    for row in rows:
        examples = row["examples"]
        if dict(zip(examples["id"], examples["is_member"], strict=True)) != truth:
            return None
        score = dict(zip(examples["id"], examples["score"], strict=True))
        matrix.append([score[i] for i in first["id"]])
    return np.array(matrix), np.array(first["is_member"])


def _bonferroni_max_interval(
    rows: Sequence[Mapping[str, Any]], n_bootstrap: int, seed: int
) -> tuple[float, float]:
    """An interval for the largest true AUROC of ``rows``: with per-row intervals at level
    1 - 0.05 / N, all N hold together with probability >= 95%, and then the largest true AUROC
    lies between the largest lower and the largest upper bound."""
    tail = 2.5 / len(rows)
    bounds = [
        np.percentile(
            joint_bootstrap_auroc(
                [r["examples"]["score"]],
                r["examples"]["is_member"],
                n_bootstrap=n_bootstrap,
                seed=seed,
            )[:, 0],
            [tail, 100 - tail],
        )
        for r in rows
    ]
    return float(max(b[0] for b in bounds)), float(max(b[1] for b in bounds))


def null_control(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the null rows sit at chance, corrected for their number.

    Each null row's two-sided Mann-Whitney U p-value that its AUROC differs from 0.5, Holm-
    Bonferroni adjusted over all null rows (they share examples, hence a correction valid under
    any dependence); the audit is invalid only if some adjusted p is below 0.05.  Without null
    rows there is nothing to check, and the report warns so.

    Parameters
    ----------
    results:
        Result rows with their per-example scores.
    """
    nulls = [r for r in results if r["model"] == "null"]
    raw = [auroc_p_value(r["examples"]["score"], r["examples"]["is_member"]) for r in nulls]
    adjusted = holm_adjust(raw) if raw else []
    rows = [
        {
            "name": r["name"],
            "features": r["features"],
            "auroc": r["metrics"]["auroc"]["value"],
            "p": p,
            "p_adjusted": float(q),
        }
        for r, p, q in zip(nulls, raw, adjusted, strict=True)
    ]
    return {
        "method": f"Holm–Bonferroni over {len(nulls)} null rows, family-wise alpha {ALPHA:g}, "
        "Mann–Whitney U p-values",
        "rows": rows,
        "valid": all(row["p_adjusted"] >= ALPHA for row in rows),
    }


def failed_null_controls(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The null rows of a verdicts report whose adjusted p is below alpha: the audit is then
    not valid.

    Parameters
    ----------
    report:
        A verdicts report.
    """
    return [r for r in report["null_control"]["rows"] if r["p_adjusted"] < ALPHA]


def evidence_warnings(
    headline: Mapping[str, Any], null: Mapping[str, Any], setup: Mapping[str, Any]
) -> list[str]:
    """First-screen warnings: metrics the evaluation units are too few for, a headline interval
    too wide to read, and a missing null control.

    Parameters
    ----------
    headline:
        As :func:`choose_headline` returns it.
    null:
        As :func:`null_control` returns it.
    setup:
        The report's setup; ``level`` ``"speaker"`` makes the units speakers.
    """
    unit = "speakers" if setup.get("level") == "speaker" else "examples"
    nonmembers = "non-member speakers" if unit == "speakers" else "non-members"
    n_members, n_nonmembers = headline["n_members"], headline["n_nonmembers"]
    messages = []
    for key, estimate in headline["metrics"].items():
        match = _TPR_KEY.fullmatch(key)
        if match and estimate["value"] is None:
            percent = match.group(1)
            # attack_metrics resolves an FPR once n_nonmembers * fpr >= 1.
            needed = math.ceil(100 / float(percent) - 1e-9)
            messages.append(
                f"TPR at {percent}% FPR needs at least {needed:,} {nonmembers}; this audit has "
                f"{n_nonmembers:,}"
            )
    auroc = headline["metrics"]["auroc"]
    width = (
        math.inf if auroc["low"] is None or auroc["high"] is None else auroc["high"] - auroc["low"]
    )
    if width > WIDE_INTERVAL or min(n_members, n_nonmembers) < MIN_PER_SIDE:
        shown = "undefined" if math.isinf(width) else f"{width:.2f} wide"
        messages.append(
            f"Too few evaluation units for a precise verdict: the headline AUROC interval is "
            f"{shown}, from {n_members:,} member and {n_nonmembers:,} non-member {unit}; about "
            f"{units_for_half_width(CHANCE_HALF_WIDTH):,} {unit} per side would give "
            f"±{CHANCE_HALF_WIDTH:g} at chance (Hanley–McNeil)"
        )
    if not null["rows"]:
        messages.append(
            "No null control was run, so these results cannot be checked against chance"
        )
    return messages


def units_for_half_width(half_width: float) -> int:
    """Members (and as many non-members) for a 95% AUROC interval of ``half_width`` at chance.

    Hanley and McNeil's standard error at AUROC 0.5 with n a side is sqrt((2n + 1) / (12 n^2)),
    so 1.96 SE <= h when 12 c n^2 - 2 n - 1 >= 0 with c = (h / 1.96)^2: n is the positive root.

    Parameters
    ----------
    half_width:
        The wanted half-width, e.g. 0.05.
    """
    c = (half_width / 1.96) ** 2
    return math.ceil((2 + math.sqrt(4 + 48 * c)) / (24 * c))


# --- reading the verdict --------------------------------------------------------------------


def risk_level(result: Mapping[str, Any]) -> str:
    """``high``, ``moderate``, ``low``, ``none`` or ``unknown``, from AUROC and TPR at low FPR.

    Parameters
    ----------
    result:
        The report's ``headline`` (or any result row).
    """
    auroc = _estimate(result, "auroc")
    if math.isnan(auroc.low) or math.isnan(auroc.high):
        return "unknown"
    if is_chance(auroc) or auroc.high < 0.5:
        return "none"
    fpr, tpr = _lowest_fpr_tpr(result)
    if auroc.value >= 0.8 or (tpr is not None and tpr >= 0.1):
        return "high"
    if auroc.value >= 0.6 or (tpr is not None and tpr >= 10 * fpr):
        return "moderate"
    return "low"


def risk_summary(result: Mapping[str, Any]) -> str:
    """A plain-language reading of the headline's AUROC and TPR at low FPR.

    Parameters
    ----------
    result:
        The report's ``headline`` (or any result row).
    """
    auroc = _estimate(result, "auroc")
    name = row_label(result)
    if math.isnan(auroc.low) or math.isnan(auroc.high):
        return f"The leakage cannot be judged: {name} has no AUROC interval."
    shown = interval_text(result["metrics"]["auroc"])
    if is_chance(auroc):
        return (
            f"No measurable leakage: the headline attack, {name}, cannot tell members from "
            f"non-members better than guessing (AUROC {shown})."
        )
    if auroc.high < 0.5:
        return (
            f"No leakage found, but {name} does worse than guessing (AUROC {shown}), which "
            "usually means a reversed score rather than a property of the model."
        )
    fpr, tpr = _lowest_fpr_tpr(result)
    level = {"high": "High risk", "moderate": "Moderate risk"}.get(
        risk_level(result), "Low but measurable risk"
    )
    low_fpr = (
        f"; at {fpr:.1%} false positives it finds {tpr:.1%} of the members"
        if tpr is not None
        else ""
    )
    return (
        f"{level}: the headline attack, {name}, tells members from non-members better than "
        f"guessing (AUROC {shown}{low_fpr})."
    )


def _lowest_fpr_tpr(result: Mapping[str, Any]) -> tuple[float, float | None]:
    """The lowest FPR with a defined TPR in this result, and that TPR (None when there is none)."""
    defined = []
    for key, estimate in result["metrics"].items():
        match = _TPR_KEY.fullmatch(key)
        if match and estimate.get("value") is not None:
            defined.append((float(match.group(1)) / 100, estimate["value"]))
    return min(defined) if defined else (math.nan, None)


def _estimate(result: Mapping[str, Any], key: str) -> Estimate:
    """A metric of a result as an :class:`Estimate`, NaN where it is null or absent."""
    return as_estimate(result["metrics"].get(key, {}))


def as_estimate(stored: Mapping[str, float | None]) -> Estimate:
    """An estimate as JSON holds it, as an :class:`Estimate`, NaN where null or absent.

    Parameters
    ----------
    stored:
        ``{"value", "low", "high"}``, each a number or None.
    """
    return Estimate(
        *(math.nan if stored.get(b) is None else stored[b] for b in ("value", "low", "high"))
    )


def interval_text(estimate: Mapping[str, float | None]) -> str:
    """``value [low, high]`` to three decimals, ``value`` without an interval, ``n/a`` without
    a value.

    Parameters
    ----------
    estimate:
        ``{"value", "low", "high"}`` as JSON holds it.
    """
    if estimate["value"] is None:
        return "n/a"
    if estimate["low"] is None or estimate["high"] is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def row_label(result: Mapping[str, Any]) -> str:
    return f"{result['name']} ({result['features']})"


def json_estimate(estimate: Estimate) -> dict[str, float | None]:
    # JSON has no NaN: an undefined metric is null.
    return {k: None if math.isnan(v) else float(v) for k, v in estimate.to_dict().items()}
