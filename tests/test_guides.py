"""The guides' code runs as written: a broken snippet in docs/guide/ or the README fails here.

Each page's ```python blocks run in order, in one namespace, in a fresh working directory (on
``sys.path``, as a script's folder is), as a reader would paste them. A marker comment right
above a block changes that:

- ``<!-- guide-test: skip (why) -->``: not run (it needs the reader's own model folder, a live
  server, minutes of training); each such block is reported as a skipped test with its reason;
- ``<!-- guide-test: file NAME -->``: the block is a file the page's code uses, written to NAME;
- ``<!-- guide-test: run -->`` or ``run (exit N)``: a shell block, run line by line (each a
  ``voxaudit`` command, optionally after ``VAR=value`` settings) and expected to exit 0 (or N).
  Unmarked shell blocks are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs" / "guide").glob("*.md")), ROOT / "README.md"]
_BLOCK = re.compile(
    r"(?:^<!--\s*guide-test:\s*(?P<mark>.*?)\s*-->\s*\n)?"  # the marker, if any
    r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$",
    re.M | re.S,
)
SHELLS = ("sh", "bash", "shell", "console")
CLI = [sys.executable, "-c", "from voxaudit.cli import app; app()"]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    body: str
    mark: str | None

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{page}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        if self.mark is None:
            return None
        match = re.fullmatch(r"skip\s*\((.+)\)", self.mark)
        return match.group(1) if match else None

    @property
    def file(self) -> str | None:
        match = re.fullmatch(r"file\s+(\S+)", self.mark or "")
        return match.group(1) if match else None

    @property
    def exit_code(self) -> int | None:
        """The exit code a ``run`` block's commands must give; None when not run."""
        match = re.fullmatch(r"run(?:\s*\(exit\s+(\d+)\))?", self.mark or "")
        return None if match is None else int(match.group(1) or 0)

    @property
    def runs(self) -> bool:
        if self.file is not None:
            return True
        if self.language == "python":
            return self.mark is None
        return self.language in SHELLS and self.exit_code is not None


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, each with the marker comment right above it."""
    text = page.read_text("utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        language = match["info"].strip().split(" ")[0].lower()
        line = text.count("\n", 0, match.start("info")) + 1
        found.append(Block(page, line, language, match["body"], match["mark"]))
    return found


ALL = [block for page in PAGES for block in blocks(page)]
SKIPPED = [b for b in ALL if b.skip_reason is not None]


def run_shell(block: Block, cwd: Path) -> None:
    """Each command of a shell block (``\\`` continuations joined), through this interpreter."""
    for command in block.body.replace("\\\n", " ").splitlines():
        command = command.split(" #", 1)[0].strip()
        if not command or command.startswith("#"):
            continue
        args = shlex.split(command)
        env = os.environ | {"OMP_NUM_THREADS": "1"}
        while args and re.fullmatch(r"[A-Z_]+=.*", args[0]):
            name, _, value = args.pop(0).partition("=")
            if name == "PYTHONPATH":  # the reader's path, and the one this suite runs with
                value = os.pathsep.join([str((cwd / value).resolve()), env.get(name, "")])
            env[name] = value
        assert args[:1] == ["voxaudit"], f"{block.where}: only voxaudit commands run: {command}"
        done = subprocess.run([*CLI, *args[1:]], cwd=cwd, capture_output=True, text=True,
                              env=env, timeout=300)  # fmt: skip
        assert done.returncode == block.exit_code, (
            f"{block.where}: `{command}` exited {done.returncode}, not {block.exit_code}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


def test_the_pages_hold_code_and_every_marker_is_understood():
    assert any(b.runs and b.language == "python" for b in ALL if b.page.parent.name == "guide")
    for block in ALL:
        if block.mark is not None:
            known = block.exit_code is not None or block.skip_reason or block.file
            assert known, f"{block.where}: unknown marker {block.mark!r}"
        if block.exit_code is not None:
            assert block.language in SHELLS, f"{block.where}: 'run' marks shell blocks"


def test_a_broken_block_fails(tmp_path, monkeypatch):
    """The runner itself can fail: a page with a bad call raises, a skipped one does not run."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n<!-- guide-test: skip (not here) -->\n```python\n"
        "raise SystemExit('ran')\n```\n\n```python\nassert x == 2\n```\n"
    )
    found = blocks(page)
    assert [b.runs for b in found] == [True, False, True]
    assert found[1].skip_reason == "not here" and found[2].line == 10
    with pytest.raises(AssertionError):
        _run_page(found, tmp_path, monkeypatch)


def _run_page(page_blocks: list[Block], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict = {"__name__": "__guide__"}
    for block in page_blocks:
        if not block.runs:
            continue
        if block.file is not None:
            (tmp_path / block.file).write_text(block.body, "utf-8")
        elif block.language == "python":
            exec(compile(block.body, block.where, "exec"), namespace)
        else:
            run_shell(block, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if any(b.page == p and b.runs for b in ALL)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_page_code_runs(page, tmp_path, monkeypatch):
    _run_page(blocks(page), tmp_path, monkeypatch)


@pytest.mark.parametrize("block", SKIPPED, ids=lambda b: b.where)
def test_skipped_block(block):
    pytest.skip(f"{block.where} not run: {block.skip_reason}")
