"""The compute engines: settings checked when made, tasks by name on either engine, a failed
task named while the others finish, and a worker that dies retried by Ray."""

from __future__ import annotations

import importlib.util
import os
import signal
from pathlib import Path

import pytest

from voxaudit.compute import ComputeConfig, map_tasks
from voxaudit.errors import VoxauditError

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed: pip install '.[ray]'"
)
RAY = ComputeConfig(engine="ray", cpus=2) if importlib.util.find_spec("ray") else None


def _power(base: int, *, exponent: int, folder: Path, progress: bool) -> tuple[int, bool]:
    (folder / f"done-{base}").write_text("")  # what a finished task leaves behind
    if base < 0:
        raise VoxauditError(f"no power of a negative base ({base})")
    return base**exponent, progress


def _dies_once(name: str, *, folder: Path, progress: bool) -> str:
    """Kills its own worker on its first attempt; a retry finds the marker and finishes."""
    marker = folder / f"started-{name}"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"{name} after a retry"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"engine": "dask"}, "engine must be local or ray, not 'dask'"),
        ({"address": "auto"}, "address and cpus are Ray settings"),
        ({"engine": "ray", "address": "auto", "cpus": 2}, "cpus sizes a Ray started here"),
        ({"engine": "ray", "cpus": 0}, "cpus must be an integer >= 1"),
        ({"cpus_per_task": 0}, "cpus_per_task must be > 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_when_made(settings, message):
    with pytest.raises(VoxauditError, match=message):
        ComputeConfig(**settings)


def test_ray_without_ray_installed_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None if n == "ray" else real(n))
    with pytest.raises(VoxauditError, match=r"pip install 'voxaudit\[ray\]'"):
        ComputeConfig(engine="ray")


@pytest.mark.parametrize("engine", ["local", pytest.param("ray", marks=needs_ray)])
def test_tasks_give_their_results_by_name_in_order(tmp_path, engine):
    compute = RAY if engine == "ray" else None
    calls = {f"power of {b}": (b,) for b in (3, 1, 2, 5)}
    results = map_tasks(_power, calls, compute, shared={"exponent": 2, "folder": tmp_path})
    assert list(results) == list(calls)
    # Ray's workers show no progress of their own; here, the caller's choice passes through.
    assert [value for value, _ in results.values()] == [9, 1, 4, 25]
    assert {shown for _, shown in results.values()} == {engine == "local"}


@needs_ray
def test_a_failed_ray_task_is_named_and_the_others_finish(tmp_path):
    calls = {f"base {b}": (b,) for b in (2, -1, 3, 4)}
    with pytest.raises(VoxauditError) as caught:
        map_tasks(_power, calls, RAY, shared={"exponent": 2, "folder": tmp_path},
                  description="powers", progress=False)  # fmt: skip
    assert "1 of 4 powers failed" in str(caught.value)
    assert "base -1: no power of a negative base (-1)" in str(caught.value)
    assert {p.name for p in tmp_path.iterdir()} == {f"done-{b}" for b in (2, -1, 3, 4)}


@needs_ray
def test_a_task_whose_worker_dies_is_retried_or_named_when_retries_run_out(tmp_path):
    for name in ("retried", "once"):
        (tmp_path / name).mkdir()
    retried = map_tasks(_dies_once, {"a": ("a",), "b": ("b",)}, RAY,
                        shared={"folder": tmp_path / "retried"}, progress=False)  # fmt: skip
    assert retried == {"a": "a after a retry", "b": "b after a retry"}
    no_retries = ComputeConfig(engine="ray", cpus=2, max_retries=0)
    with pytest.raises(VoxauditError, match=r"1 of 1 tasks failed .*: c: "):
        map_tasks(_dies_once, {"c": ("c",)}, no_retries, shared={"folder": tmp_path / "once"},
                  progress=False)  # fmt: skip
