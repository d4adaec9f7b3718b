"""The gateway over HTTP (FastAPI's TestClient): transcription, bans, admin, bad input."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voxaudit.errors import VoxauditError
from voxaudit.guard.backends import BackendError, RecognizerBackend
from voxaudit.guard.config import GuardConfig, load_config, save_thresholds
from voxaudit.guard.service import Gateway, create_app
from voxaudit.guard.store import RedisStore

KEYS = {"k-alice": "alice", "k-bob": "bob", **{f"k-sock{i}": f"sock{i}" for i in range(4)}}
ADMIN = {"X-Admin-Key": "root-secret"}


class FakeBackend:
    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        self.calls += 1
        if self.fail:
            raise BackendError("fake backend is down")
        return f"heard {waveform.size} samples"


def wav(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def make_client(backend=None, store=None, **settings) -> TestClient:
    config = GuardConfig(
        api_keys=KEYS,
        admin_key="root-secret",
        index_threshold=4,
        memory_threshold=0.5,
        k=6,
        max_seconds=8.0,
        max_bytes=600_000,
        **settings,
    )
    return TestClient(create_app(Gateway(config, backend or FakeBackend(), store=store)))


def send(client: TestClient, body: bytes, key: str = "k-alice"):
    return client.post("/v1/transcribe", content=body, headers={"X-API-Key": key})


def attack(carrier: np.ndarray, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    delta = np.zeros_like(carrier)
    for _ in range(n):
        delta += 3e-4 * rng.standard_normal(carrier.size).astype(np.float32)
        yield wav(np.clip(carrier + delta, -1, 1))


def test_healthz_and_a_clean_transcription(speech):
    client = make_client()
    assert client.get("/healthz").json()["status"] == "ok"
    response = send(client, wav(speech[0]))
    assert response.status_code == 200
    assert response.json() == {"text": f"heard {speech[0].size} samples"}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "nope"}])
def test_unknown_keys_get_401(speech, headers):
    response = make_client().post("/v1/transcribe", content=wav(speech[0]), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def _truncated(speech) -> bytes:
    return wav(speech[0])[:20_000]


def _nan_wav(speech) -> bytes:
    samples = speech[0].copy()
    samples[100] = np.nan
    return wav(samples, subtype="FLOAT")


BAD = {
    "not audio": (lambda s: b"this is not a sound file" * 10, 415, "not_audio"),
    "empty": (lambda s: b"", 400, "empty"),
    "header only": (lambda s: wav(np.zeros(0, np.float32)), 400, "empty"),
    "truncated": (_truncated, 400, "truncated"),
    "too large": (lambda s: b"RIFF" + bytes(700_000), 413, "too_large"),
    "too long": (
        lambda s: wav(np.zeros(16000 * 9, np.float32) + 0.01, subtype="PCM_U8"),
        413,
        "too_long",
    ),
    "too short": (lambda s: wav(s[0][:160]), 400, "too_short"),
    "implausible rate": (lambda s: wav(s[0][:1000], rate=500), 422, "wrong_rate"),
    "NaN": (_nan_wav, 422, "not_finite"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_json_error(speech, case):
    make_body, status, code = BAD[case]
    backend = FakeBackend()
    client = make_client(backend)
    response = send(client, make_body(speech))
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert backend.calls == 0
    # The worker is alive and well afterwards.
    assert send(client, wav(speech[1])).status_code == 200


def test_a_failing_backend_is_a_502(speech):
    response = send(make_client(FakeBackend(fail=True)), wav(speech[0]))
    assert response.status_code == 502
    assert response.json()["error"] == "backend_error"


def test_an_attack_is_banned_until_an_admin_lifts_it(speech):
    backend = FakeBackend()
    client = make_client(backend, detectors=("index",))
    statuses = [send(client, body).status_code for body in attack(speech[5], 8)]
    # The index flags the first query that matches 4 earlier ones: the fifth.
    assert statuses == [200] * 4 + [403] * 4
    # Banned: even a clean clip is refused, and the backend is not called.
    calls = backend.calls
    refused = send(client, wav(speech[6]))
    assert refused.status_code == 403 and refused.json()["error"] == "banned"
    assert "index score" in refused.json()["detail"]
    assert backend.calls == calls
    # Other accounts are unaffected.
    assert send(client, wav(speech[6]), key="k-bob").status_code == 200
    flags = client.get("/admin/flags", headers=ADMIN).json()["flags"]
    assert [f["account"] for f in flags] == ["alice"]
    assert flags[0]["detector"] == "index"
    assert "alice" in client.get("/admin/bans", headers=ADMIN).json()["bans"]
    assert client.delete("/admin/bans/alice", headers=ADMIN).json() == {"unbanned": "alice"}
    assert send(client, wav(speech[7])).status_code == 200
    assert client.delete("/admin/bans/alice", headers=ADMIN).status_code == 404


def test_a_spread_attack_bans_every_account_it_used_when_asked_to(speech):
    client = make_client(detectors=("index",), ban_related=True)
    keys = [f"k-sock{i}" for i in range(4)]
    statuses = [
        send(client, body, key=keys[i % 4]).status_code
        for i, body in enumerate(attack(speech[8], 8))
    ]
    # Each account's first variant is free: the 8th query holds 4 beyond them.
    assert statuses[-1] == 403
    bans = client.get("/admin/bans", headers=ADMIN).json()["bans"]
    assert set(bans) == {"sock0", "sock1", "sock2", "sock3"}


def test_by_default_only_the_flagged_account_is_banned(speech):
    client = make_client(detectors=("index",))
    keys = [f"k-sock{i}" for i in range(4)]
    statuses = [
        send(client, body, key=keys[i % 4]).status_code
        for i, body in enumerate(attack(speech[8], 8))
    ]
    assert statuses[-1] == 403
    flagged = {f"sock{i % 4}" for i, status in enumerate(statuses) if status == 403}
    bans = client.get("/admin/bans", headers=ADMIN).json()["bans"]
    # Only the senders of flagged queries, not the accounts whose queries those matched.
    assert set(bans) == flagged and flagged < {"sock0", "sock1", "sock2", "sock3"}


def test_a_recording_shared_by_many_accounts_bans_nobody(speech):
    """One clip sent by ten accounts (and re-sent by some) is one clip, not an attack; the
    same clip's perturbed variants from one account still are."""
    client = make_client(detectors=("index",), ban_related=True)
    shared = wav(speech[3])
    keys = list(KEYS)
    statuses = [send(client, shared, key=keys[i % len(keys)]).status_code for i in range(12)]
    assert statuses == [200] * 12
    assert client.get("/admin/bans", headers=ADMIN).json()["bans"] == {}
    statuses = [send(client, body, key="k-bob").status_code for body in attack(speech[3], 6)]
    assert statuses[-1] == 403
    bans = client.get("/admin/bans", headers=ADMIN).json()["bans"]
    assert "bob" in bans and "alice" not in bans  # the sharers are no evidence against alice


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Key": "k-alice"}])
def test_admin_endpoints_need_the_admin_key(headers):
    client = make_client()
    for method, path in [
        ("get", "/admin/flags"),
        ("get", "/admin/bans"),
        ("delete", "/admin/bans/alice"),
    ]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"


def test_metrics_are_prometheus_text(speech):
    client = make_client()
    send(client, wav(speech[0]))
    send(client, b"junk")
    text = client.get("/metrics").text
    assert 'voxaudit_guard_requests_total{outcome="ok"} 1.0' in text
    assert 'voxaudit_guard_requests_total{outcome="not_audio"} 1.0' in text
    assert "voxaudit_guard_check_seconds_count 1.0" in text
    assert "voxaudit_guard_bans 0.0" in text


def test_bans_and_memory_survive_a_restart_with_redis(redis_server, speech):
    bodies = list(attack(speech[9], 7, seed=3))

    def gateway_client():
        store = RedisStore(redis_server, prefix="service-restart", index_keys=2**16)
        return make_client(store=store, detectors=("index",))

    first = gateway_client()
    assert [send(first, b).status_code for b in bodies[:4]] == [200] * 4
    second = gateway_client()  # a restarted replica: a new app and store object
    assert send(second, bodies[4]).status_code == 403  # it remembers the four earlier queries
    third = gateway_client()
    assert send(third, wav(speech[10])).json()["error"] == "banned"


def test_a_built_in_model_backend(speech):
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    model = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0)
    client = make_client(RecognizerBackend(Recognizer(model)))
    response = send(client, wav(speech[0]))
    assert response.status_code == 200
    assert isinstance(response.json()["text"], str)


def test_config_from_file_and_environment(tmp_path):
    path = tmp_path / "guard.toml"
    path.write_text('admin_key = "file"\nk = 10\ndetectors = ["memory"]\n')
    save_thresholds(path, {"index": 5, "memory": 0.25})
    env = {"VOXAUDIT_GUARD_ADMIN_KEY": "env", "VOXAUDIT_GUARD_API_KEYS": "a=alice,b=bob"}
    config = load_config(path, env)
    assert config.admin_key == "env" and config.k == 10 and config.detectors == ("memory",)
    assert config.api_keys == {"a": "alice", "b": "bob"}
    assert (config.index_threshold, config.memory_threshold) == (5.0, 0.25)
    with pytest.raises(VoxauditError, match="max_seconds"):
        load_config(path, {"VOXAUDIT_GUARD_MAX_SECONDS": "lots"})
    with pytest.raises(VoxauditError, match="detectors"):
        load_config(path, {"VOXAUDIT_GUARD_DETECTORS": "magic"})
    path.write_text("colour = 'blue'\n")
    with pytest.raises(VoxauditError, match="colour"):
        load_config(path, {})


def test_truncation_check_reads_the_declared_size():
    from voxaudit.guard.service import _truncated_wav

    body = wav(np.zeros(1000, np.float32))
    assert not _truncated_wav(body)
    assert _truncated_wav(body[:-10])
    streamed = body[:40] + struct.pack("<I", 0xFFFFFFFF) + body[44:-10]
    assert not _truncated_wav(streamed)


def test_an_unreachable_redis_is_a_503(speech):
    from voxaudit.guard.store import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = send(make_client(store=store), wav(speech[0]))
    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
