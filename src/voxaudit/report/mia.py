"""Membership-inference audit reports: ``report.json`` (a versioned schema) and ``report.html``.

A report is plain JSON data.  Kind ``verdicts`` holds attack results with membership ground
truth: each attack against the target model, and the same attack against a *null* model that
never saw the evaluated data (the null control, whose AUROC must sit at chance for the audit to
be valid).  Kind ``scores`` holds membership scores from a scoring-mode run with no ground truth:
scores, never verdicts.  See :func:`validate_report` for the exact fields.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voxaudit import __version__
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.metrics import Estimate, attack_metrics, is_chance, roc_curve

SCHEMA = "voxaudit.mia-report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
KINDS = ("verdicts", "scores")
MODELS = ("target", "null")
MIA_METRICS = ("accuracy", "auroc", "tpr_at_0.1%_fpr", "tpr_at_1%_fpr")  # the tables' columns
ROC_POINTS = 200

_TOP_FIELDS = {
    "schema",
    "kind",
    "created",
    "voxaudit_version",
    "setup",
    "results",
    "scores",
    "selection",
}
_RESULT_FIELDS = {"name", "features", "model", "n_members", "n_nonmembers", "metrics", "roc"}
_OPTIONAL_RESULT_FIELDS = {"feature_importances", "notes"}
_TPR_KEY = re.compile(r"tpr_at_(.+)%_fpr")


# --- building -------------------------------------------------------------------------------


def result_entry(
    name: str,
    features: str,
    model: str,
    scores: Sequence[float],
    is_member: Sequence[bool],
    predictions: Sequence[bool] | None = None,
    feature_importances: Mapping[str, float] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    notes: str | None = None,
) -> dict[str, Any]:
    """One ``results`` item: the attack's metrics with intervals and its downsampled ROC."""
    metrics = attack_metrics(scores, is_member, predictions, n_bootstrap=n_bootstrap, seed=seed)
    fpr, tpr = downsample_roc(*roc_curve(scores, is_member))
    n_members = int(np.count_nonzero(np.asarray(is_member)))
    entry: dict[str, Any] = {
        "name": name,
        "features": features,
        "model": model,
        "n_members": n_members,
        "n_nonmembers": len(scores) - n_members,
        "metrics": {key: _json_estimate(estimate) for key, estimate in metrics.items()},
        "roc": {"fpr": fpr.tolist(), "tpr": tpr.tolist()},
    }
    if feature_importances is not None:
        entry["feature_importances"] = {str(k): float(v) for k, v in feature_importances.items()}
    if notes is not None:
        entry["notes"] = notes
    return entry


def new_report(
    setup: Mapping[str, Any],
    *,
    results: Sequence[Mapping[str, Any]] | None = None,
    scores: Sequence[Mapping[str, Any]] | None = None,
    selection: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A validated report: kind ``verdicts`` given ``results``, kind ``scores`` given ``scores``."""
    if (results is None) == (scores is None):
        raise VoxauditError("report: give either results (verdicts) or scores, not both")
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "kind": "verdicts" if results is not None else "scores",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voxaudit_version": __version__,
        "setup": dict(setup),
    }
    if results is not None:
        report["results"] = [dict(result) for result in results]
    else:
        report["scores"] = [dict(item) for item in scores]
    if selection is not None:
        report["selection"] = dict(selection)
    validate_report(report)
    return report


def downsample_roc(
    fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` of the ROC's own operating points, dense at low FPR.

    For 0 and each FPR on a log-spaced grid up to 1 it keeps the last point at or below it (the
    one with the highest TPR there), so the curve stays a staircase of real points, ends included.
    """
    if len(fpr) <= points:
        return fpr, tpr
    grid = np.r_[0.0, np.geomspace(fpr[fpr > 0].min(), 1.0, points - 2)]
    keep = np.unique(np.r_[0, np.searchsorted(fpr, grid, side="right") - 1])
    return fpr[keep], tpr[keep]


def _json_estimate(estimate: Estimate) -> dict[str, float | None]:
    # JSON has no NaN: an undefined metric is null.
    return {k: None if math.isnan(v) else v for k, v in estimate.to_dict().items()}


# --- validation -----------------------------------------------------------------------------


def validate_report(report: Any) -> None:
    """Raise :class:`VoxauditError` naming the first field that breaks the schema."""
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
    items, other = ("results", "scores") if kind == "verdicts" else ("scores", "results")
    if other in report:
        raise VoxauditError(f"report field {other}: not allowed in a {kind!r} report")
    entries = _field(
        report, items, "", lambda v: isinstance(v, list) and bool(v), "a non-empty list"
    )
    check = _check_result if kind == "verdicts" else _check_score
    for i, entry in enumerate(entries):
        check(entry, f"{items}[{i}]")
    if kind == "verdicts" and not any(r["model"] == "target" for r in entries):
        raise VoxauditError("report field results: no result for the target model")


def _check_result(result: Any, where: str) -> None:
    _expect(isinstance(result, dict), where, "an object", result)
    _no_unknown(result, _RESULT_FIELDS | _OPTIONAL_RESULT_FIELDS, where)
    _field(result, "name", where, _is_str, "a string")
    _field(result, "features", where, _is_str, "a string")
    _field(result, "model", where, lambda v: v in MODELS, f"one of {', '.join(MODELS)}")
    for count in ("n_members", "n_nonmembers"):
        _field(result, count, where, lambda v: _is_int(v) and v > 0, "a positive integer")
    metrics = _field(result, "metrics", where, _is_object, "an object")
    for key, estimate in metrics.items():
        at = f"{where}.metrics.{key}"
        _expect(isinstance(estimate, dict), at, "an object", estimate)
        _no_unknown(estimate, {"value", "low", "high"}, at)
        for bound in ("value", "low", "high"):
            _field(estimate, bound, at, lambda v: v is None or _is_number(v), "a number or null")
    roc = _field(result, "roc", where, _is_object, "an object")
    _no_unknown(roc, {"fpr", "tpr"}, f"{where}.roc")
    in_unit = "a list of at least 2 numbers in [0, 1]"
    fpr = _field(roc, "fpr", f"{where}.roc", _is_unit_list, in_unit)
    tpr = _field(roc, "tpr", f"{where}.roc", _is_unit_list, in_unit)
    _expect(len(fpr) == len(tpr), f"{where}.roc.tpr", f"{len(fpr)} values like fpr", tpr)
    if "feature_importances" in result:
        importances = _field(result, "feature_importances", where, _is_object, "an object")
        for column, value in importances.items():
            _expect(_is_number(value), f"{where}.feature_importances.{column}", "a number", value)
    if "notes" in result:
        _field(result, "notes", where, _is_str, "a string")


def _check_score(item: Any, where: str) -> None:
    _expect(isinstance(item, dict), where, "an object", item)
    _no_unknown(item, {"id", "speaker", "score"}, where)
    _field(item, "id", where, _is_str, "a string")
    _field(item, "speaker", where, _is_str, "a string")
    _field(item, "score", where, _is_number, "a number")


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


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


def _is_unit_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) >= 2
        and all(_is_number(v) and 0 <= v <= 1 for v in value)
    )


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


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Validate, then write ``report.json`` and ``report.html`` atomically; their paths."""
    validate_report(report)
    try:
        text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        # Free-form setup and selection values are only checked here.
        raise VoxauditError(f"report: not JSON data ({exc})") from exc
    page = render_html(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / REPORT_JSON, out_dir / REPORT_HTML
    write_atomically(json_path, text)
    write_atomically(html_path, page)
    return json_path, html_path


def read_report(path: str | Path) -> dict[str, Any]:
    """A validated report from ``report.json`` (or the directory holding it)."""
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


# --- HTML -----------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.null td { color: #555; background: #fafafa; }
.summary { font-size: 1.1rem; padding: 0.75rem 1rem; border-left: 0.4rem solid #888; }
.invalid { border: 0.2rem solid #b00; background: #fee; padding: 0.75rem 1rem; font-weight: bold; }
.note { background: #fff6d6; padding: 0.5rem 1rem; border-left: 0.4rem solid #d9a400; }
.meta { color: #666; }
"""


def render_html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page (figures embedded, no external files)."""
    title = "voxaudit membership-inference audit"
    parts = [
        f"<h1>{title}</h1>",
        f'<p class="meta">created {_e(report["created"])}, '
        f"voxaudit {_e(report['voxaudit_version'])}</p>",
    ]
    if report["kind"] == "verdicts":
        parts += verdict_sections(report["results"])
    else:
        parts += score_summary()
    parts += ["<h2>Setup</h2>", key_value_table(report["setup"])]
    if report["kind"] == "verdicts":
        parts += result_sections(report["results"])
    else:
        parts += score_sections(report["scores"])
    if "selection" in report:
        parts += ["<h2>Selection on shadow data</h2>", key_value_table(report["selection"])]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def verdict_sections(results: list[dict[str, Any]]) -> list[str]:
    """The plain-language risk summary and the null-control check."""
    best = strongest(results)
    parts = []
    failed = failed_null_controls(results)
    if failed:
        names = ", ".join(f"{r['name']} ({r['features']})" for r in failed)
        parts.append(
            '<p class="invalid">This audit is not valid: the null control of '
            f"{_e(names)} is not at chance (its AUROC interval excludes 0.5). An attack that "
            "separates members from non-members of a model that never saw them measures a "
            "difference between the two sets, not leakage; fix the split before reading the "
            "results below.</p>"
        )
    parts.append(f'<p class="summary">{_e(risk_summary(best))}</p>')
    if not failed:
        nulls = [r for r in results if r["model"] == "null"]
        parts.append(
            "<p>"
            + (
                "The null control (each attack against a model that never saw the evaluated "
                "data) sits at chance, as it should."
                if nulls
                else "No null control was run, so these results cannot be checked against chance."
            )
            + "</p>"
        )
    return parts


def strongest(results: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The target result with the highest AUROC: the attack a risk reading rests on."""
    targets = [r for r in results if r["model"] == "target"]
    return max(targets, key=lambda r: np.nan_to_num(_estimate(r, "auroc").value, nan=-1.0))


def failed_null_controls(results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Null-control results whose AUROC interval excludes chance: the audit is then not valid."""
    return [r for r in results if r["model"] == "null" and not is_chance(_estimate(r, "auroc"))]


def risk_level(result: Mapping[str, Any]) -> str:
    """``high``, ``moderate``, ``low``, ``none`` or ``unknown``, from AUROC and TPR at low FPR."""
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
    """A plain-language reading of one target result's AUROC and TPR at low FPR."""
    auroc = _estimate(result, "auroc")
    name = _label(result)
    if math.isnan(auroc.low) or math.isnan(auroc.high):
        return f"The leakage cannot be judged: {name} has no AUROC interval."
    shown = interval_text(result["metrics"]["auroc"])
    if is_chance(auroc):
        return (
            f"No measurable leakage: the strongest attack, {name}, cannot tell members from "
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
        f"{level}: the strongest attack, {name}, tells members from non-members better than "
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


def result_sections(
    results: list[dict[str, Any]],
    depth: int = 2,
    top_features: int | None = None,
    roc_attacks: int | None = None,
) -> list[str]:
    """Results table, log-log ROC curves (of the ``roc_attacks`` strongest attacks) and feature
    importances (the ``top_features`` largest), under headings of level ``depth``."""
    h, sub = f"h{depth}", f"h{depth + 1}"
    parts = [f"<{h}>Results</{h}>", _results_table(results)]
    shown = _strongest_attacks(results, roc_attacks)
    which = "" if roc_attacks is None else f" (the {roc_attacks} strongest attacks)"
    parts += [f"<{h}>ROC curves{which}</{h}>", _roc_figure(shown)]
    with_importances = [r for r in results if "feature_importances" in r]
    if with_importances:
        shown = "" if top_features is None else f" (the {top_features} largest)"
        parts.append(f"<{h}>Feature importances{shown}</{h}>")
    for result in with_importances:
        ranked = sorted(result["feature_importances"].items(), key=lambda kv: -kv[1])
        rows = "".join(
            f'<tr><td>{_e(column)}</td><td class="num">{value:.4g}</td></tr>'
            for column, value in ranked[:top_features]
        )
        parts.append(
            f"<{sub}>{_e(_label(result))} ({_e(result['model'])} model)</{sub}>"
            f"<table><tr><th>feature</th><th>importance</th></tr>{rows}</table>"
        )
    return parts


def _strongest_attacks(results: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """The results (target and null) of the ``n`` attacks with the highest target AUROC."""
    if n is None:
        return results
    ranked = sorted(
        (r for r in results if r["model"] == "target"),
        key=lambda r: -np.nan_to_num(_estimate(r, "auroc").value, nan=-1.0),
    )
    keep = {_label(r) for r in ranked[:n]}
    return [r for r in results if _label(r) in keep]


def _results_table(results: list[dict[str, Any]]) -> str:
    """Every metric as ``value [low, high]``, each target row followed by its null control."""
    metric_names = list(dict.fromkeys(key for r in results for key in r["metrics"]))
    header = "".join(
        f"<th>{_e(h)}</th>"
        for h in ["attack", "features", "model", "members", "non-members", *metric_names]
    )
    rows = []
    for result in _paired(results):
        cells = [_e(result["name"]), _e(result["features"]), _e(result["model"])]
        cells = [f"<td>{c}</td>" for c in cells]
        cells += [f'<td class="num">{result[n]}</td>' for n in ("n_members", "n_nonmembers")]
        cells += [
            f'<td class="num">{interval_text(result["metrics"][key])}</td>'
            if key in result["metrics"]
            else "<td></td>"
            for key in metric_names
        ]
        rows.append(f'<tr class="{_e(result["model"])}">{"".join(cells)}</tr>')
    # An attack's target and null rows often carry the same note: list it once.
    notes = [f"<li>{_e(_label(r))}: {_e(r['notes'])}</li>" for r in results if "notes" in r]
    notes = list(dict.fromkeys(notes))
    return (
        f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        '<p class="meta">Each value is the estimate on all evaluated data, with its bootstrap '
        "95% interval in brackets; n/a marks a TPR at an FPR too low for the number of "
        "non-members to resolve.</p>" + (f"<ul>{''.join(notes)}</ul>" if notes else "")
    )


def _roc_figure(results: list[dict[str, Any]]) -> str:
    """Log-log ROC curves: targets solid, their null controls dashed in the same colour."""
    figure = Figure(figsize=(6, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    colours: dict[str, Any] = {}
    smallest = 1.0
    for result in _paired(results):
        label = _label(result)
        colour = colours.setdefault(label, f"C{len(colours) % 10}")
        fpr, tpr = np.array(result["roc"]["fpr"]), np.array(result["roc"]["tpr"])
        shown = (fpr > 0) & (tpr > 0)  # a log axis has no zero
        if not shown.any():
            continue
        smallest = min(smallest, fpr[shown].min())
        auroc = interval_text(result["metrics"]["auroc"]) if "auroc" in result["metrics"] else "n/a"
        axes.plot(
            fpr[shown],
            tpr[shown],
            color=colour,
            linestyle="-" if result["model"] == "target" else "--",
            label=f"{label}, {result['model']}: AUROC {auroc}",
        )
    smallest = min(smallest, 1e-2)  # a usable axis even when no curve reaches below it
    axes.plot([smallest, 1], [smallest, 1], color="grey", linestyle=":", label="chance")
    axes.set(xscale="log", yscale="log", xlabel="false positive rate", ylabel="true positive rate")
    axes.set_xlim(smallest, 1)
    axes.set_ylim(smallest, 1)
    # Beside the axes, not on them: with a dozen attacks a legend inside hides the curves.
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="ROC curves, log-log" src="data:image/png;base64,{data}">'


def score_summary() -> list[str]:
    return [
        '<p class="note">Scoring mode: these are membership scores from a reference attack, '
        "not verdicts. A higher score means the attack finds a recording more likely to have "
        "been in the training data, but there was no membership ground truth to calibrate or "
        "test the scores against, so no risk level and no member/non-member decision can be "
        "read from them.</p>"
    ]


def score_sections(scores: list[dict[str, Any]]) -> list[str]:
    rows = "".join(
        f"<tr><td>{_e(item['id'])}</td><td>{_e(item['speaker'])}</td>"
        f'<td class="num">{item["score"]:.4g}</td></tr>'
        for item in sorted(scores, key=lambda item: -item["score"])
    )
    return [
        "<h2>Membership scores (not verdicts)</h2>",
        f"<table><tr><th>id</th><th>speaker</th><th>membership score</th></tr>{rows}</table>",
    ]


def key_value_table(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{_e(key)}</th><td>{_e(_plain(value))}</td></tr>" for key, value in values.items()
    )
    return f"<table>{rows}</table>"


def _plain(value: Any) -> str:
    """A setup value as readable text: nested objects as ``key: value; ...``."""
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_plain(item)}" for key, item in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value)
    return str(value)


def _paired(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results in order of first appearance of each attack, its target row before its null row."""
    order = list(dict.fromkeys(_label(r) for r in results))
    return sorted(results, key=lambda r: (order.index(_label(r)), MODELS.index(r["model"])))


def _label(result: Mapping[str, Any]) -> str:
    return f"{result['name']} ({result['features']})"


def _estimate(result: Mapping[str, Any], key: str) -> Estimate:
    """A metric of a result as an :class:`Estimate`, NaN where it is null or absent."""
    return as_estimate(result["metrics"].get(key, {}))


def as_estimate(stored: Mapping[str, float | None]) -> Estimate:
    """An estimate as JSON holds it, as an :class:`Estimate`, NaN where null or absent."""
    return Estimate(
        *(math.nan if stored.get(b) is None else stored[b] for b in ("value", "low", "high"))
    )


def markdown_table(report: Mapping[str, Any], metrics: Sequence[str] = MIA_METRICS) -> str:
    """A report's results as a Markdown table, each metric with its interval (for the docs)."""
    names = {"auroc": "AUROC", "tpr_at_0.1%_fpr": "TPR @ 0.1% FPR", "tpr_at_1%_fpr": "TPR @ 1% FPR"}
    header = ["attack", "features", "model", *(names.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for result in report["results"]:
        cells = [interval_text(result["metrics"].get(m, {"value": None})) for m in metrics]
        row = [result["name"], result["features"], result["model"], *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def interval_text(estimate: Mapping[str, float | None]) -> str:
    if estimate["value"] is None:
        return "n/a"
    if estimate["low"] is None or estimate["high"] is None:
        return f"{estimate['value']:.3f}"
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def _e(text: Any) -> str:
    return html.escape(str(text))
