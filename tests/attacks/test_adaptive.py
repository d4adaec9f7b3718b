"""The adaptive attacker's query transforms: each does what it says, within its bounds, and
together they break the landmark matches a stateful detector relies on."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from voxaudit.attacks.adaptive import EvasionDraw, QueryEvasion
from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.guard.detectors import IndexDetector
from voxaudit.guard.fingerprint import Fingerprinter, add_noise

RATE = 16000
OFF = {"pitch_shift": None, "tempo_change": None, "crop_s": None, "offset_s": None}
OFF |= {"gain_db": None, "tones": 0}


def only(**on) -> QueryEvasion:
    """An evasion with every transform off but ``on``."""
    return QueryEvasion(**(OFF | on))


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(wave: np.ndarray) -> float:
    """The strongest frequency, from a zero-padded FFT (0.25 Hz bins)."""
    size = 4 * RATE
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size), size))
    return float(np.argmax(spectrum)) * RATE / size


def rms_db(wave: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(wave, dtype=np.float64)))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """One synthetic utterance (~2.5 s at 16 kHz)."""
    return synthesize_corpus_in_memory(1, 1, seed=5).utterances[0].samples


def test_the_default_evasion_returns_float32_mono_of_about_the_same_length(clip):
    evasion = QueryEvasion()
    rng = np.random.default_rng(0)
    for _ in range(3):
        out = evasion(clip, rng)
        assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all()
        # Tempo at most 4% either way, at most 50 ms cut per end, at most 100 ms put in front.
        assert clip.size / 1.04 - 0.1 * RATE - 2 <= out.size <= clip.size / 0.96 + 0.1 * RATE + 2


def test_tempo_changes_the_length_by_the_drawn_share(clip):
    evasion = only(tempo_change=(0.01, 0.04))
    for seed in range(3):
        draw = evasion.draw(np.random.default_rng(seed))
        assert 0.01 <= abs(draw.tempo) <= 0.04 and draw.pitch == 0
        out = evasion.apply(clip, draw)
        assert abs(out.size - clip.size / (1 + draw.tempo)) <= 2


def test_cropping_and_offset_cut_the_ends_and_put_silence_in_front(clip):
    evasion = only(crop_s=0.05, offset_s=0.1)
    draw = evasion.draw(np.random.default_rng(1))
    start, end, offset = (
        round(draw.crop_start_s * RATE),
        round(draw.crop_end_s * RATE),
        round(draw.offset_s * RATE),
    )
    assert 0 < start <= 0.05 * RATE and 0 < end <= 0.05 * RATE and 0 < offset <= 0.1 * RATE
    out = evasion.apply(clip, draw)
    assert out.size == clip.size - start - end + offset
    assert not out[:offset].any()
    np.testing.assert_array_equal(out[offset:], clip[start : clip.size - end])


def test_gain_changes_the_rms_by_the_drawn_db():
    wave = tone(440.0, amplitude=0.1)
    evasion = only(gain_db=6.0)
    draws = [evasion.draw(np.random.default_rng(seed)) for seed in range(5)]
    assert all(abs(d.gain_db) <= 6.0 for d in draws)
    assert len({np.sign(d.gain_db) for d in draws}) == 2  # up and down
    for draw in draws:
        out = evasion.apply(wave, draw)
        assert rms_db(out) - rms_db(wave) == pytest.approx(draw.gain_db, abs=0.01)


def test_pitch_shift_moves_a_tone_by_one_to_three_percent_and_keeps_its_length():
    wave = tone(1000.0)
    evasion = only(pitch_shift=(0.01, 0.03))
    signs = set()
    for seed in range(4):
        draw = evasion.draw(np.random.default_rng(seed))
        out = evasion.apply(wave, draw)
        assert out.size == wave.size
        shift = peak_hz(out) / peak_hz(wave) - 1
        assert 0.01 - 0.002 <= abs(shift) <= 0.03 + 0.002
        assert shift == pytest.approx(draw.pitch, abs=0.002)
        signs.add(np.sign(shift))
    assert signs == {-1.0, 1.0}


def test_tones_add_energy_at_new_frequencies_below_the_clip_level():
    wave = tone(200.0)
    evasion = only(tones=3, tone_db=-20.0, tone_band=(300.0, 3500.0))
    draw = evasion.draw(np.random.default_rng(2))
    assert len(draw.tone_hz) == 3 and all(300 <= hz <= 3500 for hz in draw.tone_hz)
    out = evasion.apply(wave, draw)
    size = 4 * RATE
    before = np.abs(np.fft.rfft(wave * np.hanning(wave.size), size))
    after = np.abs(np.fft.rfft(out * np.hanning(out.size), size))
    for hz in draw.tone_hz:
        near = slice(round((hz - 5) * size / RATE), round((hz + 5) * size / RATE))
        assert after[near].max() > 100 * before[near].max()
    # Three tones, each 20 dB under the clip: together ~15 dB under it.
    added = out - wave
    assert rms_db(added) - rms_db(wave) == pytest.approx(-20 + 10 * np.log10(3), abs=1.0)


def test_tone_bursts_last_their_length():
    wave = tone(200.0)
    evasion = only(tones=1, tone_burst_s=0.1)
    added = evasion(wave, np.random.default_rng(0)) - wave
    assert 0.08 * RATE < np.count_nonzero(np.abs(added) > 1e-6) <= 0.1 * RATE


@pytest.mark.parametrize(
    "evasion", [QueryEvasion(strength=0.0), only(), QueryEvasion(tones=0, strength=0.0)]
)
def test_strength_zero_or_nothing_enabled_returns_the_input_unchanged(evasion, clip):
    assert not evasion.enabled
    out = evasion(clip, np.random.default_rng(0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, clip)
    assert evasion.draw(np.random.default_rng(0)) == EvasionDraw()


def test_a_seed_repeats_the_query_and_another_seed_does_not(clip):
    evasion = QueryEvasion()
    first = evasion(clip, np.random.default_rng(3))
    np.testing.assert_array_equal(first, evasion(clip, np.random.default_rng(3)))
    other = evasion(clip, np.random.default_rng(4))
    assert other.size != first.size or not np.array_equal(other, first)


def test_escalated_scales_every_magnitude():
    base = QueryEvasion(tone_burst_s=0.2)
    stronger = base.escalated(2.0)
    assert stronger.strength == 2.0 and base.strength == 1.0
    weak, strong = (e.draw(np.random.default_rng(7)) for e in (base, stronger))
    for name in ("pitch", "tempo", "crop_start_s", "crop_end_s", "offset_s", "gain_db"):
        assert getattr(strong, name) == pytest.approx(2 * getattr(weak, name))
    assert strong.tone_amplitude == pytest.approx(2 * weak.tone_amplitude)
    assert strong.tone_hz == weak.tone_hz
    # However far it escalates, pitch and tempo changes stay capped at 50%.
    huge = base.escalated(1000.0).draw(np.random.default_rng(7))
    assert abs(huge.pitch) == abs(huge.tempo) == 0.5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pitch_shift": (0.03, 0.01)},
        {"tempo_change": (0.0, 1.5)},
        {"crop_s": -0.1},
        {"gain_db": float("nan")},
        {"tones": -1},
        {"tone_band": (300.0, 9000.0)},
        {"strength": -1.0},
    ],
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(VoxauditError, match=next(iter(kwargs))):
        QueryEvasion(**kwargs)


def test_bad_waves_and_factors_are_refused():
    evasion = QueryEvasion()
    with pytest.raises(VoxauditError, match="1-D"):
        evasion(np.zeros((2, 100), np.float32), np.random.default_rng(0))
    with pytest.raises(VoxauditError, match="NaN"):
        evasion(np.full(100, np.nan, np.float32), np.random.default_rng(0))
    with pytest.raises(VoxauditError, match="factor"):
        evasion.escalated(0.0)


def test_a_missing_librosa_is_one_clear_error(monkeypatch, clip):
    monkeypatch.setitem(sys.modules, "librosa", None)  # import librosa raises ImportError
    with pytest.raises(VoxauditError, match=r"pip install 'voxaudit\[adaptive\]'"):
        only(pitch_shift=(0.01, 0.03))(clip, np.random.default_rng(0))
    # The transforms that need no librosa still run without it.
    assert only(gain_db=6.0, tones=2)(clip, np.random.default_rng(0)).size == clip.size


@settings(max_examples=40, deadline=None)
@given(
    wave=arrays(
        np.float32,
        st.integers(1, 3000),
        elements=st.floats(-1.0, 1.0, width=32),
    ),
    seed=st.integers(0, 2**32 - 1),
    strength=st.sampled_from([0.5, 1.0, 4.0]),
)
def test_any_short_wave_stays_finite_and_within_full_scale(wave, seed, strength):
    out = QueryEvasion(strength=strength, tone_burst_s=0.05)(wave, np.random.default_rng(seed))
    assert out.dtype == np.float32 and out.ndim == 1 and out.size > 0
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0


def test_evaded_copies_share_far_fewer_landmarks_than_noisy_copies(clip):
    fingerprinter = Fingerprinter()
    rng = np.random.default_rng(0)
    noisy = [add_noise(clip, 30.0, rng) for _ in range(5)]
    evasion = QueryEvasion()
    evaded = [evasion(clip, rng) for _ in range(5)]

    def share(waves: list[np.ndarray]) -> float:
        """Of the first copy's hashes, the mean share another copy matches at one offset."""
        prints = [fingerprinter(w) for w in waves]
        first = prints[0]
        return float(np.mean([first.matches(p) / first.hashes.size for p in prints[1:]]))

    def last_score(waves: list[np.ndarray]) -> float:
        """The index detector's score for the last of the copies, all from one account."""
        detector = IndexDetector()
        scores = [
            detector.check("a", fingerprinter(w), float(i)).score for i, w in enumerate(waves)
        ]
        return scores[-1]

    noisy_share, evaded_share = share(noisy), share(evaded)
    assert noisy_share > 0.5
    assert evaded_share < 0.5 * noisy_share
    # Noisy copies: the fifth matches all four before it; evaded copies are new variants.
    assert last_score(noisy) == 4.0
    assert last_score(evaded) <= 1.0
