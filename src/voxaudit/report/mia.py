"""The membership-inference report page, ``report.html``, beside the data it shows.

What a report holds, and the verdict rules (headline on shadow data, null control with a
multiple-comparison correction, warnings when the evidence is thin), are computed in
:mod:`voxaudit.mia.results`; this module only renders them, and writes ``report.html`` next to
the ``report.json`` and ``examples.csv`` that :func:`voxaudit.mia.results.save_results` writes.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from voxaudit.files import write_atomically
from voxaudit.mia.results import EXAMPLES_CSV, MIA_METRICS, save_results
from voxaudit.mia.schema import validate_report
from voxaudit.mia.scoring import ranked, scored_unit, utility_words
from voxaudit.mia.verdicts import (
    MODELS,
    as_estimate,
    failed_null_controls,
    interval_text,
    risk_summary,
)

REPORT_HTML = "report.html"


def write_report(out_dir: str | Path, report: dict[str, Any]) -> dict[str, Path]:
    """Validate, then write ``report.json``, ``examples.csv`` and ``report.html`` atomically.

    Nothing is written when the report is not valid or not JSON data.

    Parameters
    ----------
    out_dir:
        The folder (made if needed).
    report:
        A report as :func:`voxaudit.mia.results.new_report` makes it.

    Returns the paths written, by file name.
    """
    validate_report(report)
    page = render_html(report)
    written = save_results(out_dir, report)
    written[REPORT_HTML] = write_atomically(Path(out_dir) / REPORT_HTML, page)
    return written


def write_html(out_dir: str | Path, report: dict[str, Any]) -> Path:
    """Write ``report.html`` beside the ``report.json`` and ``examples.csv`` that
    :func:`voxaudit.mia.core.run_audit` (or ``run_scoring``) already saved."""
    validate_report(report)
    return write_atomically(Path(out_dir) / REPORT_HTML, render_html(report))


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


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (figures embedded, nothing fetched).

    Parameters
    ----------
    report:
        A report; the page shows only what ``report.json`` holds.
    """
    title = "voxaudit membership-inference audit"
    parts = [
        f"<h1>{title}</h1>",
        f'<p class="meta">created {_e(report["created"])}, '
        f"voxaudit {_e(report['voxaudit_version'])}</p>",
    ]
    if report["kind"] == "verdicts":
        parts += verdict_sections(report)
    else:
        parts += score_summary(report) + warning_list(report["warnings"])
    parts += ["<h2>Setup</h2>", key_value_table(report["setup"])]
    if report["kind"] == "verdicts":
        parts += result_sections(report["results"])
    else:
        parts += score_sections(report)
    if "selection" in report:
        parts += ["<h2>Selection on shadow data</h2>", key_value_table(report["selection"])]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def verdict_sections(report: Mapping[str, Any], depth: int = 2) -> list[str]:
    """The first screen of a verdicts report: validity, the risk in words, how the headline was
    chosen, the warnings, the null control, and the headline's highest-scoring units.

    Parameters
    ----------
    report:
        A verdicts report.
    depth:
        The heading level of the highest-scoring units' table.
    """
    parts = []
    invalid = null_control_invalid(report)
    if invalid:
        parts.append(invalid)
    headline = report["headline"]
    parts.append(f'<p class="summary">{_e(risk_summary(headline))}</p>')
    parts.append(headline_words(headline))
    parts += warning_list(report["warnings"])
    if not invalid and report["null_control"]["rows"]:
        parts.append(null_control_words(report["null_control"]))
    parts += top_examples(headline, report["setup"].get("level"), depth, EXAMPLES_CSV)
    return parts


def null_control_invalid(report: Mapping[str, Any]) -> str | None:
    """The warning that the audit is not valid, or None when its null control holds.

    Parameters
    ----------
    report:
        A verdicts report.
    """
    failed = failed_null_controls(report)
    if not failed:
        return None
    names = ", ".join(f"{r['name']} ({r['features']})" for r in failed)
    return (
        '<p class="invalid">This audit is not valid: the null control of '
        f"{_e(names)} is not at chance (its AUROC differs from 0.5: "
        f"{_e(report['null_control']['method'])}, adjusted p below 0.05). An attack that "
        "separates members from non-members of a model that never saw them measures a "
        "difference between the two sets, not leakage; fix the split before reading the "
        "results below.</p>"
    )


def null_control_words(null: Mapping[str, Any]) -> str:
    """How the null control was checked, in words, for one that holds.

    Parameters
    ----------
    null:
        A report's ``null_control``.
    """
    smallest = min(row["p_adjusted"] for row in null["rows"])
    return (
        "<p>The null control (each attack against a model that never saw the evaluated data) "
        "sits at chance, as it should: no null row's AUROC differs from 0.5 "
        f"({_e(null['method'])}; smallest adjusted p {smallest:.3g}).</p>"
    )


def headline_words(headline: Mapping[str, Any]) -> str:
    """Which attack is the headline and how it was chosen, in words.

    Parameters
    ----------
    headline:
        A report's ``headline``.
    """
    text = f"<p>Headline attack: {_e(_label(headline))}, chosen by {_e(headline['chosen_by'])}"
    if headline["shadow_auroc"] is not None:
        rows = "row" if headline["n_candidates"] == 1 else "rows"
        text += (
            f", among {headline['n_candidates']} candidate {rows}; its shadow AUROC "
            f"{headline['shadow_auroc']:.3f}"
        )
    text += "."
    if headline["not_considered"]:
        text += (
            " Not considered, for want of a shadow AUROC: "
            f"{_e(', '.join(headline['not_considered']))}."
        )
    return text + "</p>"


def warning_list(warnings: Sequence[str]) -> list[str]:
    """The report's warnings as one highlighted list (nothing when there are none).

    Parameters
    ----------
    warnings:
        A report's ``warnings``.
    """
    if not warnings:
        return []
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return [f'<div class="note"><p>Read with care:</p><ul>{items}</ul></div>']


def top_examples(
    headline: Mapping[str, Any], level: str | None, depth: int, examples_file: str | None
) -> list[str]:
    """The headline attack's highest-scoring evaluated units on the target, members marked.

    Parameters
    ----------
    headline:
        A report's ``headline``.
    level:
        The setup's level: ``"speaker"`` makes the units speakers.
    depth:
        The heading level.
    examples_file:
        Where every score lies, linked (relative to the page), or None for no link.
    """
    units = "speakers" if level == "speaker" else "recordings"
    rows = "".join(
        f'<tr><td class="num">{rank}</td><td>{_e(item["id"])}</td>'
        f"<td>{_e(item['speaker'] or '')}</td>"
        f'<td class="num">{item["score"]:.4g}</td>'
        f"<td>{'member' if item['is_member'] else 'non-member'}</td></tr>"
        for rank, item in enumerate(headline["top_examples"], start=1)
    )
    link = (
        f'; every score of every attack, target and null, is in <a href="{_e(examples_file)}">'
        f"{_e(examples_file)}</a>, from which each metric here can be recomputed"
        if examples_file
        else ""
    )
    h = f"h{depth}"
    return [
        f"<{h}>Highest-scoring {units}</{h}>",
        f'<p class="meta">The headline attack on the target model{link}.</p>',
        "<table><tr><th>rank</th><th>id</th><th>speaker</th><th>membership score</th>"
        f"<th>truth</th></tr>{rows}</table>",
    ]


def result_sections(
    results: list[dict[str, Any]],
    depth: int = 2,
    top_features: int | None = None,
    roc_attacks: int | None = None,
) -> list[str]:
    """Results table, log-log ROC curves and feature importances.

    Parameters
    ----------
    results:
        A verdicts report's rows.
    depth:
        The heading level.
    top_features:
        Show only this many of each row's largest feature importances.
    roc_attacks:
        Draw the ROC curves of only this many attacks, those with the highest target AUROC
        (a choice of what to draw, not a verdict: the headline is the report's).
    """
    h, sub = f"h{depth}", f"h{depth + 1}"
    parts = [f"<{h}>Results</{h}>", _results_table(results)]
    shown = _highest_target_aurocs(results, roc_attacks)
    which = "" if roc_attacks is None else f" (the {roc_attacks} highest target AUROCs)"
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


def _highest_target_aurocs(results: list[dict[str, Any]], n: int | None) -> list[dict[str, Any]]:
    """The results (target and null) of the ``n`` attacks with the highest target AUROC."""
    if n is None:
        return results
    ranked = sorted(
        (r for r in results if r["model"] == "target"),
        key=lambda r: -np.nan_to_num(as_estimate(r["metrics"]["auroc"]).value, nan=-1.0),
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
        "non-members to resolve. Accuracy, precision, recall and advantage (TPR − FPR) are "
        "those of the attack's own decisions, its threshold fixed on shadow data, so advantage "
        "sits near 0, of either sign, for an attack with no signal.</p>"
        + (f"<ul>{''.join(notes)}</ul>" if notes else "")
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


def score_summary(report: Mapping[str, Any]) -> list[str]:
    """Why a scoring-mode report shows scores and no verdict, and how well the target and the
    shadows handle the scored recordings at all.

    Parameters
    ----------
    report:
        A scores report.
    """
    return [
        '<p class="note">Scoring mode: these are membership scores from a reference attack, '
        "not verdicts. A higher score means the attack finds a recording more likely to have "
        "been in the training data, but there was no membership ground truth to calibrate or "
        "test the scores against, so no risk level and no member/non-member decision can be "
        "read from them. A percentile says how member-like a row looks next to the shadow "
        "models' non-members, not that it was a member.</p>",
        f'<p class="summary">{_e(utility_words(report["setup"]))}</p>',
    ]


def score_sections(report: Mapping[str, Any]) -> list[str]:
    """A scoring-mode report's scores, most member-like (highest log-odds) first.

    Parameters
    ----------
    report:
        A scores report.
    """
    rows = "".join(
        f"<tr><td>{_e(item['id'])}</td><td>{_e(item['speaker'])}</td>"
        f'<td class="num">{_number(item, "log_odds", ".4f")}</td>'
        f'<td class="num">{_number(item, "percentile", ".1f")}</td>'
        f'<td class="num">{item["score"]:.4g}</td></tr>'
        for item in ranked(report["scores"])
    )
    return [
        "<h2>Membership scores (not verdicts)</h2>",
        f'<p class="meta">{len(report["scores"])} {scored_unit(report["setup"])}, by the '
        "reference attack's log-odds; percentile: the share of the shadows' non-member rows "
        "(scored out of fold) below the row's log-odds.</p>",
        "<table><tr><th>id</th><th>speaker</th><th>log-odds</th><th>percentile</th>"
        f"<th>membership score</th></tr>{rows}</table>",
    ]


def _number(item: Mapping[str, Any], key: str, spec: str) -> str:
    """``item[key]`` formatted, or a dash where a report written before it was recorded has
    none."""
    return format(item[key], spec) if key in item else "-"


def key_value_table(values: Mapping[str, Any]) -> str:
    """A two-column table of ``values``, nested values as readable text.

    Parameters
    ----------
    values:
        Names and values.
    """
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


def markdown_table(report: Mapping[str, Any], metrics: Sequence[str] = MIA_METRICS) -> str:
    """A report's results as a Markdown table, each metric with its interval (for the docs).

    Parameters
    ----------
    report:
        A verdicts report.
    metrics:
        The metric columns.
    """
    names = {"auroc": "AUROC", "tpr_at_0.1%_fpr": "TPR @ 0.1% FPR", "tpr_at_1%_fpr": "TPR @ 1% FPR"}
    header = ["attack", "features", "model", *(names.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for result in report["results"]:
        cells = [interval_text(result["metrics"].get(m, {"value": None})) for m in metrics]
        row = [result["name"], result["features"], result["model"], *cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _e(text: Any) -> str:
    return html.escape(str(text))
