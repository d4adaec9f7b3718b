"""The main job on the built-in default: synthesize the default corpus and make its audit splits.

Later stages (train targets and shadows, attack, report) extend :func:`run_demo`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from voxaudit.data.corpus import Corpus
from voxaudit.data.loaders import load_corpus
from voxaudit.data.splits import AuditSplit, make_split
from voxaudit.data.synth import synthesize_corpus
from voxaudit.report.console import corpus_table, split_table

DEFAULT_SPEAKERS = 200
DEFAULT_PER_SPEAKER = 10


@dataclass(frozen=True)
class DemoResult:
    corpus: Corpus
    splits: dict[str, AuditSplit]
    out_dir: Path


def run_demo(
    out_dir: Path = Path("voxaudit-out"),
    speakers: int = DEFAULT_SPEAKERS,
    per_speaker: int = DEFAULT_PER_SPEAKER,
    seed: int = 0,
    workers: int | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Synthesize (or reuse) the default corpus, reload it from disk, and save both audit splits."""
    console = console or Console()
    corpus_dir = out_dir / "synthetic"
    console.rule("[bold]1. Built-in synthetic corpus")
    synthesize_corpus(
        corpus_dir, n_speakers=speakers, per_speaker=per_speaker, seed=seed, workers=workers
    )
    # Read it back through the manifest loader, as a user's corpus would be read.
    corpus = load_corpus(corpus_dir, progress=True)
    console.print(corpus_table(corpus.summary()))

    console.rule("[bold]2. Audit splits")
    splits = {}
    for level in ("sample", "speaker"):
        split = make_split(corpus, level, seed=seed)
        split.save(out_dir / f"split-{level}.json")
        console.print(split_table(split))
        splits[level] = split
    console.print(f"Corpus in [bold]{corpus_dir}[/]; splits in [bold]{out_dir}/split-*.json[/]")
    return DemoResult(corpus, splits, out_dir)
