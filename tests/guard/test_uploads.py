"""Uploads as users send them: any rate and channel count, and plain errors for broken files."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from voxaudit.guard.backends import RecognizerBackend
from voxaudit.guard.config import GuardConfig
from voxaudit.guard.service import Gateway, create_app

RATE = 16000


class Recorder:
    """A backend that keeps what it was sent and answers with its length."""

    name = "recorder"

    def __init__(self) -> None:
        self.received: list[tuple[np.ndarray, int]] = []

    def transcribe(self, waveform: np.ndarray, sample_rate: int) -> str:
        self.received.append((waveform, sample_rate))
        return f"heard {waveform.size} samples"


def client_for(backend) -> TestClient:
    config = GuardConfig(api_keys={"k": "alice"}, max_seconds=8.0, max_bytes=600_000)
    return TestClient(create_app(Gateway(config, backend)))


def send(client: TestClient, body: bytes):
    return client.post("/v1/transcribe", content=body, headers={"X-API-Key": "k"})


def encode(samples: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def tone(hz: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return (0.4 * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def peaks(wave: np.ndarray, rate: int, n: int) -> list[int]:
    """The ``n`` strongest frequencies of ``wave``, in Hz, rounded."""
    spectrum = np.abs(np.fft.rfft(wave))
    frequencies = np.fft.rfftfreq(wave.size, 1 / rate)
    return sorted(round(frequencies[i]) for i in np.argsort(spectrum)[-n:])


def test_an_8_khz_mono_upload_is_resampled_and_transcribed():
    backend = Recorder()
    response = send(client_for(backend), encode(tone(440, 8000), 8000))
    assert response.status_code == 200, response.text
    assert response.json() == {"text": f"heard {RATE} samples"}
    wave, rate = backend.received[0]
    assert rate == RATE and wave.dtype == np.float32
    assert peaks(wave, rate, 1) == [440]


@pytest.mark.parametrize(
    ("rate", "channels", "fmt", "subtype"),
    [
        (48000, 2, "WAV", "PCM_16"),
        (44100, 2, "WAV", "PCM_24"),
        (22050, 1, "WAV", "PCM_U8"),
        (32000, 4, "WAVEX", "PCM_32"),
        (48000, 1, "WAV", "DOUBLE"),
        (44100, 2, "FLAC", "PCM_16"),
    ],
)
def test_any_rate_and_channel_count_is_downmixed_and_resampled(rate, channels, fmt, subtype):
    # Each channel its own tone: the mono mix holds them all, at half a second each.
    tones = [tone(300 + 200 * c, rate, seconds=0.5) for c in range(channels)]
    backend = Recorder()
    response = send(client_for(backend), encode(np.stack(tones, axis=1), rate, fmt, subtype))
    assert response.status_code == 200, response.text
    wave, received_rate = backend.received[0]
    assert received_rate == RATE and wave.size == RATE // 2
    assert peaks(wave, RATE, channels) == [300 + 200 * c for c in range(channels)]


def test_a_48_khz_stereo_clip_reaches_a_real_model(speech):
    from voxaudit.models.ctc import CTCModel
    from voxaudit.models.recognizer import Recognizer

    model = CTCModel(encoder="gru", d_model=32, layers=1, conv_channels=8, dropout=0.0)
    stereo = np.stack([speech[0][::3], speech[0][::3]], axis=1)[: 48000 * 2]
    response = send(client_for(RecognizerBackend(Recognizer(model))), encode(stereo, 48000))
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["text"], str)


def with_fmt(body: bytes, **fields: int) -> bytes:
    """A WAV ``body`` with fields of its fmt chunk (at byte 20) overwritten."""
    offsets = {"channels": (22, "<H"), "rate": (24, "<I"), "bits": (34, "<H")}
    patched = bytearray(body)
    for name, value in fields.items():
        offset, layout = offsets[name]
        struct.pack_into(layout, patched, offset, value)
    return bytes(patched)


MALFORMED = {
    "7 bits per sample": (lambda b: with_fmt(b, bits=7), "7 bits per sample"),
    "12 bits per sample": (lambda b: with_fmt(b, bits=12), "12 bits per sample"),
    "0 channels": (lambda b: with_fmt(b, channels=0), "0 channels"),
    "0 Hz": (lambda b: with_fmt(b, rate=0), "0 Hz"),
    "fmt cut short": (lambda b: b[:30], "fmt chunk is too short"),
    "data beyond the file": (lambda b: b[:-100], "cut short"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_header_is_a_4xx_with_a_plain_message(case):
    mangle, words = MALFORMED[case]
    backend = Recorder()
    client = client_for(backend)
    response = send(client, mangle(encode(tone(440, 8000), 8000, subtype="PCM_U8")))
    assert 400 <= response.status_code < 500, response.text
    assert words in response.json()["detail"]
    assert backend.received == []
    assert send(client, encode(tone(440, 8000), 8000)).status_code == 200


UNREADABLE = {
    "text": b"this is not a sound file" * 10,
    "RIFF without WAVE": b"RIFF" + struct.pack("<I", 100) + b"AVI " + bytes(100),
    "WAVE without fmt": b"RIFF" + struct.pack("<I", 100) + b"WAVE" + b"junk" + bytes(100),
    "FLAC magic, no stream": b"fLaC" + bytes(200),
    "Ogg magic, no stream": b"OggS" + bytes(200),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_unreadable_body_is_a_415_without_python_internals(case):
    response = send(client_for(Recorder()), UNREADABLE[case])
    assert response.status_code == 415, response.text
    detail = response.json()["detail"]
    assert detail.startswith("body: not readable audio (")
    assert "object at 0x" not in detail and "<" not in detail, detail


def test_a_failing_model_leaks_no_internals():
    class Broken:
        sample_rate = RATE

        def transcribe(self, waveforms):
            raise RuntimeError(f"state {object()}")

    response = send(
        client_for(RecognizerBackend(Broken(), name="model")), encode(tone(440, RATE), RATE)
    )
    assert response.status_code == 502
    assert response.json()["detail"] == "model failed (RuntimeError)"


def test_limits_hold_at_any_rate():
    client = client_for(Recorder())
    nine_seconds = encode(tone(440, 8000, seconds=9.0), 8000, subtype="PCM_U8")
    assert send(client, nine_seconds).json()["error"] == "too_long"
    # 2.5 s of 48 kHz stereo 16-bit is 480 kB; 3.5 s is over the 600 kB limit.
    over = encode(np.stack([tone(440, 48000, seconds=3.5)] * 2, axis=1), 48000)
    assert send(client, over).json()["error"] == "too_large"
    short = encode(tone(440, 48000, seconds=0.05), 48000)
    assert send(client, short).json()["error"] == "too_short"
