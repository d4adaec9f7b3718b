import numpy as np
import pytest

from tests.audio_fixtures import tone, write_wav
from voxaudit.data.audio import (
    AudioError,
    AudioLimits,
    audio_info,
    audio_problems,
    read_audio,
    resample,
    write_audio,
)


def test_read_audio_downmixes_and_resamples(tmp_path):
    stereo = np.stack([tone(1.0, 8000), tone(1.0, 8000, freq=330)], axis=1)
    path = write_wav(tmp_path / "s.wav", stereo, rate=8000)
    samples, rate = read_audio(path, sample_rate=16000)
    assert rate == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 16000) <= 1


def test_read_audio_segment(tmp_path):
    path = write_wav(tmp_path / "s.wav", tone(2.0))
    samples, _ = read_audio(path, start=0.5, end=1.25)
    assert len(samples) == 12000


def test_resampler_keeps_passband_and_rejects_aliases():
    rate = 16000
    t = np.arange(rate) / rate
    low = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    high = np.sin(2 * np.pi * 7000 * t).astype(np.float32)  # a naive decimator folds it to 1 kHz
    assert np.abs(resample(low, rate, 8000)[100:-100]).max() > 0.95
    assert np.abs(resample(high, rate, 8000)[100:-100]).max() < 0.01


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioError, match=r"bad\.wav: unreadable audio"):
        audio_info(bad)
    with pytest.raises(AudioError, match=r"bad\.wav"):
        read_audio(bad)


def test_write_audio_is_atomic_and_round_trips(tmp_path):
    path = tmp_path / "out.wav"
    write_audio(path, tone(0.3), 16000)
    assert list(tmp_path.iterdir()) == [path]
    samples, rate = read_audio(path)
    assert rate == 16000 and np.allclose(samples, tone(0.3), atol=1e-4)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(16000, np.float32), "all silent"),
        (np.array([0.1, np.nan] * 8000, np.float32), "NaN"),
        (tone(0.05), "too short"),
        (np.clip(tone(1.0) * 10, -1, 1), "clipped"),
    ],
)
def test_audio_problems(samples, expected):
    found = audio_problems(samples, 16000)
    assert any(expected in reason for _, reason in found), found


def test_audio_problems_too_long_and_clean():
    assert audio_problems(tone(1.0), 16000) == []
    limits = AudioLimits(max_duration=0.5)
    assert audio_problems(tone(1.0), 16000, limits) == [("error", "too long (1.0 s > 0.5 s)")]
    assert audio_problems(np.clip(tone(1.0) * 10, -1, 1), 16000)[0][0] == "warning"
