"""Benign query streams, music carriers and the upstream HTTP backend."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
import soundfile as sf

from voxaudit.attacks.carriers import music_carriers
from voxaudit.attacks.iterative import snr_db
from voxaudit.errors import VoxauditError
from voxaudit.guard.backends import BackendError, HTTPBackend, backend_from_spec
from voxaudit.guard.traffic import benign_stream


def test_benign_stream_sends_each_clip_once_plus_noisy_repeats():
    clips = [np.full(1600, i / 100 + 0.01, np.float32) for i in range(200)]
    stream = benign_stream(clips, n_accounts=5, repeat_rate=0.2, seed=0)
    originals = [w for _, w, _ in stream if any(w is c for c in clips)]
    assert len(originals) == 200
    repeats = len(stream) - 200
    assert 20 <= repeats <= 60  # about 20% of 200
    assert {a for a, _, _ in stream} == {f"user{i}" for i in range(5)}
    stamps = [t for _, _, t in stream]
    assert stamps == sorted(stamps)
    # A repeat is the clip just sent, by the same account, plus a little noise.
    for (account, wave, _), (previous_account, previous, _) in zip(
        stream[1:], stream, strict=False
    ):
        if not any(wave is c for c in clips):
            assert account == previous_account
            assert not np.array_equal(wave, previous)
            assert 29.0 < snr_db(previous, wave - previous) < 51.0


def test_benign_stream_shares_popular_clips_between_accounts():
    clips = [np.full(1600, i / 100 + 0.01, np.float32) for i in range(200)]
    plain = benign_stream(clips, n_accounts=5, repeat_rate=0.2, seed=0)
    same = benign_stream(clips, n_accounts=5, repeat_rate=0.2, seed=0, share_rate=0.0)
    assert [(a, t) for a, _, t in plain] == [(a, t) for a, _, t in same]
    stream = benign_stream(clips, n_accounts=20, seed=1, share_rate=0.3, rerecord_rate=0.1,
                           popular=3)  # fmt: skip
    copies = [(a, w) for a, w, _ in stream if sum(w is c for c in clips) and
              sum(1 for _, v, _ in stream if v is w) > 1]  # fmt: skip
    # Exact copies of a popular clip, sent by several accounts.
    assert len({a for a, _ in copies}) >= 5
    noisy = [w for _, w, _ in stream if not any(w is c for c in clips)]
    assert 10 <= len(noisy) <= 35  # re-recordings, about 10% of 200
    assert len(stream) > 200 + 40


def test_music_carriers_are_deterministic_and_bounded():
    first, second = music_carriers(2, seed=3), music_carriers(2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])
    assert first[0].size == 48000 and np.abs(first[0]).max() == pytest.approx(0.5)


def test_http_backend_posts_wav_and_reads_the_text():
    seen = {}

    def upstream(request: httpx.Request) -> httpx.Response:
        samples, rate = sf.read(io.BytesIO(request.content))
        seen.update(rate=rate, n=samples.size, type=request.headers["content-type"])
        return httpx.Response(200, json={"text": "open the door"})

    client = httpx.Client(transport=httpx.MockTransport(upstream))
    backend = HTTPBackend("http://asr.test/v1", client=client)
    assert backend.transcribe(np.zeros(800, np.float32), 16000) == "open the door"
    assert seen == {"rate": 16000, "n": 800, "type": "audio/wav"}


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(500, text="boom"),
        httpx.Response(200, text="not json"),
        httpx.Response(200, content=json.dumps({"words": []})),
    ],
)
def test_http_backend_failures_are_backend_errors(reply):
    client = httpx.Client(transport=httpx.MockTransport(lambda request: reply))
    with pytest.raises(BackendError, match="upstream ASR"):
        HTTPBackend("http://asr.test/v1", client=client).transcribe(np.zeros(10), 16000)


def test_backend_spec_names_what_is_wrong(tmp_path):
    with pytest.raises(VoxauditError, match="backend"):
        backend_from_spec(str(tmp_path / "missing"))
    assert isinstance(backend_from_spec("https://asr.example/v1"), HTTPBackend)
