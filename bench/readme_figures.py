"""Every figure the README states, regenerated: the demo, then the privacy gate on its audit.

Usage: python bench/readme_figures.py [--work DIR] [--out docs/readme-figures.json]
                                      [--screenshot docs/img/report-first-screen.png]

Runs ``voxaudit demo`` in a fresh folder with torch on one CPU thread, then the README's CI
gate (``voxaudit audit audit.toml --fail-above ...`` on the demo's config, which reads the
finished audit back), and writes the figures, the README's text of each and the machine they
were measured on to ``--out``. tests/test_readme_figures.py fails when the README states a
figure this file does not hold. With Chromium on the PATH it also screenshots the report's
first screen (``--screenshot ''`` skips it).

Why one thread: torch's CPU kernels sum in an order that depends on the thread count, so the
demo's figures are repeatable for one thread count on one machine, not across machines or
thread counts. One thread is the count every machine can reproduce.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
THREADS = 1
GATE_BOUNDS = ("auroc=0.6", "tpr@1%fpr=0.05")
DEMO = ["demo", "--out", "demo"]
GATE = [
    "audit",
    "audit.toml",
    "--out",
    "demo",
    *(a for b in GATE_BOUNDS for a in ("--fail-above", b)),
]
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The first screen: the risk box, its sentence, the headline attack and the model's accuracy.
WINDOW = (1000, 760)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="run here, kept (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "readme-figures.json")
    parser.add_argument(
        "--screenshot", default=str(ROOT / "docs" / "img" / "report-first-screen.png"),
        help="PNG of the report's first screen; '' to skip",
    )  # fmt: skip
    args = parser.parse_args()
    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="readme-figures-") as tmp:
            figures = run(Path(tmp), args.screenshot)
    else:
        if args.work.exists() and any(args.work.iterdir()):
            sys.exit(f"{args.work}: not empty; the demo must run from scratch")
        args.work.mkdir(parents=True, exist_ok=True)
        figures = run(args.work.resolve(), args.screenshot)
    args.out.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(json.dumps(figures["readme"], indent=1, ensure_ascii=False))
    print(f"written to {args.out}")


def run(work: Path, screenshot: str) -> dict[str, Any]:
    """The demo and the gate in ``work``; the figures file's content."""
    started = time.perf_counter()
    demo = _voxaudit(DEMO, work)
    seconds = time.perf_counter() - started
    if demo.returncode != 0:
        sys.exit(f"voxaudit demo failed ({demo.returncode}):\n{demo.stdout[-3000:]}")
    report = json.loads((work / "demo" / "report.json").read_text("utf-8"))
    if screenshot:
        take_screenshot(work / "demo" / "report.html", Path(screenshot))
    init = _voxaudit(["audit", "init", "audit.toml"], work)
    if init.returncode != 0:
        sys.exit(f"voxaudit audit init failed:\n{init.stdout}")
    gate = _voxaudit(GATE, work)
    lines = [line for line in gate.stdout.splitlines() if line.startswith("privacy gate:")]
    if len(lines) != 1:
        sys.exit(f"the gate printed no verdict line ({gate.returncode}):\n{gate.stdout[-3000:]}")
    figures = {
        "about": "Written by bench/readme_figures.py; tests/test_readme_figures.py checks that "
        "the README states these figures and no others.",
        "machine": machine(report),
        "demo": demo_figures(report, seconds),
        "gate": {
            "command": "voxaudit " + " ".join(GATE),
            "exit_code": gate.returncode,
            "line": lines[0],
        },
    }
    figures["readme"] = readme_texts(figures)
    return figures


def _voxaudit(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``voxaudit ARGS`` in ``cwd`` with this interpreter, torch on one thread."""
    env = os.environ | {"OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    # The package as this interpreter imports it (PYTHONPATH is passed on), not some other
    # install's console script.
    command = [sys.executable, "-c", "from voxaudit.cli import app; app()", *args]
    print("$ voxaudit " + " ".join(args), flush=True)
    return subprocess.run(command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False)  # fmt: skip


def machine(report: dict[str, Any]) -> dict[str, Any]:
    """What the figures were measured on: the report's own record, the threads, the commit."""
    run = report["run"]
    return {
        "cpu": run["cpu"],
        "cpu_count": run["cpu_count"],
        "gpu": run["gpu"],
        "torch_threads": THREADS,
        "torch": run["packages"].get("torch"),
        "python": run["python"],
        "platform": run["platform"],
        "date": datetime.date.today().isoformat(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        # Uncommitted changes to the code would make the commit a wrong name for what ran.
        "code_modified": bool(_git("status", "--porcelain", "--", "src")),
    }


def demo_figures(report: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The demo's headline, its highest target row, its accuracy and its duration."""
    (summary,) = report["summary"]
    (level,) = report["levels"]
    targets = [r for r in level["mia"]["results"] if r["model"] == "target"]
    highest = max(targets, key=lambda r: r["metrics"]["auroc"]["value"])
    return {
        "command": "voxaudit " + " ".join(DEMO),
        "seconds": round(seconds, 1),
        "level": summary["level"],
        "risk": summary["risk"],
        "attack": summary["attack"],
        "chosen_by": summary["chosen_by"],
        "auroc": summary["auroc"],
        "tpr_at_1%_fpr": summary["tpr_at_1%_fpr"],
        "valid": summary["valid"],
        "members": level["mia"]["headline"]["n_members"],
        "nonmembers": level["mia"]["headline"]["n_nonmembers"],
        "highest": {
            "attack": highest["name"],
            "features": highest["features"],
            "auroc": highest["metrics"]["auroc"],
        },
        "utility": summary["utility"],
    }


def readme_texts(figures: dict[str, Any]) -> dict[str, str]:
    """Each figure as the README prints it; the test looks for exactly these strings."""
    demo, where = figures["demo"], figures["machine"]
    minutes, rest = divmod(round(demo["seconds"]), 60)
    return {
        "demo_auroc": _interval(demo["auroc"], "{:.3f}"),
        "demo_tpr": _interval(demo["tpr_at_1%_fpr"], "{:.1%}"),
        "demo_attack": demo["attack"],
        "highest_auroc": f"{demo['highest']['auroc']['value']:.3f}",
        "highest_attack": _row_label(demo["highest"]),
        "accuracy_members": f"{demo['utility']['members']:.1%}",
        "accuracy_holdout": f"{demo['utility']['holdout']:.1%}",
        "demo_time": f"{minutes} min {rest} s",
        "machine": f"{where['cpu']}, {where['cpu_count']} cores, torch {where['torch']} on "
        f"{where['torch_threads']} thread",
        "date": where["date"],
        "commit": where["commit"],
        "gate_line": figures["gate"]["line"],
    }


def _row_label(row: dict[str, Any]) -> str:
    """``threshold on loss``, or ``shadow attack (all features)``: features named once."""
    name, features = row["attack"], row["features"]
    return name if name.endswith(features) else f"{name} ({features})"


def _interval(metric: dict[str, float], form: str) -> str:
    value, low, high = (form.format(metric[k]) for k in ("value", "low", "high"))
    return f"{value} [{low}, {high}]"


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def take_screenshot(html: Path, png: Path) -> None:
    """The report's first screen as a small PNG, with headless Chromium; skipped (and said)
    when there is none."""
    browser = next((found for name in CHROMIUMS if (found := shutil.which(name))), None)
    if browser is None:
        print(f"note: no Chromium on the PATH ({', '.join(CHROMIUMS)}); screenshot skipped")
        return
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        raw = Path(profile) / "shot.png"
        command = [
            browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", f"--screenshot={raw}", html.as_uri(),
        ]  # fmt: skip
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # Chromium's sandbox refuses to run as root
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        # A palette of 64 colours keeps the text sharp at a third of the size.
        image = Image.open(raw).convert("RGB").quantize(colors=64)
        png.parent.mkdir(parents=True, exist_ok=True)
        image.save(png, optimize=True)
    print(f"screenshot: {png} ({png.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
