import base64
import copy
import os
import re

import numpy as np
import pytest

from voxaudit.errors import VoxauditError
from voxaudit.mia.results import (
    EXAMPLES_CSV,
    REPORT_JSON,
    load_results,
    new_report,
    read_report,
    result_entry,
    without_examples,
)
from voxaudit.report.mia import REPORT_HTML, markdown_table, render_html, write_html, write_report

SETUP = {
    "model family": "ctc",
    "target": "runs/target",
    "shadows": 4,
    "level": "sample",
    "threat": "grey",
    "counts": {"members": 300, "nonmembers": 300},
}


def entry(
    model: str, shift: float, seed: int, name: str = "shadow attack", n: int = 300, **kwargs
) -> dict:
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(shift, 1, n), rng.normal(0, 1, n)])
    return result_entry(
        name, "loss+noise", model, scores, np.repeat([True, False], n),
        ids=[f"utt-{i}" for i in range(2 * n)], speakers=[f"spk-{i % 7}" for i in range(2 * n)],
        predictions=scores > 0.3, n_bootstrap=100, **kwargs,
    )  # fmt: skip


def rows() -> list[dict]:
    return [
        entry("target", 0.8, 1, feature_importances={"loss": 0.7, "noise_wer_10db": 0.3}),
        entry("null", 0.0, 2),
        entry("target", 0.3, 3, name="LiRA <online>", notes="64 shadow models & more"),
        entry("null", 0.0, 11, name="LiRA <online>"),
    ]


@pytest.fixture(scope="module")
def verdicts() -> dict:
    return new_report(SETUP, results=rows(), selection={"features": "loss+noise", "cv_auroc": 0.7})


def scores_report() -> dict:
    scores = [
        {"id": "utt-1", "speaker": "alice", "score": 0.25},
        {"id": "utt-2 <b>", "speaker": "bob", "score": 1.5},
    ]
    return new_report({"target": "api", "mode": "scoring"}, scores=scores)


def ranked_scores_report(n: int = 30) -> dict:
    """Scores as a saturated attack gives them: probabilities that all print as 0.000, and
    log-odds that still rank."""
    scores = [
        {
            "id": f"spk-{i:02d}",
            "speaker": f"spk-{i:02d}",
            "score": float(np.exp(-40.0 + i / 10)),
            "log_odds": -40.0 + i / 10,
            "percentile": 100.0 * i / n,
        }
        for i in range(n)
    ]
    setup = {
        "target": "resemblyzer",
        "level": "speaker",
        "utility": {"target": {"eer": 0.45}, "shadow-0": {"eer": 0.12}},
        "reference_attack": {
            "classifier": "logistic",
            "features": ["intra", "inter"],
            "shadow_cv_auroc": 0.71,
        },
    }
    return new_report(setup, scores=scores, warnings=["The target fails on the recordings."])


def broken(report: dict, change) -> dict:
    report = copy.deepcopy(report)
    change(report)
    return report


def test_write_report_writes_the_data_and_the_page(tmp_path, verdicts):
    written = write_report(tmp_path / "audit", verdicts)
    assert set(written) == {REPORT_JSON, EXAMPLES_CSV, REPORT_HTML}
    assert sorted(p.name for p in (tmp_path / "audit").iterdir()) == sorted(written)
    assert read_report(written[REPORT_JSON]) == without_examples(verdicts) | {
        "examples_file": EXAMPLES_CSV
    }
    assert load_results(tmp_path / "audit") == verdicts | {"examples_file": EXAMPLES_CSV}
    # The page shows only what report.json holds.
    assert written[REPORT_HTML].read_text() == render_html(read_report(written[REPORT_JSON]))


def test_write_html_adds_only_the_page(tmp_path, verdicts):
    page = write_html(tmp_path, verdicts)
    assert [p.name for p in tmp_path.iterdir()] == [REPORT_HTML]
    assert page.read_text() == render_html(verdicts)
    with pytest.raises(VoxauditError):
        write_html(tmp_path / "bad", broken(verdicts, lambda r: r.update(schema="other")))
    assert not (tmp_path / "bad").exists()


def test_invalid_report_is_not_written(tmp_path, verdicts):
    with pytest.raises(VoxauditError, match="schema"):
        write_report(tmp_path, broken(verdicts, lambda r: r.update(schema="other")))
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_old_files_and_leaves_no_temporary(
    tmp_path, verdicts, monkeypatch
):
    write_report(tmp_path, verdicts)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, broken(verdicts, lambda r: r["setup"].update(shadows=8)))
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == before


def test_setup_that_is_not_json_is_refused(tmp_path, verdicts):
    report = broken(verdicts, lambda r: r["setup"].update(machine=object()))
    with pytest.raises(VoxauditError, match="not JSON data"):
        write_report(tmp_path, report)
    assert list(tmp_path.iterdir()) == []


def test_html_shows_results_null_rows_and_an_embedded_png(verdicts):
    page = render_html(verdicts)
    assert page.count('<tr class="target">') == 2 and page.count('<tr class="null">') == 2
    # Each target row is followed by its own null control.
    found = re.findall(r'<tr class="(target|null)"><td>([^<]*)</td>', page)
    assert found == [
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
    assert "advantage (TPR − FPR)" in page and "either sign" in page
    assert "http" not in page.replace("<!DOCTYPE html>", "")  # nothing fetched from elsewhere


def test_the_first_screen_says_how_the_verdict_was_reached(verdicts):
    page = render_html(verdicts)
    first = page[: page.index("<h2>Setup</h2>")]
    assert "Headline attack: shadow attack (loss+noise), chosen by maximum over 2 target rows" in (
        first
    )
    assert "Holm–Bonferroni over 2 null rows, family-wise alpha 0.05" in first
    assert "TPR at 0.1% FPR needs at least 1,000 non-members; this audit has 300" in first
    assert f'<a href="{EXAMPLES_CSV}">' in first
    # The headline's ten highest-scoring recordings, highest first, members marked.
    top = verdicts["headline"]["top_examples"]
    assert len(top) == 10 and "<h2>Highest-scoring recordings</h2>" in first
    cells = re.findall(r'<tr><td class="num">(\d+)</td><td>([^<]*)</td>', first)
    assert cells == [(str(k), item["id"]) for k, item in enumerate(top, start=1)]


def test_a_headline_chosen_on_shadow_data_says_so():
    results = rows()
    results[2] = entry("target", 0.3, 3, name="LiRA <online>", shadow_auroc=0.66)
    page = render_html(new_report(SETUP, results=results))
    assert "Headline attack: LiRA &lt;online&gt; (loss+noise), chosen by shadow data" in page
    assert "shadow AUROC 0.660" in page
    assert "Not considered, for want of a shadow AUROC: shadow attack (loss+noise)" in page


def test_html_says_prominently_when_the_null_control_fails():
    results = rows()
    results[3] = entry("null", 0.6, 6, name="LiRA <online>")
    page = render_html(new_report(SETUP, results=results))
    assert '<p class="invalid">This audit is not valid' in page
    assert page.index("not valid") < page.index("<h2>Results</h2>")
    assert "LiRA &lt;online&gt; (loss+noise)" in page
    assert "sits at chance" not in page


def test_html_without_a_null_control_says_so():
    page = render_html(new_report(SETUP, results=[r for r in rows() if r["model"] == "target"]))
    assert "No null control was run" in page and "sits at chance" not in page


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


def test_scores_report(tmp_path):
    report = scores_report()
    assert report["kind"] == "scores" and "results" not in report
    written = write_report(tmp_path, report)
    assert set(written) == {REPORT_JSON, REPORT_HTML}
    assert read_report(written[REPORT_JSON]) == report
    page = written[REPORT_HTML].read_text()
    assert "membership scores from a reference attack, not verdicts" in page
    assert "utt-2 &lt;b&gt;" in page and "alice" in page
    assert page.index("utt-2") < page.index("utt-1")  # highest score first
    assert "risk" not in page.lower().replace("no risk level", "")


def test_scores_html_leads_with_utility_and_ranks_by_log_odds(tmp_path):
    report = ranked_scores_report()
    page = write_report(tmp_path, report)[REPORT_HTML].read_text()
    assert page.index("Utility on the scored recordings: target EER 0.450") < page.index(
        "<h2>Setup</h2>"
    )
    assert page.index("The target fails") < page.index("<h2>Setup</h2>")
    assert "<th>log-odds</th><th>percentile</th>" in page and "-37.1000" in page
    assert page.index("spk-29") < page.index("spk-28") < page.index("spk-00")


def test_scores_console_says_top_n_of_m_and_prints_log_odds_before_the_table():
    from rich.console import Console

    from voxaudit.report.console import scores_table

    console = Console(width=200, record=True)
    console.print(scores_table(ranked_scores_report(), limit=20))
    text = console.export_text()
    assert "top 20 of 30 speakers" in text
    assert text.index("Utility on the scored recordings") < text.index("Membership scores")
    assert text.index("warning: The target fails") < text.index("Membership scores")
    assert "-37.1000" in text and "96.7" in text and "spk-10" in text and "spk-09" not in text
    assert text.index("spk-29") < text.index("spk-28")
    console = Console(width=200, record=True)
    console.print(scores_table(ranked_scores_report(5), limit=20))
    assert "5 speakers" in console.export_text() and "top" not in console.export_text()
