import base64
import copy
import json
import os
import re

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.metrics import roc_curve
from voxaudit.report import mia
from voxaudit.report.mia import (
    REPORT_HTML,
    REPORT_JSON,
    SCHEMA,
    downsample_roc,
    markdown_table,
    new_report,
    read_report,
    result_entry,
    risk_summary,
    validate_report,
    write_report,
)

SETUP = {
    "model family": "ctc",
    "target": "runs/target",
    "shadows": 4,
    "level": "sample",
    "threat": "grey",
    "counts": {"members": 300, "nonmembers": 300},
}


def scored(shift: float, seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1, n), rng.normal(0, 1, n)])
    return scores, np.repeat([True, False], n)


def entry(model: str, shift: float, seed: int, name: str = "shadow attack", **kwargs) -> dict:
    scores, is_member = scored(shift, seed)
    return result_entry(
        name, "loss+noise", model, scores, is_member, scores > 0.3, n_bootstrap=100, **kwargs
    )


@pytest.fixture(scope="module")
def verdicts() -> dict:
    results = [
        entry("target", 0.8, 1, feature_importances={"loss": 0.7, "noise_wer_10db": 0.3}),
        entry("null", 0.0, 2),
        entry("target", 0.3, 3, name="LiRA <online>", notes="64 shadow models & more"),
        entry("null", 0.0, 11, name="LiRA <online>"),
    ]
    return new_report(SETUP, results=results, selection={"features": "loss+noise", "cv_auroc": 0.7})


def scores_report() -> dict:
    scores = [
        {"id": "utt-1", "speaker": "alice", "score": 0.25},
        {"id": "utt-2 <b>", "speaker": "bob", "score": 1.5},
    ]
    return new_report({"target": "api", "mode": "scoring"}, scores=scores)


def test_result_entry_holds_metrics_and_roc():
    result = entry("target", 0.8, 1)
    assert (result["n_members"], result["n_nonmembers"]) == (300, 300)
    assert set(result["metrics"]) == {
        "auroc",
        "advantage",
        "tpr_at_0.1%_fpr",
        "tpr_at_1%_fpr",
        "accuracy",
        "precision",
        "recall",
    }
    auroc = result["metrics"]["auroc"]
    assert 0.6 < auroc["low"] < auroc["value"] < auroc["high"] < 0.8
    # 300 non-members cannot resolve 0.1% FPR: null, not a number.
    assert result["metrics"]["tpr_at_0.1%_fpr"] == {"value": None, "low": None, "high": None}
    assert result["roc"]["fpr"][0] == 0 and result["roc"]["tpr"][-1] == 1


def test_report_round_trips(tmp_path, verdicts):
    json_path, html_path = write_report(tmp_path / "audit", verdicts)
    assert (json_path.name, html_path.name) == (REPORT_JSON, REPORT_HTML)
    assert read_report(json_path) == verdicts
    assert read_report(tmp_path / "audit") == verdicts
    assert json.loads(json_path.read_text())["schema"] == SCHEMA == "voxaudit.mia-report/1"
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == [REPORT_HTML, REPORT_JSON]


def test_new_report_fills_the_envelope(verdicts):
    assert verdicts["kind"] == "verdicts"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", verdicts["created"])
    assert verdicts["voxaudit_version"]
    with pytest.raises(VoxauditError, match="either results"):
        new_report(SETUP)


def test_roc_is_downsampled_keeping_low_fpr_points():
    scores, is_member = scored(0.5, 5, n=3000)
    fpr, tpr = roc_curve(scores, is_member)
    small_fpr, small_tpr = downsample_roc(fpr, tpr)
    assert len(fpr) > 1000 and len(small_fpr) <= 200
    assert (small_fpr[0], small_tpr[0], small_fpr[-1], small_tpr[-1]) == (0, 0, 1, 1)
    points = set(zip(fpr, tpr, strict=True))
    assert all(p in points for p in zip(small_fpr, small_tpr, strict=True))
    # The lowest positive FPR (one false positive) keeps its best TPR.
    lowest = fpr[fpr > 0].min()
    assert tpr[fpr <= lowest].max() in small_tpr[small_fpr == lowest]
    # Dense at low FPR: every one of the first 15 false-positive counts is still there.
    assert set(np.arange(16) / 3000) <= set(small_fpr)
    assert np.all(np.diff(small_fpr) >= 0) and np.all(np.diff(small_tpr) >= 0)


def test_short_roc_is_kept_whole():
    fpr, tpr = np.array([0, 0.5, 1]), np.array([0, 0.8, 1])
    assert downsample_roc(fpr, tpr) == (fpr, tpr)


def broken(report: dict, change) -> dict:
    report = copy.deepcopy(report)
    change(report)
    return report


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(schema="voxaudit.mia-report/2"), "schema"),
        (lambda r: r.pop("created"), "created"),
        (lambda r: r.update(created="yesterday"), "created"),
        (lambda r: r.update(kind="guesses"), "kind"),
        (lambda r: r.update(setup=[]), "setup"),
        (lambda r: r.update(results=[]), "results"),
        (lambda r: r.update(scores=[]), "scores"),
        (lambda r: r.update(extra=1), "extra"),
        (
            lambda r: r["results"][2]["metrics"]["auroc"].pop("low"),
            r"results\[2\].metrics.auroc.low",
        ),
        (
            lambda r: r["results"][2]["metrics"]["auroc"].update(low="0.5"),
            r"results\[2\].metrics.auroc.low",
        ),
        (
            lambda r: r["results"][0]["metrics"]["recall"].update(high=float("nan")),
            r"results\[0\].metrics.recall.high",
        ),
        (lambda r: r["results"][1].update(n_members="300"), r"results\[1\].n_members"),
        (lambda r: r["results"][1].update(n_members=True), r"results\[1\].n_members"),
        (lambda r: r["results"][1].update(model="shadow"), r"results\[1\].model"),
        (lambda r: r["results"][3].pop("roc"), r"results\[3\].roc"),
        (lambda r: r["results"][3]["roc"]["tpr"].pop(), r"results\[3\].roc.tpr"),
        (lambda r: r["results"][3]["roc"]["fpr"].append(1.5), r"results\[3\].roc.fpr"),
        (
            lambda r: r["results"][0]["feature_importances"].update(loss=None),
            r"results\[0\].feature_importances.loss",
        ),
        (lambda r: r["results"][2].update(notes=3), r"results\[2\].notes"),
        (lambda r: r["results"][0].update(speaker="x"), r"results\[0\].speaker"),
        (lambda r: [x.update(model="null") for x in r["results"]], "results: no result for the"),
    ],
)
def test_validation_names_the_offending_field(verdicts, change, field):
    with pytest.raises(VoxauditError, match=rf"report field {field}\b"):
        validate_report(broken(verdicts, change))


def test_read_report_names_the_file_and_field(tmp_path, verdicts):
    path = tmp_path / REPORT_JSON
    path.write_text(json.dumps(broken(verdicts, lambda r: r["results"][0].pop("name"))))
    with pytest.raises(
        VoxauditError, match=r"report\.json: report field results\[0\].name: missing"
    ):
        read_report(path)
    path.write_text("{not json")
    with pytest.raises(VoxauditError, match=r"report\.json: not a readable report"):
        read_report(path)


def test_invalid_report_is_not_written(tmp_path, verdicts):
    with pytest.raises(VoxauditError, match="schema"):
        write_report(tmp_path, broken(verdicts, lambda r: r.update(schema="other")))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, verdicts, monkeypatch):
    write_report(tmp_path, verdicts)
    before = (tmp_path / REPORT_JSON).read_text()

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, broken(verdicts, lambda r: r["setup"].update(shadows=8)))
    assert (tmp_path / REPORT_JSON).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [REPORT_HTML, REPORT_JSON]


def test_html_shows_results_null_rows_and_an_embedded_png(tmp_path, verdicts):
    _, html_path = write_report(tmp_path, verdicts)
    page = html_path.read_text()
    assert page.count('<tr class="target">') == 2 and page.count('<tr class="null">') == 2
    # Each target row is followed by its own null control.
    rows = re.findall(r'<tr class="(target|null)"><td>([^<]*)</td>', page)
    assert rows == [
        ("target", "shadow attack"),
        ("null", "shadow attack"),
        ("target", "LiRA &lt;online&gt;"),
        ("null", "LiRA &lt;online&gt;"),
    ]
    auroc = verdicts["results"][0]["metrics"]["auroc"]
    assert f"{auroc['value']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]" in page
    assert "<online>" not in page and "64 shadow models &amp; more" in page
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert base64.b64decode(png.group(1)).startswith(b"\x89PNG")
    assert "noise_wer_10db" in page  # feature importances
    assert "counts" in page and "members: 300" in page  # setup
    assert "cv_auroc" in page  # selection
    assert "sits at chance" in page and "not valid" not in page
    assert "Moderate risk" in page  # AUROC about 0.71
    assert "http" not in page.replace("<!DOCTYPE html>", "")  # nothing fetched from elsewhere


def test_html_says_prominently_when_the_null_control_fails(tmp_path, verdicts):
    report = copy.deepcopy(verdicts)
    report["results"][3] = entry("null", 0.6, 6, name="LiRA <online>")
    _, html_path = write_report(tmp_path, report)
    page = html_path.read_text()
    assert '<p class="invalid">This audit is not valid' in page
    assert page.index("not valid") < page.index("<h2>Results</h2>")
    assert "LiRA &lt;online&gt; (loss+noise)" in page


def test_html_without_a_null_control_says_so(tmp_path, verdicts):
    report = copy.deepcopy(verdicts)
    report["results"] = [r for r in report["results"] if r["model"] == "target"]
    _, html_path = write_report(tmp_path, report)
    assert "No null control was run" in html_path.read_text()


def test_markdown_table_has_a_row_per_result_and_an_interval_per_metric(verdicts):
    lines = markdown_table(verdicts, ("auroc", "tpr_at_0.1%_fpr", "not_measured")).splitlines()
    assert lines[0] == "| attack | features | model | AUROC | TPR @ 0.1% FPR | not_measured |"
    assert len(lines) == 2 + len(verdicts["results"])
    first = verdicts["results"][0]
    auroc = first["metrics"]["auroc"]
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    assert cells[:3] == ["shadow attack", "loss+noise", "target"]
    assert cells[3] == f"{auroc['value']:.3f} [{auroc['low']:.3f}, {auroc['high']:.3f}]"
    # 600 scores cannot resolve 0.1% FPR, and a metric a result lacks is not invented.
    assert cells[4:] == ["n/a", "n/a"]


def test_risk_summary_levels():
    assert risk_summary(entry("target", 0.0, 2)).startswith("No measurable leakage")
    assert risk_summary(entry("target", 2.5, 7)).startswith("High risk")
    assert risk_summary(entry("target", 0.45, 8)).startswith("Moderate risk")
    assert "worse than guessing" in risk_summary(entry("target", -0.8, 9))


def test_scores_report(tmp_path):
    report = scores_report()
    assert report["kind"] == "scores" and "results" not in report
    json_path, html_path = write_report(tmp_path, report)
    assert read_report(json_path) == report
    page = html_path.read_text()
    assert "membership scores from a reference attack, not verdicts" in page
    assert "utt-2 &lt;b&gt;" in page and "alice" in page
    assert page.index("utt-2") < page.index("utt-1")  # highest score first
    assert "risk" not in page.lower().replace("no risk level", "")
    with pytest.raises(VoxauditError, match=r"report field scores\[0\].score"):
        validate_report(broken(report, lambda r: r["scores"][0].update(score="high")))
    with pytest.raises(VoxauditError, match="report field results: not allowed"):
        validate_report(broken(report, lambda r: r.update(results=[])))


def test_module_constants_match_the_schema():
    assert mia.ROC_POINTS == 200
    assert mia.KINDS == ("verdicts", "scores") and mia.MODELS == ("target", "null")


def test_setup_that_is_not_json_is_refused(tmp_path, verdicts):
    report = broken(verdicts, lambda r: r["setup"].update(machine=object()))
    with pytest.raises(VoxauditError, match="not JSON data"):
        write_report(tmp_path, report)
    assert list(tmp_path.iterdir()) == []
