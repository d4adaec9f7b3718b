"""The documentation site builds with warnings as errors: every page in the navigation, every
relative link and anchor, and every docstring the API reference renders (``make docs``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mkdocs_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install '.[docs]')")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed ('.[docs]')")
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("index.html", "api/audit/index.html", "guide/audit-your-model/index.html"):
        assert (site / page).is_file(), page
    # The reference renders the signature's types and the docstring's descriptions apart.
    audit = (site / "api/audit/index.html").read_text("utf-8")
    assert "the audited model" in audit and "Parameters" in audit
    shutil.rmtree(site)
