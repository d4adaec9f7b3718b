"""Where an audit's independent pieces of work run: here, one after another, or as Ray tasks.

Three kinds of work are independent, one piece per model or per setting: training the target
and its shadow models, extracting each model's features, and the settings of a defense sweep.
:func:`map_tasks` runs such pieces. With the ``local`` engine it calls them one after another
in this process (what voxaudit always did); with ``ray`` each is a Ray task, on a Ray started
on this machine or on a cluster it joins. The pieces are the same functions either way, and
each saves what it finishes atomically (checkpoints every epoch, feature chunks, a setting's
``result.json``), so a task whose worker dies is retried by Ray and carries on from what its
first attempt saved, and a rerun of an interrupted audit recomputes nothing that finished.

On a cluster, the corpus and the output folder must be on a filesystem every node sees at the
same path, and voxaudit installed on every node: the tasks read and write there.

Ray is the standard engine for this (placement, retries, a cluster's resources); voxaudit only
adds the one progress display (tasks done, running, failed, retried) across its tasks.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from voxaudit.errors import VoxauditError

R = TypeVar("R")
ENGINES = ("local", "ray")
#: Ray's workers print to their own log files, not over the progress display.
_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class ComputeConfig:
    """Where the independent tasks of an audit or a sweep run (``[compute]`` in a config).

    Parameters
    ----------
    engine : ``"local"`` (one after another, in this process) or ``"ray"``.
    address : Ray only. None starts a Ray on this machine; ``"auto"`` joins the cluster this
        machine belongs to, ``"HOST:6379"`` or ``"ray://HOST:10001"`` a given one.
    cpus : Ray started here only: the CPUs it may use (None: all of this machine's).
    cpus_per_task : CPUs each task reserves; it also runs torch with that many threads.
    gpus_per_task : GPUs each task reserves (fractions share a GPU); 0 trains on the CPU.
    max_retries : how often Ray reruns a task whose worker died (killed, out of memory, a lost
        node). An error the task raises itself is not retried: it would fail again.
    """

    engine: str = "local"
    address: str | None = None
    cpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        """Refuse bad settings when made, before any work (a config reader prefixes where)."""
        if self.engine not in ENGINES:
            raise VoxauditError(f"engine must be local or ray, not {self.engine!r}")
        if self.engine == "ray" and importlib.util.find_spec("ray") is None:
            raise VoxauditError(
                "engine = 'ray' needs Ray, which is not installed: pip install 'voxaudit[ray]'"
            )
        if self.engine == "local" and (self.address is not None or self.cpus is not None):
            raise VoxauditError("address and cpus are Ray settings (engine = 'ray')")
        if self.address is not None and self.cpus is not None:
            raise VoxauditError("cpus sizes a Ray started here; a cluster (address) has its own")
        if self.cpus is not None and (isinstance(self.cpus, bool) or self.cpus < 1):
            raise VoxauditError(f"cpus must be an integer >= 1 (got {self.cpus})")
        if not self.cpus_per_task > 0 or self.gpus_per_task < 0:
            raise VoxauditError(
                "cpus_per_task must be > 0 and gpus_per_task >= 0 "
                f"(got {self.cpus_per_task}, {self.gpus_per_task})"
            )
        if isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise VoxauditError(f"max_retries must be an integer >= 0 (got {self.max_retries})")

    def record(self) -> dict[str, Any]:
        """What the report says of where the work ran."""
        if self.engine == "local":
            return {"engine": "local"}
        return {
            "engine": "ray",
            "address": self.address or "a Ray started on this machine",
            "cpus_per_task": self.cpus_per_task,
            "gpus_per_task": self.gpus_per_task,
        }


LOCAL = ComputeConfig()


def map_tasks(
    function: Callable[..., R],
    calls: Mapping[str, Sequence[Any]],
    compute: ComputeConfig | None = None,
    shared: Mapping[str, Any] | None = None,
    description: str = "tasks",
    progress: bool = True,
) -> dict[str, R]:
    """``function(*calls[name], **shared, progress=...)`` for every name; the results by name.

    Parameters
    ----------
    function : a module-level function (Ray ships it to its workers by reference), taking a
        ``progress`` keyword: True only when it runs here with progress shown; Ray's workers
        show none of their own.
    calls : each task's positional arguments, by the task's name (e.g. ``"shadow-1"``), which
        names it in the progress display, in Ray's process list and in errors.
    compute : the engine (:data:`LOCAL` when None).
    shared : keyword arguments every task takes (a corpus, a config): Ray stores them once in
        its object store rather than once per task.
    description : what the tasks are, for the display and errors.
    progress : show progress.

    Returns
    -------
    Each task's result, by name, in the order of ``calls``. When tasks fail, the others still
    finish (and keep what they saved); then one error names every failed task.
    """
    compute = compute or LOCAL
    shared = dict(shared or {})
    if compute.engine == "local" or not calls:
        return {name: function(*args, **shared, progress=progress) for name, args in calls.items()}
    return _ray_map(function, calls, compute, shared, description, progress)


# --- Ray --------------------------------------------------------------------------------------


def _ray(compute: ComputeConfig) -> Any:
    """Ray, started here or joined to its cluster once per process."""
    import ray

    if not ray.is_initialized():
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": "ERROR",
        }
        if compute.address is None:
            options["num_cpus"] = compute.cpus
        else:
            options["address"] = compute.address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = compute.address or "this machine"
            message = f"[compute]: could not start or join Ray at {where}: {exc}"
            raise VoxauditError(message) from None
    return ray


def _run_one(
    board: Any, name: str, threads: int, function: Callable[..., R], *args: Any, **shared: Any
) -> R:
    """One task on a Ray worker: say it started (a retry starts again), then do the work."""
    import torch

    board.started.remote(name, os.getpid())
    # Ray sets OMP_NUM_THREADS to the task's CPUs; torch reads it only at import, so say it.
    torch.set_num_threads(threads)
    return function(*args, **shared, progress=False)


class _Board:
    """A Ray actor the tasks tell when they start: the display's running and retried counts."""

    def __init__(self) -> None:
        self.starts: dict[str, list[int]] = {}

    def started(self, name: str, pid: int) -> None:
        self.starts.setdefault(name, []).append(pid)

    def read(self) -> dict[str, list[int]]:
        return self.starts


def _ray_map(
    function: Callable[..., R],
    calls: Mapping[str, Sequence[Any]],
    compute: ComputeConfig,
    shared: dict[str, Any],
    description: str,
    progress: bool,
) -> dict[str, R]:
    from rich import progress as bars

    ray = _ray(compute)
    board = ray.remote(num_cpus=0)(_Board).remote()
    stored = {key: ray.put(value) for key, value in shared.items()}
    task = ray.remote(_run_one)
    threads = max(1, int(compute.cpus_per_task))
    pending = {
        task.options(
            name=f"voxaudit:{name}",
            num_cpus=compute.cpus_per_task,
            num_gpus=compute.gpus_per_task,
            max_retries=compute.max_retries,
            retry_exceptions=False,
        ).remote(board, name, threads, function, *args, **stored): name
        for name, args in calls.items()
    }
    results: dict[str, Any] = {}
    failed: dict[str, BaseException] = {}
    display = bars.Progress(
        bars.TextColumn("[bold]{task.description}"), bars.BarColumn(),
        bars.MofNCompleteColumn(), bars.TextColumn("{task.fields[state]}"),
        bars.TimeElapsedColumn(), disable=not progress,
    )  # fmt: skip
    with display:
        row = display.add_task(f"{description} (Ray)", total=len(calls), state="")
        try:
            _collect(ray, board, pending, results, failed, display, row)
        except KeyboardInterrupt:  # what finished is saved; the rest would run on unseen
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    if failed:
        raise VoxauditError(
            f"{len(failed)} of {len(calls)} {description} failed (the others finished and a "
            "rerun resumes from them): "
            + "; ".join(f"{name}: {_cause(exc)}" for name, exc in failed.items())
        )
    return {name: results[name] for name in calls}


def _collect(
    ray: Any,
    board: Any,
    pending: dict[Any, str],
    results: dict[str, Any],
    failed: dict[str, BaseException],
    display: Any,
    row: Any,
) -> None:
    """Wait for every pending task, filling ``results`` and ``failed``, updating the display."""
    while pending:
        finished, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_SECONDS)
        for ref in finished:
            name = pending.pop(ref)
            try:
                results[name] = ray.get(ref)
            except Exception as exc:  # the task's own error, or its worker's last death
                failed[name] = exc
        starts = ray.get(board.read.remote())
        running = sum(1 for name in pending.values() if name in starts)
        retried = sum(len(pids) - 1 for pids in starts.values())
        state = f"running {running} · failed {len(failed)} · retried {retried}"
        display.update(row, completed=len(results) + len(failed), state=state)


def _cause(exc: BaseException) -> str:
    """The task's own error message, without Ray's traceback around it."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
