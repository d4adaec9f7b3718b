"""The audit on Ray: the same figures as the local engine, even when a worker is killed in the
middle of training a shadow model (Ray retries the task, which resumes from its checkpoint)."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY
from voxaudit.compute import ComputeConfig
from voxaudit.pipeline import PipelineConfig, run_audit

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed"),
]
# More epochs than the tiny audit's, so that a worker can be killed while it trains.
EPOCHS = 12


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> tuple[PipelineConfig, Path]:
    """The audit on the local engine (one thread, as each Ray task has): config, out folder."""
    folder = tmp_path_factory.mktemp("ray-audit")
    (folder / "audit.toml").write_text(TINY.replace("epochs = 2", f"epochs = {EPOCHS}"))
    config = PipelineConfig.load(folder / "audit.toml")
    # A module fixture is set up before conftest's one-thread fixture, and a float sum's last
    # bits depend on how many threads share it: pin the thread count the Ray tasks use.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_audit(config, folder / "local", progress=False)
    finally:
        torch.set_num_threads(threads)
    return config, folder / "local"


def _scores(out: Path) -> str:
    """Every example's score under every attack, as the report stores them."""
    return (out / "sample" / "report" / "examples.csv").read_text("utf-8")


def _on_ray(config: PipelineConfig) -> PipelineConfig:
    return replace(config, compute=ComputeConfig(engine="ray", cpus=2))


def test_an_audit_on_ray_gives_the_local_engines_figures(local_run, tmp_path, monkeypatch):
    config, local = local_run
    report = run_audit(_on_ray(config), tmp_path / "out", progress=False)
    assert report["run"]["compute"]["engine"] == "ray"
    assert _scores(tmp_path / "out") == _scores(local)
    # A rerun, even back on the local engine, resumes: where the work runs changes no model.
    done = (tmp_path / "out" / "sample" / "done.json").read_bytes()
    monkeypatch.setattr("voxaudit.train.run.train_model", _refuse)
    again = run_audit(config, tmp_path / "out", progress=False)
    assert again["run"]["compute"] == {"engine": "local"}
    assert (tmp_path / "out" / "sample" / "done.json").read_bytes() == done


def _refuse(*args, **kwargs):
    raise AssertionError("a resumed audit trained a model again")


def _worker_running(task: str) -> int | None:
    """The pid of the Ray worker running the task named ``task`` (Ray titles it so)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if command.startswith(f"ray::{task}"):
                return int(entry.name)
    return None


def test_a_worker_killed_mid_training_is_retried_and_the_figures_do_not_change(local_run, tmp_path):
    config, local = local_run
    out = tmp_path / "out"
    first_epoch = out / "sample" / "models" / "shadow-1" / "checkpoint.pt"
    killed: list[int] = []

    def kill_once_it_has_checkpointed() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:
            pid = _worker_running("voxaudit:shadow-1")
            if pid is not None and first_epoch.exists():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_once_it_has_checkpointed, daemon=True)
    killer.start()
    run_audit(_on_ray(config), out, progress=False)
    killer.join(timeout=1)
    assert killed, "shadow-1 finished training before its worker could be killed"
    assert _scores(out) == _scores(local)
