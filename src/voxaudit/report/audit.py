"""The one report of ``voxaudit audit``: ``report.json`` and a self-contained ``report.html``.

The HTML opens with what a product owner needs (the risk per level in words, whether the audit
is valid, what the model's accuracy is), then gives the specialist every attack with its
intervals, the log-log ROC curves, feature importances, the null control, the defense sweep, the
guard evaluation and the run's metadata. Each level's own membership report
(``voxaudit.mia-report/2``) is embedded in the JSON without its per-example scores, which are in
that level's ``examples.csv``.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from voxaudit import __version__
from voxaudit.errors import VoxauditError
from voxaudit.files import write_atomically
from voxaudit.mia.results import EXAMPLES_CSV, without_examples
from voxaudit.mia.scoring import utility_words
from voxaudit.mia.verdicts import (
    as_estimate,
    failed_null_controls,
    interval_text,
    risk_level,
    risk_summary,
)
from voxaudit.report.mia import (
    STYLE,
    headline_words,
    key_value_table,
    null_control_invalid,
    null_control_words,
    result_sections,
    score_sections,
    score_summary,
    top_examples,
    warning_list,
)

SCHEMA = "voxaudit.audit-report/1"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
QUESTIONS = {
    "sample": "Was this recording used to train the model?",
    "speaker": "Was this person's voice used to train the model?",
}
MEMBERS = {"sample": "training recordings", "speaker": "training speakers"}
THREAT_WORDS = {
    "black": "sees only the model's answers (labels or transcripts)",
    "grey": "sees the model's scores (probabilities or losses)",
    "white": "has the model's weights",
}
RISK_WORDS = {
    "high": "High risk",
    "moderate": "Moderate risk",
    "low": "Low but measurable risk",
    "none": "No measurable leakage",
    "unknown": "Cannot be judged",
    "scores only": "Scores only, no verdict",
}
RISK_COLOURS = {
    "high": "#b00020",
    "moderate": "#d97a00",
    "low": "#8a8a00",
    "none": "#2e7d32",
    "unknown": "#666",
    "scores only": "#666",
}
TPR_KEY = "tpr_at_1%_fpr"

_STYLE = (
    STYLE
    + """
.cards { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0 2rem; }
.card { flex: 1 1 24rem; border: 1px solid #ccc; border-radius: 0.5rem; padding: 1rem 1.25rem; }
.card h3 { margin: 0 0 0.5rem; font-size: 1.05rem; }
.risk { display: inline-block; color: #fff; font-weight: bold; padding: 0.2rem 0.6rem;
        border-radius: 0.3rem; text-transform: uppercase; letter-spacing: 0.04em; }
.big { font-size: 1.6rem; font-weight: bold; }
nav a { margin-right: 1rem; }
section { margin-top: 2.5rem; }
.wide { overflow-x: auto; }
"""
)


# --- building -------------------------------------------------------------------------------


def build_report(
    config: Mapping[str, Any],
    corpus: Mapping[str, Any],
    levels: Sequence[Mapping[str, Any]],
    sweep: Mapping[str, Any] | None,
    run: Mapping[str, Any],
    guard: Mapping[str, Any] | None = None,
    dp_audit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's data: a summary per level, then everything it rests on."""
    if not levels:
        raise VoxauditError("audit report: no level was audited")
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voxaudit_version": __version__,
        "summary": [level_summary(level, config.get("threat", "grey")) for level in levels],
        "config": dict(config),
        "corpus": {k: v for k, v in corpus.items() if k != "problems"}
        | {"problems": len(corpus.get("problems", []))},
        # The per-example scores stay in each level's examples.csv, not in the audit's JSON.
        "levels": [dict(level) | {"mia": without_examples(level["mia"])} for level in levels],
        "defenses": None if sweep is None else dict(sweep),
        "guard": None if guard is None else dict(guard),
        "dp_audit": None if dp_audit is None else dict(dp_audit),
        "run": dict(run),
    }


def level_summary(level: Mapping[str, Any], threat: str) -> dict[str, Any]:
    """One level's headline: risk, the headline attack (how it was chosen), its AUROC and TPR
    at 1% FPR, validity under the null control, and the warnings.

    Parameters
    ----------
    level:
        One audited level, its membership report under ``mia``.
    threat:
        The threat model: black, grey or white.
    """
    report = level["mia"]
    base = {"level": level["level"], "question": QUESTIONS[level["level"]], "threat": threat}
    if report["kind"] == "scores":
        return base | {
            "risk": "scores only",
            "sentence": "The target has no membership ground truth (an adapter), so the audit "
            "ranks recordings by membership score and gives no verdict. "
            + utility_words(report["setup"]),
            "valid": True,
            "warnings": report["warnings"],
        }
    best = report["headline"]
    failed = failed_null_controls(report)
    return base | {
        "risk": risk_level(best),
        "sentence": risk_summary(best),
        "attack": f"{best['name']} ({best['features']})",
        "chosen_by": best["chosen_by"],
        "auroc": best["metrics"]["auroc"],
        TPR_KEY: best["metrics"].get(TPR_KEY),
        "valid": report["null_control"]["valid"],
        "null_control": report["null_control"]["method"],
        "failed_null_controls": [f"{r['name']} ({r['features']})" for r in failed],
        "warnings": report["warnings"],
        "utility": level.get("utility"),
    }


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` atomically; their paths."""
    try:
        text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise VoxauditError(f"audit report: not JSON data ({exc})") from exc
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out_dir / REPORT_JSON, out_dir / REPORT_HTML
    write_atomically(json_path, text)
    write_atomically(html_path, render_html(json.loads(text)))  # as a reader of the JSON sees it
    return json_path, html_path


# --- HTML -----------------------------------------------------------------------------------


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (figures embedded)."""
    target = report["config"]["target"]
    title = f"Privacy audit: {target['family']} model"
    links = [("at-a-glance", "At a glance")]
    links += [(f"level-{lv['level']}", f"{lv['level'].title()} level") for lv in report["levels"]]
    if report["defenses"]:
        links.append(("defenses", "Defenses"))
    if report.get("dp_audit"):  # reports made before the stage existed have no such key
        links.append(("dp-audit", "DP audit"))
    if report.get("guard"):  # reports made before the guard stage have no such key
        links.append(("guard", "Guard"))
    links.append(("run", "Run"))
    nav = " ".join(f'<a href="#{anchor}">{_e(text)}</a>' for anchor, text in links)
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">voxaudit {_e(report["voxaudit_version"])}, created '
        f"{_e(report['created'])}; corpus {_e(report['corpus'].get('name'))} "
        f"({report['corpus'].get('utterances')} utterances, "
        f"{report['corpus'].get('speakers')} speakers)</p>",
        f"<nav>{nav}</nav>",
        '<section id="at-a-glance"><h2>At a glance</h2>',
        _cards(report["summary"]),
        _dp_lead(report.get("dp_audit")),
        _reading_guide(report["summary"]),
        "</section>",
    ]
    for level in report["levels"]:
        parts += _level_section(level)
    if report["defenses"]:
        parts += _defense_section(report["defenses"])
    if report.get("dp_audit"):
        parts += _dp_section(report["dp_audit"])
    if report.get("guard"):
        parts += _guard_section(report["guard"])
    parts += [
        '<section id="run"><h2>Run</h2>',
        key_value_table(_run_rows(report)),
        "</section>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )


def _cards(summary: Sequence[Mapping[str, Any]]) -> str:
    cards = []
    for item in summary:
        risk = item["risk"]
        body = [
            f"<h3>{_e(item['question'])}</h3>",
            f'<p><span class="risk" style="background:{RISK_COLOURS[risk]}">'
            f"{_e(RISK_WORDS[risk])}</span></p>",
        ]
        if "auroc" in item:
            body.append(_in_words(item))
            if not item["valid"]:
                body.append(
                    '<p class="invalid">Not valid: the null control of '
                    f"{_e(', '.join(item['failed_null_controls']))} is not at chance (adjusted "
                    f"p below 0.05; {_e(item['null_control'])}), so these figures measure a "
                    "difference between the member and non-member sets, not leakage. Check the "
                    "split before acting on them.</p>"
                )
            if item.get("utility"):
                body.append(_utility_words(item["utility"]))
        body += warning_list(item.get("warnings", []))
        body.append(f'<p class="meta">{_e(item["sentence"])}</p>')
        cards.append(f'<div class="card">{"".join(body)}</div>')
    return f'<div class="cards">{"".join(cards)}</div>'


def _in_words(item: Mapping[str, Any]) -> str:
    """The headline in plain words: what share of members an attacker finds at 1% false alarms."""
    members = MEMBERS[item["level"]]
    tpr = item.get(TPR_KEY) or {}
    auroc = interval_text(item["auroc"])
    who = f"An attacker who {THREAT_WORDS[item['threat']]}"
    if tpr.get("value") is None:
        found = f"{who} separates members from non-members with AUROC {auroc}."
    else:
        found = (
            f'<span class="big">{tpr["value"]:.0%}</span> of the {members} identified at 1% false '
            f"alarms (95% CI {_pct(tpr.get('low'))} to {_pct(tpr.get('high'))}). {who} "
            f"reaches AUROC {auroc}, where 0.5 is guessing."
        )
    return (
        f"<p>{found}</p><p>Headline attack: {_e(item['attack'])}, chosen by "
        f"{_e(item['chosen_by'])}.</p>"
    )


def _utility_words(utility: Mapping[str, Any]) -> str:
    metric, members, holdout = utility["metric"], utility["members"], utility["holdout"]
    gap = abs(members - holdout)
    shown = {"cer": "character error rate", "eer": "equal error rate"}.get(metric, metric)
    return (
        f"<p>Model {_e(shown)}: {members:.1%} on its training data, {holdout:.1%} on unseen data "
        f"(a gap of {gap * 100:.1f} points; the gap is what membership attacks feed on).</p>"
    )


def _reading_guide(summary: Sequence[Mapping[str, Any]]) -> str:
    valid = all(item["valid"] for item in summary)
    check = (
        "Every null control (the same attacks against a model that never saw the evaluated "
        "data) sits at chance, each null row tested against AUROC 0.5 with a Holm–Bonferroni "
        "correction over its level's null rows, so the figures above measure leakage."
        if valid
        else "At least one null control is not at chance; see the warning above."
    )
    return (
        f"<p>{check} Each figure carries a bootstrap 95% interval. AUROC 0.5 means the attacker "
        "does no better than a coin; the share found at 1% false alarms is what matters for "
        "individuals, because an attacker who is rarely wrong can act on a verdict.</p>"
    )


def _level_section(level: Mapping[str, Any]) -> list[str]:
    report = level["mia"]
    name = level["level"]
    parts = [f'<section id="level-{_e(name)}"><h2>{_e(name.title())} level: details</h2>']
    files = {"this level's report": level["report_dir"]}
    if report["kind"] == "verdicts":
        parts.append(headline_words(report["headline"]))
        invalid = null_control_invalid(report)
        if invalid or report["null_control"]["rows"]:
            parts.append(invalid or null_control_words(report["null_control"]))
        parts += top_examples(report["headline"], report["setup"].get("level"), 3, None)
        parts.append('<div class="wide">')
        parts += result_sections(report["results"], depth=3, top_features=15, roc_attacks=6)
        parts.append("</div>")
        files["per-example scores"] = str(Path(level["report_dir"]) / EXAMPLES_CSV)
    else:
        parts += score_summary(report) + score_sections(report)
    parts += ["<h3>Setup</h3>", key_value_table(report["setup"])]
    if "selection" in report:
        parts += ["<h3>Selection on shadow data</h3>", key_value_table(report["selection"])]
    files |= {"split": level["split"]} | {
        f"model: {role}": path for role, path in level["models"].items()
    }
    parts += ["<h3>Files</h3>", key_value_table(files), "</section>"]
    return parts


def _defense_section(sweep: Mapping[str, Any]) -> list[str]:
    metric = sweep["utility_metric"]
    header = (
        f"<tr><th>setting</th><th>{_e(metric)}</th><th>headline attack</th>"
        "<th>AUROC</th><th>TPR at 1% FPR</th><th>null AUROC</th><th>Pareto</th></tr>"
    )
    rows = []
    for result in sweep["settings"]:
        leak = result["leakage"]
        tpr = leak.get(TPR_KEY)
        rows.append(
            f"<tr><td>{_e(result['setting'])}</td>"
            f'<td class="num">{result["utility"]["value"]:.4f}</td>'
            f"<td>{_e(leak['attack'])} ({_e(leak['features'])})</td>"
            f'<td class="num">{interval_text(leak["auroc"])}</td>'
            f'<td class="num">{interval_text(tpr) if tpr else "n/a"}</td>'
            f'<td class="num">{interval_text(leak["null_auroc"])}</td>'
            f"<td>{'yes' if result.get('pareto') else ''}</td></tr>"
        )
    parts = [
        '<section id="defenses"><h2>Defenses: privacy against utility</h2>',
        "<p>Each setting retrains the target and the attacker's shadow models under the "
        "defense (an adaptive attacker), and reports its headline attack.</p>",
        f"<table>{header}{''.join(rows)}</table>",
    ]
    plot = Path(sweep.get("plot", ""))
    if plot.is_file():
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        parts.append(f'<img alt="privacy-utility plot" src="data:image/png;base64,{data}">')
    return [*parts, "</section>"]


def _dp_lead(dp: Mapping[str, Any] | None) -> str:
    """The one-run DP audit's sentence, on the first screen."""
    if not dp:
        return ""
    return f'<p class="dp"><b>Privacy in epsilon terms.</b> {_e(dp["statement"])}</p>'


def _dp_section(dp: Mapping[str, Any]) -> list[str]:
    rows = "".join(
        f"<tr><td>{row['guesses']}</td><td>{row['correct']}</td><td>{row['epsilon']:.3f}</td></tr>"
        for row in dp["sweep"]
    )
    claimed = dp.get("accountant_epsilon")
    facts = {
        "canaries (kind)": f"{dp['canaries']} ({dp['kind']}), {dp['included']} in training",
        "score": dp["score"],
        "epsilon lower bound": f"{dp['epsilon_hat']:.3f} at delta {dp['delta']:g}, "
        f"{dp['confidence']:.0%} confidence ({dp['correct']} of {dp['guesses']} guesses right)",
        "DP-SGD accountant epsilon": "no DP-SGD" if claimed is None else f"{claimed:.3f}",
        "model trained with the canaries": dp["model"],
        "per-canary scores": str(Path(dp["model"]).parent / "result.json"),
    }
    return [
        '<section id="dp-audit"><h2>DP audit: epsilon from one training run</h2>',
        f"<p>{_e(dp['statement'])}</p>",
        "<p>The target's recipe was trained once more with canaries, each put in with "
        "probability 1/2 (Steinke, Nasr &amp; Jagielski 2023). The auditor guesses in for the "
        "highest-scored canaries and out for the lowest, abstaining on the rest; each number of "
        "guesses below is tested at a Bonferroni-corrected level, so the best holds at the "
        "stated confidence. The bound is about the recipe: the audited target trained without "
        "canaries.</p>",
        key_value_table(facts),
        f"<table><tr><th>guesses</th><th>correct</th><th>epsilon bound</th></tr>{rows}</table>",
        "</section>",
    ]


def _guard_section(guard: Mapping[str, Any]) -> list[str]:
    as_is = [g for g in guard["aggregate"] if g["setting"] == "as is"]
    streams = guard["benign"]
    header = (
        "<tr><th>detector</th><th>mean DSR</th><th>median queries to the first detection</th>"
        "<th>attacks detected</th>"
        + "".join(f"<th>false positives per benign query ({_e(s)})</th>" for s in streams)
        + "</tr>"
    )
    rows = [
        f"<tr><td>{_e(g['detector'])}</td>{_detection_cells(g)}"
        + "".join(_fpr_cell(streams[s][g["detector"]]) for s in streams)
        + "</tr>"
        for g in as_is
    ]
    evasion = [
        f"<tr><td>{_e(g['setting'])}</td><td>{_e(g['detector'])}</td>{_detection_cells(g)}</tr>"
        for g in guard["aggregate"]
        if g["setting"] != "as is"
    ]
    parts = [
        '<section id="guard"><h2>Guard: catching adversarial attacks</h2>',
        _guard_lead(guard, as_is),
        "<p>The memory detector (paper 003) compares each query with the same account's last "
        f"k = {guard['k']} queries; the index (global) looks it up among every account's recent "
        "queries; the robust variants add noise before fingerprinting. Each detector was "
        f"calibrated on benign traffic for {guard['fpr_target']:.1%} false positives. DSR "
        "(paper 003) is the share of an attack's queries a detection covers. 95% intervals: "
        "Wilson for shares, bootstrap over the attack runs for the mean and the median.</p>",
        "<h3>Without evasion</h3>",
        f"<table>{header}{''.join(rows)}</table>",
        "<h3>Under evasion</h3>",
        "<p>The same attacks replayed with noise on every query, fake benign queries mixed in "
        "at a share p_fake, or spread over several accounts.</p>",
        '<div class="wide"><table><tr><th>setting</th><th>detector</th><th>mean DSR</th>'
        "<th>median queries to the first detection</th><th>attacks detected</th></tr>"
        f"{''.join(evasion)}</table></div>",
        "<h3>The attacks</h3>",
        _attack_table(guard["attacks"]),
    ]
    if guard["gateway"]:
        parts += ["<h3>Through the HTTP gateway</h3>", _gateway_table(guard["gateway"])]
    setup = {
        "model": guard.get("model"),
        "target command": guard["target"],
        "thresholds": {name: round(value, 4) for name, value in guard["thresholds"].items()},
        "seconds": guard["seconds"],
    }
    return [*parts, "<h3>Setup</h3>", key_value_table(setup), "</section>"]


def _guard_lead(guard: Mapping[str, Any], as_is: Sequence[Mapping[str, Any]]) -> str:
    """The answer in words: is an attack caught, by which detector, after how many queries."""
    # The detector that caught the most attack runs, and the soonest.
    best = max(as_is, key=lambda g: (g["detected"]["value"], -_median_queries(g)))
    runs = best["runs"]
    caught = round(best["detected"]["value"] * runs)
    queries = [q for attack in guard["attacks"] for q in attack["queries"]]
    question = (
        "Can an attacker who crafts an adversarial example against this model (audio it "
        f"transcribes as &ldquo;{_e(guard['target'])}&rdquo;) be caught? The attack sends the "
        "model many near-copies of one clip, which the guard (<code>voxaudit guard</code>) "
        f"recognizes from their audio fingerprints. Of {runs} attack runs, each sending "
        f"{_span(queries, 'd')} queries, "
    )
    if caught == 0:
        return f"<p>{question}no detector caught any.</p>"
    fpr = next(iter(guard["benign"].values()))[best["detector"]]["fpr_per_query"]
    median = as_estimate(best["median_queries_to_detection"])
    return (
        f'<p>{question}the {_e(best["detector"])} detector caught <span class="big">{caught} '
        f"of {runs}</span>, after a median of {median.format('g')} queries, while flagging "
        f"{as_estimate(fpr).format('.2%')} of benign queries.</p>"
    )


def _median_queries(aggregate: Mapping[str, Any]) -> float:
    """The median queries to the first detection; infinite when no run was detected."""
    median = as_estimate(aggregate["median_queries_to_detection"]).value
    return math.inf if math.isnan(median) else median


def _detection_cells(aggregate: Mapping[str, Any]) -> str:
    """Mean DSR, median queries to the first detection and attacks detected, as table cells."""
    runs = aggregate["runs"]
    detected = as_estimate(aggregate["detected"])
    cells = (
        as_estimate(aggregate["mean_dsr"]).format(".0%"),
        as_estimate(aggregate["median_queries_to_detection"]).format("g"),
        f"{round(detected.value * runs)}/{runs} ({detected.format('.0%')})",
    )
    return "".join(f'<td class="num">{_e(cell)}</td>' for cell in cells)


def _fpr_cell(benign: Mapping[str, Any]) -> str:
    shown = as_estimate(benign["fpr_per_query"]).format(".2%")
    return f'<td class="num">{benign["flagged_queries"]}/{benign["queries"]} ({_e(shown)})</td>'


def _attack_table(attacks: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for attack in attacks:
        success = as_estimate(attack["success"])
        succeeded = round(success.value * attack["runs"])
        rows.append(
            f"<tr><td>{_e(attack['attack'])}</td>"
            f'<td class="num">{_span(attack["queries"], "d")}</td>'
            f'<td class="num">{succeeded}/{attack["runs"]} ({_e(success.format(".0%"))})</td>'
            f'<td class="num">{_e(_span(attack["snr_db"], ".1f"))}</td></tr>'
        )
    header = (
        "<tr><th>attack</th><th>queries sent</th><th>succeeded (transcribed as the target)</th>"
        "<th>SNR of the result, dB</th></tr>"
    )
    return f"<table>{header}{''.join(rows)}</table>"


def _gateway_table(gateway: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        f"<tr><td>{_e(g['attack'])}</td><td>{_e(g['detector'])}</td>"
        f'<td class="num">{g["queries_to_detection"] or "-"} (of {g["queries_sent"]} sent)</td>'
        f"<td>{_e(g['refusal'] or '-')}</td></tr>"
        for g in gateway
    ]
    header = (
        "<tr><th>attack</th><th>detector</th><th>queries to the first refusal (403)</th>"
        "<th>refusal</th></tr>"
    )
    return f"<table>{header}{''.join(rows)}</table>"


def _span(values: Sequence[float | None], spec: str) -> str:
    """``low to high`` of the defined values (null: an unperturbed carrier's infinite SNR)."""
    defined = [v for v in values if v is not None]
    if not defined:
        return "-"
    low, high = min(defined), max(defined)
    return f"{low:{spec}}" if low == high else f"{low:{spec}} to {high:{spec}}"


def _run_rows(report: Mapping[str, Any]) -> dict[str, Any]:
    run = report["run"]
    return {
        "command": run.get("command"),
        "voxaudit": run.get("voxaudit"),
        "python": run.get("python"),
        "packages": run.get("packages"),
        "platform": run.get("platform"),
        "cpu": f"{run.get('cpu')} ({run.get('cpu_count')} cores)",
        "gpu": run.get("gpu") or "none",
        "seed": run.get("seed"),
        "seconds per stage": run.get("seconds"),
        "config": report["config"],
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _e(text: Any) -> str:
    return html.escape(str(text))
