"""The README states exactly the figures ``bench/readme_figures.py`` wrote, and no other.

``docs/readme-figures.json`` is that script's output: the demo's and the privacy gate's
figures, each as the README prints it, and the machine they were measured on. A figure in
the README that is not in the file (a stale number, a number typed by hand) fails here, and
so does a figure of the file that the README lost.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURES = ROOT / "docs" / "readme-figures.json"
#: What counts as a stated figure: a decimal (a version too) or a percentage.
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)+%?|(?<![\w.])\d+%")
#: Numbers in the README's prose that are not measurements, and why.
NOT_FIGURES = {
    "1%": "the false-positive rate the attacks are read at",
    "95%": "the confidence of every interval",
    "3.10": "the oldest Python the package supports",
}
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "readme_figures", ROOT / "bench/readme_figures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prose(text: str) -> str:
    """The README without code blocks, inline code and comments (commands and their bounds)."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return re.sub(r"`[^`\n]+`", " ", text)


def problems(readme: str, figures: dict[str, Any]) -> list[str]:
    """What is wrong between the README text and the figures file; empty when they agree."""
    found = []
    texts = {key: text for key, text in figures["readme"].items() if key != "gate_line"}
    body = re.sub(r"\s+", " ", prose(readme))  # a figure may wrap onto the next line
    covered: set[int] = set()
    for key, text in texts.items():
        spans = [m.span() for m in re.finditer(re.escape(text), body)]
        if not spans:
            found.append(f"the README does not state {key} as {text!r}")
        for start, end in spans:
            covered.update(range(start, end))
    for match in NUMBER.finditer(body):
        if match.start() not in covered and match.group() not in NOT_FIGURES:
            context = body[max(0, match.start() - 40) : match.end() + 40]
            found.append(f"{match.group()!r} is no figure of the file: ...{context}...")
    gate = figures["readme"]["gate_line"]
    stated = [line.strip() for line in readme.splitlines() if "privacy gate:" in line]
    if gate not in stated:
        found.append(f"the README does not print the gate's line {gate!r}")
    found += [f"a gate line the file lacks: {line!r}" for line in stated if line != gate]
    return found


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    return json.loads(FIGURES.read_text("utf-8"))


def test_the_readme_states_the_figures_of_the_file_and_no_other(figures):
    assert problems(README.read_text("utf-8"), figures) == []


def test_the_file_is_what_the_script_makes_of_its_measurements(figures):
    """Each README text is the script's formatting of the measured values beside it, so the
    texts cannot be edited by hand without the values (or the other way round)."""
    assert bench().readme_texts(figures) == figures["readme"]
    machine = figures["machine"]
    assert machine["torch_threads"] == 1 and machine["cpu"] and machine["cpu_count"] >= 1
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", machine["date"]) and machine["commit"] != "unknown"
    # Measured on committed code, so the commit names what ran.
    assert machine["code_modified"] is False
    assert figures["gate"]["exit_code"] == 1 and figures["demo"]["valid"] is True


def _bumped(text: str) -> str:
    """``text`` with its first digit changed: a figure edited by hand, or gone stale."""
    match = re.search(r"\d", text)
    assert match is not None
    digit = str((int(match.group()) + 1) % 10)
    return text[: match.start()] + digit + text[match.end() :]


@pytest.mark.parametrize("key", ["demo_auroc", "demo_tpr", "accuracy_holdout", "gate_line"])
def test_the_check_fails_on_a_changed_figure(figures, key):
    readme = README.read_text("utf-8")
    text = figures["readme"][key]
    assert problems(readme.replace(text, _bumped(text)), figures)


def test_the_check_fails_on_a_figure_the_file_lacks_or_a_lost_one(figures):
    readme = README.read_text("utf-8")
    assert problems(readme + "\nA new result: AUROC 0.93 on another corpus.\n", figures)
    assert problems(readme + "\nIt finds 12% of the members.\n", figures)
    assert problems(readme.replace(figures["readme"]["commit"], ""), figures)
    # Inline code (commands, their bounds) is no figure; the prose's numbers are.
    assert problems(readme + "\nRun `voxaudit audit x --fail-above auroc=0.7`.\n", figures) == []
