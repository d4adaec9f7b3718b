"""Membership-inference results: rows, verdict rules, and the files that let anyone check them.

A report is plain JSON data.  Kind ``verdicts`` holds attack results with membership ground
truth: each attack against the target model, and the same attack against a *null* model that
never saw the evaluated data (the null control).  Kind ``scores`` holds membership scores from a
scoring-mode run with no ground truth: scores, never verdicts.  See :func:`validate_report`.

A verdicts report also holds the rules its first screen rests on, computed by
:func:`new_report` from every row's per-example scores:

* the **headline** attack (:func:`choose_headline`), chosen on shadow data before the target
  was seen; only when no candidate row has a shadow AUROC, the maximum target AUROC, with an
  interval that accounts for taking a maximum;
* the **null control** (:func:`null_control`): the audit is invalid only if some null row's
  AUROC differs from 0.5 after a Holm-Bonferroni correction over all null rows;
* **warnings** when the evaluation units are too few for a metric or a usable interval.

In memory each row keeps its per-example scores (``examples``); :func:`save_results` writes them
to ``examples.csv`` beside ``report.json``, from which every metric can be recomputed, and
:func:`load_results` reads both back.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit import __version__
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.metrics import (
    Estimate,
    attack_metrics,
    auroc_p_value,
    holm_adjust,
    is_chance,
    joint_bootstrap_auroc,
    roc_curve,
)

SCHEMA = "voxaudit.mia-report/2"
REPORT_JSON = "report.json"
EXAMPLES_CSV = "examples.csv"
EXAMPLE_COLUMNS = (
    "attack",
    "features",
    "model",
    "id",
    "speaker",
    "score",
    "is_member",
    "prediction",
)
KINDS = ("verdicts", "scores")
MODELS = ("target", "null")
MIA_METRICS = ("accuracy", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")  # the tables' columns
ROC_POINTS = 200
TOP_EXAMPLES = 10  # the headline attack's highest-scoring target examples, in the report
ALPHA = 0.05  # family-wise, for the null control
WIDE_INTERVAL = 0.2  # a headline AUROC interval wider than this gets a warning
MIN_PER_SIDE = 50  # so do fewer members or non-members than this
CHANCE_HALF_WIDTH = 0.05  # the interval half-width at chance the warning sizes the audit for
SHADOW_CHOICE = "shadow data (highest shadow AUROC, before the target was seen)"

_TOP_FIELDS = {
    "schema",
    "kind",
    "created",
    "voxaudit_version",
    "setup",
    "results",
    "scores",
    "selection",
    "headline",
    "null_control",
    "warnings",
    "examples_file",
}
_VERDICT_FIELDS = ("headline", "null_control")
_RESULT_FIELDS = {
    "name",
    "features",
    "model",
    "n_members",
    "n_nonmembers",
    "metrics",
    "roc",
    "shadow_auroc",
    "headline_candidate",
}
_OPTIONAL_RESULT_FIELDS = {"feature_importances", "notes", "examples"}
_EXAMPLE_FIELDS = {"id", "speaker", "score", "is_member", "prediction"}
_HEADLINE_FIELDS = {
    "name",
    "features",
    "chosen_by",
    "n_candidates",
    "not_considered",
    "n_members",
    "n_nonmembers",
    "shadow_auroc",
    "metrics",
    "top_examples",
}
_TPR_KEY = re.compile(r"tpr_at_(.+)%_fpr")


# --- rows -----------------------------------------------------------------------------------


def result_entry(
    name: str,
    features: str,
    model: str,
    scores: Sequence[float],
    is_member: Sequence[bool],
    *,
    ids: Sequence[str],
    speakers: Sequence[str] | None = None,
    predictions: Sequence[bool] | None = None,
    feature_importances: Mapping[str, float] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    notes: str | None = None,
    shadow_auroc: float | None = None,
    headline_candidate: bool = True,
) -> dict[str, Any]:
    """One ``results`` row: the attack's metrics with intervals, its downsampled ROC, and (in
    memory, for ``examples.csv``) its per-example scores.

    Parameters
    ----------
    name, features:
        The attack and the features it used; together with ``model`` they name the row.
    model:
        ``"target"`` or ``"null"``.
    scores, is_member:
        Each evaluated unit's membership score and ground truth.
    ids:
        The evaluated units, one per score: example ids, or speaker names at speaker level.
    speakers:
        The speaker of each unit, where known.
    predictions:
        The attack's own decisions (threshold fixed on shadow data), for accuracy, precision,
        recall and advantage.
    feature_importances:
        Per feature column, for the report.
    n_bootstrap, seed:
        Stratified bootstrap resamples for the intervals, and their seed.
    notes:
        Free text shown beside the results table.
    shadow_auroc:
        The attack's AUROC on shadow data, measured before the target was seen (None when not
        measurable); the headline is chosen by it.
    headline_candidate:
        False for rows that cannot be the headline: ablations, query reductions, points of a
        per-count curve.
    """
    metrics = attack_metrics(scores, is_member, predictions, n_bootstrap=n_bootstrap, seed=seed)
    fpr, tpr = downsample_roc(*roc_curve(scores, is_member))
    examples = _examples(ids, speakers, scores, is_member, predictions)
    n_members = sum(examples["is_member"])
    if shadow_auroc is not None:
        shadow_auroc = float(shadow_auroc)
        if not _is_unit(shadow_auroc):
            raise VoxauditError(f"{name} ({features}): shadow AUROC {shadow_auroc} not in [0, 1]")
    entry: dict[str, Any] = {
        "name": name,
        "features": features,
        "model": model,
        "n_members": n_members,
        "n_nonmembers": len(examples["id"]) - n_members,
        "metrics": {key: _json_estimate(estimate) for key, estimate in metrics.items()},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
        "shadow_auroc": shadow_auroc,
        "headline_candidate": bool(headline_candidate),
    }
    if feature_importances is not None:
        entry["feature_importances"] = {str(k): float(v) for k, v in feature_importances.items()}
    if notes is not None:
        entry["notes"] = notes
    entry["examples"] = examples
    return entry


def _examples(
    ids: Sequence[str],
    speakers: Sequence[str] | None,
    scores: Sequence[float],
    is_member: Sequence[bool],
    predictions: Sequence[bool] | None,
) -> dict[str, list[Any]]:
    """The per-example columns as JSON-ready lists (``attack_metrics`` has checked the rest)."""
    ids = [str(i) for i in ids]
    if len(ids) != len(scores):
        raise VoxauditError(f"result entry: {len(ids)} ids for {len(scores)} scores")
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise VoxauditError(f"result entry: id {twice!r} is scored twice")
    examples: dict[str, list[Any]] = {"id": ids}
    if speakers is not None:
        if len(speakers) != len(ids):
            raise VoxauditError(f"result entry: {len(speakers)} speakers for {len(ids)} ids")
        examples["speaker"] = [str(s) for s in speakers]
    examples["score"] = [float(s) for s in scores]
    examples["is_member"] = [bool(m) for m in is_member]
    if predictions is not None:
        examples["prediction"] = [bool(p) for p in predictions]
    return examples


def downsample_roc(
    fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` of the ROC's own operating points, dense at low FPR.

    For 0 and each FPR on a log-spaced grid up to 1 it keeps the last point at or below it (the
    one with the highest TPR there), so the curve stays a staircase of real points, ends included.
    The full curve can be recomputed from ``examples.csv``.

    Parameters
    ----------
    fpr, tpr:
        Every operating point, in increasing order (as :func:`voxaudit.mia.metrics.roc_curve`).
    points:
        The most points to keep.
    """
    if len(fpr) <= points:
        return fpr, tpr
    grid = np.r_[0.0, np.geomspace(fpr[fpr > 0].min(), 1.0, points - 2)]
    keep = np.unique(np.r_[0, np.searchsorted(fpr, grid, side="right") - 1])
    return fpr[keep], tpr[keep]


def _json_estimate(estimate: Estimate) -> dict[str, float | None]:
    # JSON has no NaN: an undefined metric is null.
    return {k: None if math.isnan(v) else float(v) for k, v in estimate.to_dict().items()}


# --- the report -----------------------------------------------------------------------------


def new_report(
    setup: Mapping[str, Any],
    *,
    results: Sequence[Mapping[str, Any]] | None = None,
    scores: Sequence[Mapping[str, Any]] | None = None,
    selection: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """A validated report: kind ``verdicts`` given ``results``, kind ``scores`` given ``scores``.

    A verdicts report gets its ``headline`` (:func:`choose_headline`), its ``null_control``
    (:func:`null_control`) and the warnings of :func:`evidence_warnings`; its rows need their
    per-example scores (as :func:`result_entry` makes them).

    Parameters
    ----------
    setup:
        What was audited and how (free-form JSON data; ``level`` names the evaluation unit).
    results:
        Result rows, target and null.
    scores:
        Scoring mode: ``{"id", "speaker", "score"}`` items.
    selection:
        What was chosen on shadow data.
    warnings:
        The caller's first-screen warnings, listed before the computed ones.
    n_bootstrap, seed:
        Resamples (and seed) of the joint bootstrap when the headline is a maximum.
    """
    if (results is None) == (scores is None):
        raise VoxauditError("report: give either results (verdicts) or scores, not both")
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "verdicts" if results is not None else "scores",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voxaudit_version": __version__,
        "setup": dict(setup),
    }
    messages = [str(w) for w in warnings]
    if results is not None:
        rows = [dict(result) for result in results]
        missing = [_label(r) for r in rows if "examples" not in r]
        if missing:
            raise VoxauditError(
                f"report: {missing[0]} has no per-example scores; make rows with result_entry"
            )
        report["results"] = rows
        report["headline"] = choose_headline(rows, n_bootstrap=n_bootstrap, seed=seed)
        report["null_control"] = null_control(rows)
        messages += evidence_warnings(report["headline"], report["null_control"], setup)
    else:
        report["scores"] = [dict(item) for item in scores]
    if selection is not None:
        report["selection"] = dict(selection)
    report["warnings"] = list(dict.fromkeys(messages))
    validate_report(report)
    return report


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
    not_considered = [_label(r) for r in candidates if r["shadow_auroc"] is None]
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
        metrics["auroc"] = _json_estimate(
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
    name = _label(result)
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


def _label(result: Mapping[str, Any]) -> str:
    return f"{result['name']} ({result['features']})"


# --- validation -----------------------------------------------------------------------------


def validate_report(report: Any) -> None:
    """Raise :class:`VoxauditError` naming the first field that breaks the schema.

    Parameters
    ----------
    report:
        The report, in memory (rows may hold ``examples``) or as read from ``report.json``.
    """
    _expect(isinstance(report, dict), "", "an object", report)
    if report.get("schema") != SCHEMA:
        raise VoxauditError(
            f"report field schema: expected {SCHEMA!r}, got {report.get('schema')!r}"
        )
    _no_unknown(report, _TOP_FIELDS, "")
    kind = _field(report, "kind", "", lambda v: v in KINDS, f"one of {', '.join(KINDS)}")
    _field(report, "created", "", _is_iso_time, "an ISO-8601 time")
    _field(report, "voxaudit_version", "", _is_str, "a string")
    _field(report, "setup", "", _is_object, "an object")
    if "selection" in report:
        _field(report, "selection", "", _is_object, "an object")
    _field(report, "warnings", "", _is_str_list, "a list of strings")
    if "examples_file" in report:
        _field(report, "examples_file", "", _is_str, "a string")
    items, other = ("results", "scores") if kind == "verdicts" else ("scores", "results")
    for field in (other, *(_VERDICT_FIELDS if kind == "scores" else ())):
        if field in report:
            raise VoxauditError(f"report field {field}: not allowed in a {kind!r} report")
    entries = _field(
        report, items, "", lambda v: isinstance(v, list) and bool(v), "a non-empty list"
    )
    check = _check_result if kind == "verdicts" else _check_score
    for i, entry in enumerate(entries):
        check(entry, f"{items}[{i}]")
    if kind == "verdicts":
        if not any(r["model"] == "target" for r in entries):
            raise VoxauditError("report field results: no result for the target model")
        seen: set[tuple[str, str, str]] = set()
        for i, r in enumerate(entries):
            key = (r["name"], r["features"], r["model"])
            if key in seen:
                raise VoxauditError(
                    f"report field results[{i}]: {_label(r)} on the {r['model']} model twice"
                )
            seen.add(key)
        _check_headline(report, entries)
        _check_null_control(report)


def _check_result(result: Any, where: str) -> None:
    _expect(isinstance(result, dict), where, "an object", result)
    _no_unknown(result, _RESULT_FIELDS | _OPTIONAL_RESULT_FIELDS, where)
    _field(result, "name", where, _is_str, "a string")
    _field(result, "features", where, _is_str, "a string")
    _field(result, "model", where, lambda v: v in MODELS, f"one of {', '.join(MODELS)}")
    for count in ("n_members", "n_nonmembers"):
        _field(result, count, where, lambda v: _is_int(v) and v > 0, "a positive integer")
    _check_metrics(_field(result, "metrics", where, _is_object, "an object"), f"{where}.metrics")
    roc = _field(result, "roc", where, _is_object, "an object")
    _no_unknown(roc, {"fpr", "tpr"}, f"{where}.roc")
    in_unit = "a list of at least 2 numbers in [0, 1]"
    fpr = _field(roc, "fpr", f"{where}.roc", _is_unit_list, in_unit)
    tpr = _field(roc, "tpr", f"{where}.roc", _is_unit_list, in_unit)
    _expect(len(fpr) == len(tpr), f"{where}.roc.tpr", f"{len(fpr)} values like fpr", tpr)
    _field(result, "shadow_auroc", where, _is_unit_or_null, "a number in [0, 1] or null")
    _field(result, "headline_candidate", where, _is_bool, "true or false")
    if "feature_importances" in result:
        importances = _field(result, "feature_importances", where, _is_object, "an object")
        for column, value in importances.items():
            _expect(_is_number(value), f"{where}.feature_importances.{column}", "a number", value)
    if "notes" in result:
        _field(result, "notes", where, _is_str, "a string")
    if "examples" in result:
        _check_examples(result, where)


def _check_examples(result: dict[str, Any], where: str) -> None:
    at = f"{where}.examples"
    examples = _field(result, "examples", where, _is_object, "an object")
    _no_unknown(examples, _EXAMPLE_FIELDS, at)
    n = result["n_members"] + result["n_nonmembers"]
    sized = f"a list of {n} "
    _field(examples, "id", at, lambda v: _is_list_of(v, n, _is_str), sized + "strings")
    if "speaker" in examples:
        _field(examples, "speaker", at, lambda v: _is_list_of(v, n, _is_str), sized + "strings")
    _field(examples, "score", at, lambda v: _is_list_of(v, n, _is_number), sized + "numbers")
    labels = _field(
        examples, "is_member", at, lambda v: _is_list_of(v, n, _is_bool), sized + "booleans"
    )
    _expect(
        sum(labels) == result["n_members"],
        f"{at}.is_member",
        f"{result['n_members']} members",
        sum(labels),
    )
    if "prediction" in examples:
        _field(
            examples, "prediction", at, lambda v: _is_list_of(v, n, _is_bool), sized + "booleans"
        )


def _check_metrics(metrics: dict[str, Any], where: str) -> None:
    for key, estimate in metrics.items():
        at = f"{where}.{key}"
        _expect(isinstance(estimate, dict), at, "an object", estimate)
        _no_unknown(estimate, {"value", "low", "high"}, at)
        for bound in ("value", "low", "high"):
            _field(estimate, bound, at, lambda v: v is None or _is_number(v), "a number or null")


def _check_headline(report: dict[str, Any], results: list[dict[str, Any]]) -> None:
    headline = _field(report, "headline", "", _is_object, "an object")
    _no_unknown(headline, _HEADLINE_FIELDS, "headline")
    for name in ("name", "features", "chosen_by"):
        _field(headline, name, "headline", _is_str, "a string")
    for count in ("n_candidates", "n_members", "n_nonmembers"):
        _field(headline, count, "headline", lambda v: _is_int(v) and v > 0, "a positive integer")
    _field(headline, "not_considered", "headline", _is_str_list, "a list of strings")
    _field(headline, "shadow_auroc", "headline", _is_unit_or_null, "a number in [0, 1] or null")
    metrics = _field(
        headline, "metrics", "headline", lambda v: _is_object(v) and "auroc" in v, "metrics"
    )
    _check_metrics(metrics, "headline.metrics")
    top = _field(headline, "top_examples", "headline", lambda v: isinstance(v, list), "a list")
    for i, item in enumerate(top):
        at = f"headline.top_examples[{i}]"
        _expect(isinstance(item, dict), at, "an object", item)
        _no_unknown(item, {"id", "speaker", "score", "is_member"}, at)
        _field(item, "id", at, _is_str, "a string")
        _field(item, "speaker", at, lambda v: v is None or _is_str(v), "a string or null")
        _field(item, "score", at, _is_number, "a number")
        _field(item, "is_member", at, _is_bool, "true or false")
    named = (headline["name"], headline["features"], "target")
    if not any((r["name"], r["features"], r["model"]) == named for r in results):
        raise VoxauditError(
            f"report field headline.name: no target result {_label(headline)} in results"
        )


def _check_null_control(report: dict[str, Any]) -> None:
    null = _field(report, "null_control", "", _is_object, "an object")
    _no_unknown(null, {"method", "rows", "valid"}, "null_control")
    _field(null, "method", "null_control", _is_str, "a string")
    _field(null, "valid", "null_control", _is_bool, "true or false")
    rows = _field(null, "rows", "null_control", lambda v: isinstance(v, list), "a list")
    for i, row in enumerate(rows):
        at = f"null_control.rows[{i}]"
        _expect(isinstance(row, dict), at, "an object", row)
        _no_unknown(row, {"name", "features", "auroc", "p", "p_adjusted"}, at)
        _field(row, "name", at, _is_str, "a string")
        _field(row, "features", at, _is_str, "a string")
        for number in ("auroc", "p", "p_adjusted"):
            _field(row, number, at, _is_unit, "a number in [0, 1]")
    holds = all(row["p_adjusted"] >= ALPHA for row in rows)
    _expect(null["valid"] == holds, "null_control.valid", f"{holds} from the rows", null["valid"])


def _check_score(item: Any, where: str) -> None:
    _expect(isinstance(item, dict), where, "an object", item)
    _no_unknown(item, {"id", "speaker", "score"}, where)
    _field(item, "id", where, _is_str, "a string")
    _field(item, "speaker", where, _is_str, "a string")
    _field(item, "score", where, _is_number, "a number")


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_list_of(value: Any, n: int, valid: Callable[[Any], bool]) -> bool:
    return isinstance(value, list) and len(value) == n and all(valid(v) for v in value)


def _is_iso_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_object(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_unit(value: Any) -> bool:
    return _is_number(value) and 0 <= value <= 1


def _is_unit_or_null(value: Any) -> bool:
    return value is None or _is_unit(value)


def _is_unit_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 2 and all(_is_unit(v) for v in value)


def _field(
    obj: dict[str, Any],
    name: str,
    where: str,
    valid: Callable[[Any], bool],
    expected: str,
) -> Any:
    """``obj[name]``, which must exist and pass ``valid``."""
    at = f"{where}.{name}" if where else name
    if name not in obj:
        raise VoxauditError(f"report field {at}: missing")
    _expect(valid(obj[name]), at, expected, obj[name])
    return obj[name]


def _expect(ok: bool, at: str, expected: str, got: Any) -> None:
    if not ok:
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        raise VoxauditError(
            f"report field {at or '(top level)'}: expected {expected}, "
            f"got {shown} ({type(got).__name__})"
        )


def _no_unknown(obj: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        at = f"{where}.{unknown[0]}" if where else unknown[0]
        raise VoxauditError(f"report field {at}: unknown field")


# --- files ----------------------------------------------------------------------------------


def without_examples(report: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``report`` without its rows' per-example arrays (what ``report.json`` holds).

    Parameters
    ----------
    report:
        A report.
    """
    stripped = dict(report)
    if "results" in report:
        stripped["results"] = [
            {k: v for k, v in r.items() if k != "examples"} for r in report["results"]
        ]
    return stripped


def save_results(out_dir: str | Path, report: Mapping[str, Any]) -> dict[str, Path]:
    """Validate, then write ``report.json`` and (verdicts) ``examples.csv`` atomically.

    ``report.json`` holds everything but the per-example arrays and names ``examples.csv``
    (``examples_file``): one row per example per result row, target and null, with columns
    attack, features, model, id, speaker, score (``repr``, full precision), is_member and
    prediction (1 or 0; empty where the attack made none).  Nothing is written when the report
    is not valid or not JSON data.

    Parameters
    ----------
    out_dir:
        The folder (made if needed).
    report:
        A report as :func:`new_report` makes it.

    Returns the paths written, by file name.
    """
    validate_report(report)
    stored = without_examples(report)
    table = None
    if report["kind"] == "verdicts":
        missing = [_label(r) for r in report["results"] if "examples" not in r]
        if missing:
            raise VoxauditError(
                f"report: {missing[0]} has no per-example scores to write (read the report "
                "with load_results, not read_report, to save it again)"
            )
        stored["examples_file"] = EXAMPLES_CSV
        table = examples_csv(report["results"])
    try:
        text = json.dumps(stored, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        # Free-form setup and selection values are only checked here.
        raise VoxauditError(f"report: not JSON data ({exc})") from exc
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if table is not None:
        # The examples first: a report.json is never newer than the examples it names.
        written[EXAMPLES_CSV] = write_atomically(out_dir / EXAMPLES_CSV, table)
    written[REPORT_JSON] = write_atomically(out_dir / REPORT_JSON, text)
    return written


def examples_csv(results: Sequence[Mapping[str, Any]]) -> str:
    """The per-example scores of ``results`` as the text of ``examples.csv``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXAMPLE_COLUMNS)
    for r in results:
        examples = r["examples"]
        n = len(examples["id"])
        speakers = examples.get("speaker", [""] * n)
        predictions = examples.get("prediction", [None] * n)
        for i in range(n):
            writer.writerow(
                (
                    r["name"],
                    r["features"],
                    r["model"],
                    examples["id"][i],
                    speakers[i],
                    repr(examples["score"][i]),
                    int(examples["is_member"][i]),
                    "" if predictions[i] is None else int(predictions[i]),
                )
            )
    return buffer.getvalue()


def read_report(path: str | Path) -> dict[str, Any]:
    """A validated report from ``report.json`` (or the folder holding it), without examples.

    Parameters
    ----------
    path:
        ``report.json`` or its folder.
    """
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VoxauditError(f"{path}: not a readable report ({exc})") from exc
    try:
        validate_report(report)
    except VoxauditError as exc:
        raise VoxauditError(f"{path}: {exc}") from None
    return report


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """A report with every row's per-example scores, from ``report.json`` and ``examples.csv``.

    Parameters
    ----------
    out_dir:
        The folder :func:`save_results` wrote (or its ``report.json``).
    """
    path = Path(out_dir)
    folder = path if path.is_dir() else path.parent
    report = read_report(path)
    if "examples_file" not in report:
        return report
    examples_path = folder / report["examples_file"]
    try:
        with examples_path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as exc:
        raise VoxauditError(f"{examples_path}: not readable ({exc})") from exc
    by_row: dict[tuple[str, str, str], list[dict[str, str]]] = {}
    for row in rows:
        by_row.setdefault((row["attack"], row["features"], row["model"]), []).append(row)
    try:
        for result in report["results"]:
            key = (result["name"], result["features"], result["model"])
            result["examples"] = _parsed(by_row.pop(key, []))
    except (KeyError, ValueError) as exc:
        raise VoxauditError(f"{examples_path}: not an examples table ({exc})") from None
    if by_row:
        attack, features, model = next(iter(by_row))
        raise VoxauditError(
            f"{examples_path}: rows of {attack} ({features}) on the {model} model, which the "
            "report does not hold"
        )
    try:
        validate_report(report)
    except VoxauditError as exc:
        raise VoxauditError(f"{examples_path}: {exc}") from None
    return report


def _parsed(rows: Sequence[Mapping[str, str]]) -> dict[str, list[Any]]:
    """One result row's examples from its CSV rows (columns left empty are left out)."""
    flags = {"1": True, "0": False}
    examples: dict[str, list[Any]] = {"id": [row["id"] for row in rows]}
    if any(row["speaker"] for row in rows):
        examples["speaker"] = [row["speaker"] for row in rows]
    examples["score"] = [float(row["score"]) for row in rows]
    examples["is_member"] = [flags[row["is_member"]] for row in rows]
    if any(row["prediction"] for row in rows):
        examples["prediction"] = [flags[row["prediction"]] for row in rows]
    return examples
