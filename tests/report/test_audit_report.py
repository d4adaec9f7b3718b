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
