"""The results table of a finished defense sweep, as Markdown for docs/results-defenses.md.

Usage: python bench/defense_sweep.py SWEEP_DIR [SWEEP_DIR ...]

Reads each ``SWEEP_DIR/sweep.json`` written by ``voxaudit defend sweep`` and prints one table
per sweep: every figure comes from that file, nothing is recomputed or rounded differently
from the intervals' three decimals.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = (
    "| setting | {metric} | strongest attack (features) | AUROC [95% CI] | TPR @ 1% FPR [95% CI] "
    "| null-control AUROC [95% CI] | DP epsilon (target) | Pareto |"
)


def markdown(summary: dict[str, Any]) -> str:
    """One row per setting of a ``voxaudit.defense-sweep/1`` summary."""
    metric = summary["utility_metric"]
    lines = [HEADER.format(metric=metric), "| --- " * 8 + "|"]
    for r in summary["settings"]:
        leak = r["leakage"]
        epsilon = (r.get("epsilon") or {}).get("target")
        cells = [
            r["setting"] + ("" if r["threat"] == summary["threat"] else f" ({r['threat']} box)"),
            f"{r['utility']['value']:.3f}",
            f"{leak['attack']} ({leak['features']})",
            _interval(leak["auroc"]),
            _interval(leak["tpr_at_1%_fpr"]),
            _interval(leak["null_auroc"]),
            "n/a" if epsilon is None else f"{epsilon:.2f}",
            "yes" if r["pareto"] else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _interval(metric: dict[str, float | None] | None) -> str:
    if metric is None or metric["value"] is None:
        return "n/a"
    low, high = (("?" if metric[k] is None else f"{metric[k]:.3f}") for k in ("low", "high"))
    return f"{metric['value']:.3f} [{low}, {high}]"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for folder in map(Path, sys.argv[1:]):
        summary = json.loads((folder / "sweep.json").read_text("utf-8"))
        print(f"\n### {summary['family']} ({folder})\n\n{markdown(summary)}")


if __name__ == "__main__":
    main()
