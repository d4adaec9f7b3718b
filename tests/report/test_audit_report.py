"""The audit's HTML report: well-formed, with the sections a reader needs, and it renders."""

import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from voxaudit.report.audit import render_html

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Outline(HTMLParser):
    """Ids, headings and images of a page; fails on a closing tag that does not match."""

    def __init__(self):
        super().__init__()
        self.open, self.ids, self.headings, self.images = [], [], [], []
        self._in_heading = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag not in VOID:
            self.open.append(tag)
        if tag in {"h1", "h2", "h3"}:
            self._in_heading = ""

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"
        if tag in {"h1", "h2", "h3"}:
            self.headings.append(self._in_heading)
            self._in_heading = None

    def handle_data(self, data):
        if self._in_heading is not None:
            self._in_heading += data


def test_the_report_holds_the_sections_a_reader_needs(tiny_audit):
    _, out, _ = tiny_audit
    page = (out / "report.html").read_text()
    assert page == render_html(json.loads((out / "report.json").read_text()))  # JSON holds all
    outline = _Outline()
    outline.feed(page)
    outline.close()
    assert outline.open == []  # every element closed
    assert {"at-a-glance", "level-sample", "run"} <= set(outline.ids)
    for heading in ("At a glance", "Sample level: details", "Results", "ROC curves", "Setup",
                    "Run"):  # fmt: skip
        assert any(h.startswith(heading) for h in outline.headings), heading
    assert any(src.startswith("data:image/png;base64,") for src in outline.images)
    assert "Was this recording used to train the model?" in page
    assert "null control" in page and "bootstrap 95% interval" in page


def _outline(page):
    outline = _Outline()
    outline.feed(page)
    outline.close()
    return outline


def test_the_guard_section_is_there_only_when_the_guard_ran(tiny_guard_audit, tiny_audit):
    _, out, _ = tiny_guard_audit
    page = (out / "report.html").read_text()
    report = json.loads((out / "report.json").read_text())
    assert page == render_html(report)
    outline = _outline(page)
    assert outline.open == [] and "guard" in outline.ids
    for heading in ("Guard: catching adversarial attacks", "Without evasion", "Under evasion",
                    "The attacks"):  # fmt: skip
        assert heading in outline.headings, heading
    ids = outline.ids
    assert ids.index("level-sample") < ids.index("guard") < ids.index("run")
    assert "be caught?" in page and "false positives per benign query" in page
    for detector in ("memory (paper 003)", "index (global)", "memory, robust", "index, robust"):
        assert f"<td>{detector}</td>" in page
    assert 'href="#guard"' in page
    # Without the stage, and in a report made before it existed: no guard section.
    without = (tiny_audit[1] / "report.html").read_text()
    del report["guard"]
    for other in (without, render_html(report)):
        outline = _outline(other)
        assert "guard" not in outline.ids and 'href="#guard"' not in other
        assert not any(h.startswith("Guard") for h in outline.headings)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs headless chromium")
def test_the_report_renders_in_a_headless_browser(tiny_audit, tmp_path):
    _, out, _ = tiny_audit
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
         f"--screenshot={shot}", (out / "report.html").resolve().as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.stat().st_size > 20_000  # a page with text and a figure, not a blank one
