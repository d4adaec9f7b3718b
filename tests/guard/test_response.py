"""How a flagged or banned account is answered: ``flagged_response``, ``degrade_snr_db`` and
``flagged_delay_s``. Under ``degrade`` the reply must give an adaptive attacker no oracle:
status, keys, headers and errors as any account gets, only the audio the backend hears is
noisier. The default, ``refuse`` (403), is covered by test_service and test_openai_api."""

from __future__ import annotations

import asyncio
import io

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.guard.test_openai_api import post
from tests.guard.test_service import ADMIN, FakeBackend, attack, make_client, send, wav
from voxaudit.errors import VoxauditError
from voxaudit.guard.config import GuardConfig, load_config
from voxaudit.guard.service import Gateway, create_app
from voxaudit.guard.store import InMemoryStore

SNR_DB = 10.0
DELAY = 7.25  # seconds no other code in the stack sleeps for


class RecordingBackend(FakeBackend):
    """``FakeBackend``, keeping every waveform it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[np.ndarray] = []

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        self.heard.append(waveform.copy())
        return super().transcribe(waveform, sample_rate)


def decoded(body: bytes) -> np.ndarray:
    """The samples the gateway decodes from a 16 kHz mono WAV body."""
    samples, _ = sf.read(io.BytesIO(body), dtype="float32")
    return samples


def snr_db(clean: np.ndarray, heard: np.ndarray) -> float:
    power = np.mean(clean.astype(np.float64) ** 2)
    return float(10 * np.log10(power / np.mean((heard - clean).astype(np.float64) ** 2)))


def shape(response: httpx.Response) -> tuple[int, str, set[str], object]:
    """What a reply shows besides its transcript: status, type, header names, JSON keys."""
    is_json = response.headers["content-type"] == "application/json"
    keys = sorted(response.json()) if is_json else None
    return response.status_code, response.headers["content-type"], set(response.headers), keys


def test_a_flagged_account_is_answered_like_any_other_from_degraded_audio(speech):
    backend = RecordingBackend()
    client = make_client(
        backend, detectors=("index",), flagged_response="degrade", degrade_snr_db=SNR_DB
    )
    bodies = [*attack(speech[5], 5), wav(speech[6])]  # the fifth query is flagged, then banned
    replies = [send(client, body) for body in bodies]
    clean = send(client, wav(speech[6]), key="k-bob")
    assert all(shape(reply) == shape(clean) for reply in replies)
    # Even a bad upload gets the error any account gets, not a "banned".
    assert send(client, b"junk" * 10).json() == send(client, b"junk" * 10, key="k-bob").json()
    # The backend heard the first four as sent, the flagged and the banned one with noise.
    alice = backend.heard[: len(bodies)]
    assert all(np.array_equal(h, decoded(b)) for h, b in zip(alice[:4], bodies[:4], strict=True))
    for heard, body in zip(alice[4:], bodies[4:], strict=True):
        assert abs(snr_db(decoded(body), heard) - SNR_DB) < 0.5
    # Recorded as under refuse: one flag (a banned account's queries are not checked again).
    flags = client.get("/admin/flags", headers=ADMIN).json()["flags"]
    assert [(f["account"], f["detector"]) for f in flags] == [("alice", "index")]
    assert list(client.get("/admin/bans", headers=ADMIN).json()["bans"]) == ["alice"]
    metrics = client.get("/metrics").text
    assert 'voxaudit_guard_degraded_total{reason="flagged"} 1.0' in metrics
    assert 'voxaudit_guard_degraded_total{reason="banned"} 1.0' in metrics
    assert 'voxaudit_guard_requests_total{outcome="banned"} 1.0' in metrics
    # Unbanned, the account is heard clean again.
    assert client.delete("/admin/bans/alice", headers=ADMIN).status_code == 200
    body = wav(speech[7])
    assert send(client, body).status_code == 200
    assert np.array_equal(backend.heard[-1], decoded(body))


def test_the_openai_endpoint_degrades_in_every_response_format(speech):
    backend = RecordingBackend()
    client = make_client(backend, flagged_response="degrade", degrade_snr_db=SNR_DB)
    bodies = list(attack(speech[5], 5))
    assert [post(client, body).status_code for body in bodies] == [200] * 5  # 5th: flagged
    clip = wav(speech[6])
    for response_format in ("json", "text", "verbose_json", "srt"):
        banned = post(client, clip, response_format=response_format)
        clean = post(client, clip, key="k-bob", response_format=response_format)
        assert shape(banned) == shape(clean), response_format
        if response_format == "srt":  # the same 400 for both, and the backend not called
            assert banned.json() == clean.json()
        else:
            assert abs(snr_db(decoded(clip), backend.heard[-2]) - SNR_DB) < 0.5
            assert np.array_equal(backend.heard[-1], decoded(clip))
    assert abs(snr_db(decoded(bodies[4]), backend.heard[4]) - SNR_DB) < 0.5
    assert list(client.get("/admin/bans", headers=ADMIN).json()["bans"]) == ["alice"]


def test_the_noise_is_new_for_each_query_and_gateway():
    """An attacker who could predict the noise could take it back out."""
    config = GuardConfig(flagged_response="degrade")
    first, second = (Gateway(config, FakeBackend(), store=InMemoryStore()) for _ in range(2))
    wave = np.sin(np.linspace(0, 600, 8000)).astype(np.float32)
    copies = [first.degrade(wave), first.degrade(wave), second.degrade(wave)]
    assert not any(np.array_equal(a, b) for i, a in enumerate(copies) for b in copies[i + 1 :])


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds of each ``DELAY`` the gateway awaited, without waiting them; other sleeps
    (the server stack's own) pass through."""
    seen: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, *args: object, **kwargs: object) -> object:
        if seconds == DELAY:
            seen.append(seconds)
            return None
        return await real_sleep(seconds, *args, **kwargs)

    monkeypatch.setattr("voxaudit.guard.service.asyncio.sleep", sleep)
    return seen


@pytest.mark.parametrize(("response", "status"), [("refuse", 403), ("degrade", 200)])
def test_flagged_and_banned_replies_wait_and_clean_ones_do_not(speech, waits, response, status):
    client = make_client(flagged_response=response, flagged_delay_s=DELAY)
    bodies = list(attack(speech[5], 6))
    assert [send(client, body).status_code for body in bodies[:4]] == [200] * 4
    assert waits == []
    assert [send(client, body).status_code for body in bodies[4:]] == [status] * 2
    assert waits == [DELAY, DELAY]  # the flagged query, then the banned one
    assert send(client, wav(speech[6]), key="k-bob").status_code == 200
    assert waits == [DELAY, DELAY]


def test_a_waiting_account_holds_up_no_other(speech, monkeypatch):
    """While a flagged query waits, another account is answered: the wait ends only after."""
    gateway = Gateway(
        GuardConfig(
            api_keys={"k-alice": "alice", "k-bob": "bob"},
            index_threshold=4,
            memory_threshold=0.5,
            k=6,
            flagged_response="degrade",
            flagged_delay_s=DELAY,
        ),
        FakeBackend(),
    )
    real_sleep = asyncio.sleep

    async def scenario() -> tuple[int, int]:
        waiting, released = asyncio.Event(), asyncio.Event()

        async def sleep(seconds: float, *args: object, **kwargs: object) -> object:
            if seconds != DELAY:
                return await real_sleep(seconds, *args, **kwargs)
            waiting.set()
            await released.wait()
            return None

        monkeypatch.setattr("voxaudit.guard.service.asyncio.sleep", sleep)
        transport = httpx.ASGITransport(app=create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://guard") as client:

            def send_async(body: bytes, key: str = "k-alice"):
                return client.post("/v1/transcribe", content=body, headers={"X-API-Key": key})

            bodies = list(attack(speech[5], 5))
            for body in bodies[:4]:
                assert (await send_async(body)).status_code == 200
            flagged = asyncio.ensure_future(send_async(bodies[4]))
            await asyncio.wait_for(waiting.wait(), timeout=60)
            other = await asyncio.wait_for(send_async(wav(speech[6]), "k-bob"), timeout=60)
            assert not flagged.done()
            released.set()
            return other.status_code, (await flagged).status_code

    assert asyncio.run(scenario()) == (200, 200)


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"flagged_response": "nope"}, "flagged_response"),
        ({"flagged_delay_s": -1.0}, "flagged_delay_s"),
        ({"flagged_delay_s": float("nan")}, "flagged_delay_s"),
        ({"degrade_snr_db": float("inf")}, "degrade_snr_db"),
    ],
)
def test_bad_response_settings_name_their_key(settings, key):
    with pytest.raises(VoxauditError, match=f"^{key}: "):
        GuardConfig(**settings)


def test_response_settings_from_file_and_environment(tmp_path):
    assert GuardConfig().flagged_response == "refuse" and GuardConfig().flagged_delay_s == 0
    path = tmp_path / "guard.toml"
    path.write_text('flagged_response = "degrade"\ndegrade_snr_db = -5\nflagged_delay_s = 1\n')
    config = load_config(path, {})
    assert (config.flagged_response, config.degrade_snr_db, config.flagged_delay_s) == (
        "degrade",
        -5.0,
        1.0,
    )
    environ = {
        "VOXAUDIT_GUARD_FLAGGED_RESPONSE": "degrade",
        "VOXAUDIT_GUARD_DEGRADE_SNR_DB": "3.5",
        "VOXAUDIT_GUARD_FLAGGED_DELAY_S": "0.25",
    }
    config = load_config(None, environ)
    assert (config.flagged_response, config.degrade_snr_db, config.flagged_delay_s) == (
        "degrade",
        3.5,
        0.25,
    )
    with pytest.raises(VoxauditError, match="flagged_delay_s"):
        load_config(None, {"VOXAUDIT_GUARD_FLAGGED_DELAY_S": "-1"})
    with pytest.raises(VoxauditError, match="flagged_response"):
        load_config(None, {"VOXAUDIT_GUARD_FLAGGED_RESPONSE": "silence"})
