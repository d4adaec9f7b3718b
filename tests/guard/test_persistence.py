"""State that survives kill -9 with the default store, and readiness apart from liveness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from voxaudit.errors import VoxauditError
from voxaudit.guard.config import GuardConfig, load_config
from voxaudit.guard.service import Gateway, create_app, make_store
from voxaudit.guard.store import InMemoryStore, RedisStore, SQLiteStore

from .conftest import _free_port
from .test_service import ADMIN, KEYS, FakeBackend, attack, make_client, send, wav

START_TIMEOUT_S = 60.0


class Server:
    """``voxaudit guard serve`` in a subprocess on a loopback port, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "gateway.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "VOXAUDIT_GUARD_API_KEYS": ",".join(f"{k}={a}" for k, a in KEYS.items()),
            "VOXAUDIT_GUARD_ADMIN_KEY": ADMIN["X-Admin-Key"],
            "VOXAUDIT_GUARD_DETECTORS": "index",
            "VOXAUDIT_GUARD_INDEX_THRESHOLD": "4",
        }
        # No store settings: the default store, its file in the working directory. The
        # backend is never reached (nothing listens on port 9): forwarded queries get 502.
        command = [sys.executable, "-c", "from voxaudit.cli import app; app()", "guard", "serve"]
        command += ["--port", str(self.port), "--backend", "http://127.0.0.1:9/asr"]
        # The log goes to a file: a pipe nobody reads would block the server once full.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"the gateway did not answer within {START_TIMEOUT_S} s")

    def kill(self) -> None:
        """kill -9: no shutdown handler runs, nothing is flushed on the way out."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path) -> Iterator[Server]:
    server = Server(tmp_path)
    yield server
    if server.process is not None and server.process.poll() is None:
        server.kill()


def test_bans_and_the_index_survive_kill_9_with_the_default_store(server, speech):
    bodies = list(attack(speech[11], 6, seed=4))
    server.start()
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert client.get("/readyz").status_code == 200
        statuses = [send(client, body).status_code for body in bodies[:5]]
        assert statuses == [502] * 4 + [403]  # checked, then forwarded to no backend; flagged
        assert "alice" in client.get("/admin/bans", headers=ADMIN).json()["bans"]
    server.kill()
    assert (server.folder / "voxaudit-guard.sqlite").exists()

    server.start()  # the same file, a new process
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert client.get("/readyz").status_code == 200
        refused = send(client, wav(speech[12]))
        assert refused.status_code == 403 and refused.json()["error"] == "banned"
        assert "alice" in client.get("/admin/bans", headers=ADMIN).json()["bans"]
        # The index remembers alice's queries: the attack goes on from bob and is caught.
        flagged = send(client, bodies[5], key="k-bob")
        assert flagged.status_code == 403 and flagged.json()["error"] == "flagged"
        assert client.delete("/admin/bans/alice", headers=ADMIN).status_code == 200


def test_readyz_is_503_while_redis_is_down_and_healthz_stays_ok():
    store = RedisStore(f"redis://127.0.0.1:{_free_port()}/0")  # nothing listens there
    client = make_client(store=store)
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "ConnectionError" in response.json()["detail"]


def test_readyz_is_200_with_the_default_store(tmp_path):
    config = GuardConfig(api_keys=KEYS)
    assert config.store == "sqlite"
    client = TestClient(create_app(Gateway(config, FakeBackend())))
    assert isinstance(client.app.state.gateway.store, SQLiteStore)
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json()["status"] == "ready"
    assert (tmp_path / "voxaudit-guard.sqlite").exists()  # the working directory (conftest)


def test_an_unusable_sqlite_store_is_not_ready_and_refuses_with_503(tmp_path, speech):
    store = SQLiteStore(tmp_path / "gone.sqlite", index_keys=2**12)
    client = make_client(store=store)
    store.close()  # as if the file could no longer be used
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503
    response = send(client, wav(speech[0]))
    assert response.status_code == 503 and response.json()["error"] == "store_unavailable"


def test_the_store_and_its_path_are_settings(tmp_path):
    file = tmp_path / "state" / "bans.sqlite"
    store = make_store(load_config(None, {"VOXAUDIT_GUARD_STORE_PATH": str(file)}))
    assert isinstance(store, SQLiteStore) and store.path == file and file.exists()
    in_memory = make_store(load_config(None, {"VOXAUDIT_GUARD_STORE": "memory"}))
    assert isinstance(in_memory, InMemoryStore)
    with pytest.raises(VoxauditError, match="store_path"):
        GuardConfig(store_path="")
