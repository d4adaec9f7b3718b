"""Shared guard fixtures: small synthetic speech, a real redis-server when it can run, and a
working directory of its own per test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.guard.fingerprint import Fingerprinter


@pytest.fixture(autouse=True)
def _default_store_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own folder: a gateway on the default (SQLite) store writes its file
    into the working directory, and bans left there would leak into the next test."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def speech() -> list[np.ndarray]:
    """48 distinct synthetic utterances (12 speakers x 4), 16 kHz."""
    corpus = synthesize_corpus_in_memory(n_speakers=12, per_speaker=4, seed=11)
    return [u.samples for u in corpus.utterances]


@pytest.fixture(scope="session")
def fingerprinter() -> Fingerprinter:
    return Fingerprinter()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server on a loopback port; its URL. Skips only if it cannot run."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (make test installs it)")
    port = _free_port()
    folder: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None:
                pytest.skip("redis-server exited at start")
            time.sleep(0.05)
    else:
        process.kill()
        pytest.skip("redis-server did not answer")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)
