"""Rich tables for corpora, problems and splits, shared by the CLI and the demo."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from voxaudit.data.corpus import CorpusSummary, Problem
from voxaudit.data.splits import AuditSplit
from voxaudit.mia.results import MIA_METRICS
from voxaudit.mia.scoring import ranked, scored_unit, utility_words
from voxaudit.mia.verdicts import failed_null_controls


def corpus_table(summary: CorpusSummary) -> Table:
    errors = sum(p.severity == "error" for p in summary.problems)
    # Suspicious files and remarks about the whole corpus alike: both are listed below the table.
    warnings = len(summary.problems) - errors + len(summary.warnings)
    rates = ", ".join(f"{rate} Hz x {n}" for rate, n in sorted(summary.sample_rates.items()))
    table = Table(title=f"Corpus {summary.name!r} ({summary.layout} layout)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("usable utterances", str(summary.utterances))
    table.add_row("speakers", str(summary.speakers))
    table.add_row("hours", f"{summary.hours:.2f}")
    table.add_row("mean duration", f"{summary.mean_duration:.2f} s")
    table.add_row(
        "utterances per speaker",
        f"min {summary.per_speaker_min}, median {summary.per_speaker_median:g}, "
        f"max {summary.per_speaker_max}",
    )
    table.add_row("with transcript", str(summary.with_transcript))
    table.add_row("sample rates", rates or "-")
    table.add_row("left out (errors)", str(errors))
    table.add_row("warnings", str(warnings))
    return table


def problems_table(
    problems: Sequence[Problem], limit: int = 30, root: str | Path | None = None
) -> Table:
    """The problems found in a corpus; paths under ``root`` are shown relative to it."""
    table = Table(title=f"Problems found ({len(problems)})" + (f" under {root}" if root else ""))
    table.add_column("severity")
    table.add_column("where", overflow="fold")
    table.add_column("reason", overflow="fold")
    for p in problems[:limit]:
        style = "red" if p.severity == "error" else "yellow"
        table.add_row(f"[{style}]{p.severity}[/]", _relative(p.where, root), p.reason)
    if len(problems) > limit:
        common = Counter(p.reason.split(" (")[0] for p in problems).most_common(3)
        table.caption = f"{len(problems) - limit} more; most common: " + "; ".join(
            f"{reason} x{n}" for reason, n in common
        )
    return table


def _relative(where: str, root: str | Path | None) -> str:
    # `where` may carry a line number ("manifest.csv:12"); only a leading path is shortened.
    if root is None:
        return where
    prefix = str(Path(root).resolve()) + os.sep
    return where[len(prefix) :] if where.startswith(prefix) else where


def split_table(split: AuditSplit) -> Table:
    summary = split.summary()
    table = Table(title=f"{split.level}-level audit split (seed {split.seed})", min_width=72)
    table.add_column("pool")
    table.add_column("utterances", justify="right")
    for pool, count in summary["utterances"].items():
        table.add_row(pool, str(count))
    for speaker_set, count in summary["speakers"].items():
        table.add_row(f"[dim]speakers: {speaker_set}[/]", f"[dim]{count}[/]")
    sizes = [m["train"] for m in summary["shadow_models"]]
    table.caption = (
        f"{split.n_shadow} shadow model(s), {summary['shadow_mode']} mode, "
        f"{min(sizes)}-{max(sizes)} training utterances each; "
        f"corpus fingerprint {split.corpus_fingerprint[:12]}"
    )
    return table


def mia_table(report: dict[str, Any], metrics: Sequence[str] = MIA_METRICS) -> Table:
    """A membership audit's results, each target row followed by its null-control row; the
    caption gives the verdict's footing: the headline and how it was chosen, the null control
    and any warning."""
    setup = report["setup"]
    table = Table(title=f"Membership inference: {setup['level']} level, {setup['threat']} box")
    for name in ("attack", "features", "model", *metrics):
        table.add_column(name, justify="right" if name in metrics else "left")
    for result in report["results"]:
        cells = []
        for name in metrics:
            metric = result["metrics"].get(name)
            cells.append("-" if metric is None else _interval(metric))
        style = "dim" if result["model"] == "null" else None
        table.add_row(result["name"], result["features"], result["model"], *cells, style=style)
    headline = report["headline"]
    lines = [
        escape(
            f"headline: {headline['name']} ({headline['features']}), AUROC "
            f"{_interval(headline['metrics']['auroc'])}, chosen by {headline['chosen_by']}"
        ),
        _null_line(report),
        *(f"[yellow]warning:[/] {escape(w)}" for w in report["warnings"]),
    ]
    table.caption = "\n".join(line for line in lines if line)
    table.caption_justify = "left"
    return table


def _null_line(report: dict[str, Any]) -> str:
    """The null control's verdict in one line (empty when no null control was run: the report
    warns of that)."""
    null = report["null_control"]
    if not null["rows"]:
        return ""
    failed = failed_null_controls(report)
    if failed:
        names = escape(", ".join(f"{r['name']} ({r['features']})" for r in failed))
        return (
            f"[red]NOT VALID: the null control of {names} is not at chance[/] "
            f"({escape(null['method'])})"
        )
    return escape(f"null control at chance ({null['method']})")


def scores_table(report: dict[str, Any], limit: int = 20) -> Group:
    """A scoring-mode report's first screen: the target's and the shadows' utility on the
    scored recordings, the warnings, then the most member-like rows by log-odds (with their
    percentile among the shadows' non-members), labelled as scores, not verdicts.

    Parameters
    ----------
    report : a report of kind ``scores``.
    limit : the most rows listed; the caption says when there are more.
    """
    setup = report["setup"]
    reference = setup["reference_attack"]
    # Wide enough that the title, which says these are no verdicts, never wraps.
    table = Table(title="Membership scores (no ground truth: scores, not verdicts)", min_width=72)
    for name in ("id", "speaker", "log-odds", "percentile", "score"):
        table.add_column(name, justify="left" if name in ("id", "speaker") else "right")
    ranked_rows = ranked(report["scores"])
    for item in ranked_rows[:limit]:
        table.add_row(
            escape(item["id"]),
            escape(item["speaker"]),
            f"{item['log_odds']:.4f}" if "log_odds" in item else "-",
            f"{item['percentile']:.1f}" if "percentile" in item else "-",
            f"{item['score']:.3g}",
        )
    unit = scored_unit(setup)
    shown = (
        f"top {limit} of {len(ranked_rows)} {unit}"
        if len(ranked_rows) > limit
        else f"{len(ranked_rows)} {unit}"
    )
    table.caption = escape(
        f"{shown}, most member-like first; percentile: share of the shadows' non-members "
        f"(out of fold) below the row's log-odds, not a probability of membership; reference "
        f"attack {reference['classifier']} on {', '.join(reference['features'])} features, "
        f"shadow cross-validated AUROC {reference['shadow_cv_auroc']:.3f}"
    )
    table.caption_justify = "left"
    lines = [escape(utility_words(setup))]
    lines += [f"[yellow]warning:[/] {escape(w)}" for w in report["warnings"]]
    return Group(*(Text.from_markup(line) for line in lines), table)


def sweep_table(summary: dict[str, Any]) -> Table:
    """A defense sweep: each setting's utility and headline attack, Pareto points starred."""
    table = Table(title=f"Defense sweep: {summary['family']}, {summary['threat']} box")
    for name in ("setting", summary["utility_metric"], "headline attack", "AUROC", "null AUROC"):
        table.add_column(name)
    for result in summary["settings"]:
        leak = result["leakage"]
        table.add_row(
            ("* " if result["pareto"] else "  ") + result["setting"],
            f"{result['utility']['value']:.3f}",
            f"{leak['attack']} ({leak['features']})",
            _interval(leak["auroc"]),
            _interval(leak["null_auroc"]),
        )
    table.caption = "* on the Pareto frontier (no setting both more useful and less leaky)"
    return table


def _interval(metric: dict[str, float]) -> str:
    # NaN (e.g. TPR at an FPR too low for the number of non-members) is null in the JSON.
    if any(metric[k] is None or math.isnan(metric[k]) for k in ("value", "low", "high")):
        return "n/a"
    return f"{metric['value']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def audit_table(report: dict[str, Any]) -> Table:
    """An audit's first screen: the risk per level and its headline attack; the caption says
    how each headline was chosen, how the null control was checked, and every warning."""
    table = Table(title="Privacy audit")
    for name in ("question", "risk", "headline attack", "AUROC", "TPR at 1% FPR", "valid"):
        table.add_column(name)
    colours = {"high": "red", "moderate": "yellow", "low": "yellow", "none": "green"}
    lines = []
    for item in report["summary"]:
        risk = item["risk"]
        tpr = item.get("tpr_at_1%_fpr")
        table.add_row(
            item["question"],
            f"[{colours.get(risk, 'white')}]{risk}[/]",
            item.get("attack", "-"),
            _interval(item["auroc"]) if "auroc" in item else "-",
            _interval(tpr) if tpr else "-",
            "yes" if item["valid"] else "[red]NO: null control not at chance[/]",
        )
        level = item["level"]
        if "chosen_by" in item:
            lines.append(escape(f"{level}: headline chosen by {item['chosen_by']}"))
        if item.get("null_control"):
            lines.append(escape(f"{level}: null control checked by {item['null_control']}"))
        lines += [f"{level}: [yellow]warning:[/] {escape(w)}" for w in item.get("warnings", [])]
    if report.get("dp_audit"):
        lines.append(f"[bold]DP audit:[/] {escape(report['dp_audit']['statement'])}")
    table.caption = "\n".join(lines) or None
    table.caption_justify = "left"
    return table
