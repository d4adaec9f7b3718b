"""Membership-inference results: rows, the report, and the files that let anyone check them.

A report is plain JSON data.  Kind ``verdicts`` holds attack results with membership ground
truth: each attack against the target model, and the same attack against a *null* model that
never saw the evaluated data (the null control).  Kind ``scores`` holds membership scores from a
scoring-mode run with no ground truth: scores, never verdicts.  See :func:`validate_report`.

A verdicts report also holds the rules its first screen rests on (the headline attack, the
null control, warnings), computed by :func:`new_report` with :mod:`voxaudit.mia.verdicts` from
every row's per-example scores; :mod:`voxaudit.mia.schema` checks the result.

In memory each row keeps its per-example scores (``examples``); :func:`save_results` writes them
to ``examples.csv`` beside ``report.json``, from which every metric can be recomputed, and
:func:`load_results` reads both back.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from voxaudit import __version__
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.metrics import (
    attack_metrics,
    roc_curve,
)
from voxaudit.mia.schema import SCHEMA, is_unit, validate_report
from voxaudit.mia.verdicts import (
    choose_headline,
    evidence_warnings,
    json_estimate,
    null_control,
    row_label,
)

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
MIA_METRICS = ("accuracy", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")  # the tables' columns
_TPR_AT = re.compile(r"tpr@([0-9]+(?:\.[0-9]+)?)%fpr")


def metric_key(name: str) -> str:
    """A report's metric key from what a user types: ``tpr@1%fpr`` (the gate's spelling) is
    ``tpr_at_1%_fpr``; any other name is lower-cased and kept."""
    name = name.strip().lower()
    match = _TPR_AT.fullmatch(name)
    return f"tpr_at_{match.group(1)}%_fpr" if match else name


ROC_POINTS = 200

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
        if not is_unit(shadow_auroc):
            raise VoxauditError(f"{name} ({features}): shadow AUROC {shadow_auroc} not in [0, 1]")
    entry: dict[str, Any] = {
        "name": name,
        "features": features,
        "model": model,
        "n_members": n_members,
        "n_nonmembers": len(examples["id"]) - n_members,
        "metrics": {key: json_estimate(estimate) for key, estimate in metrics.items()},
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
        Scoring mode: ``{"id", "speaker", "score", "log_odds", "percentile"}`` items (as
        :func:`voxaudit.mia.scoring.score_rows` makes them; the last two may be missing from
        reports written before they were recorded).
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
        missing = [row_label(r) for r in rows if "examples" not in r]
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
        missing = [row_label(r) for r in report["results"] if "examples" not in r]
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


def read_reports(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """The validated reports at ``path``: one report, or each level's of an audit folder.

    Parameters
    ----------
    path:
        A report's folder or ``report.json`` (one entry, labelled ``""``), or the folder
        ``voxaudit audit`` wrote (its ``LEVEL/report`` folders, labelled by level).
    """
    path = Path(path)
    try:
        return [("", read_report(path))]
    except VoxauditError:
        levels = sorted(path.glob(f"*/report/{REPORT_JSON}")) if path.is_dir() else []
        if not levels:
            raise
    return [(found.parent.parent.name, read_report(found)) for found in levels]


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
