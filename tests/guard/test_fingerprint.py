"""Landmark fingerprints: robust to small noise, distinct across utterances."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from voxaudit.data.synth import synthesize_corpus_in_memory
from voxaudit.errors import VoxauditError
from voxaudit.guard.fingerprint import Fingerprinter, landmark_matches

from .helpers import with_noise

FP = Fingerprinter()


@functools.cache
def clips() -> list[np.ndarray]:
    corpus = synthesize_corpus_in_memory(n_speakers=5, per_speaker=2, seed=3)
    return [u.samples for u in corpus.utterances]


@settings(max_examples=20, deadline=None)
@given(
    index=st.integers(0, 9),
    snr_db=st.floats(30.0, 70.0),
    gain=st.floats(0.1, 2.0),
    seed=st.integers(0, 2**16),
)
def test_a_clip_and_its_noisy_copy_match_strongly(index, snr_db, gain, seed):
    clip = clips()[index]
    clean, noisy = FP(clip), FP(gain * with_noise(clip, snr_db, np.random.default_rng(seed)))
    assert clean.cosine(noisy) >= 0.7
    # Most landmarks survive, all at one time offset.
    assert clean.matches(noisy) >= 0.4 * clean.hashes.size


@settings(max_examples=20, deadline=None)
@given(pair=st.lists(st.integers(0, 9), min_size=2, max_size=2, unique=True))
def test_different_utterances_do_not_match(pair):
    first, second = (FP(clips()[i]) for i in pair)
    assert first.cosine(second) < 0.4
    assert first.matches(second) <= 0.05 * min(first.hashes.size, second.hashes.size)


def test_match_is_at_the_shared_offset():
    clip = clips()[0]
    shift_frames = 20
    shifted = np.concatenate([np.zeros(shift_frames * FP.hop, np.float32), clip])
    a, b = FP(clip), FP(shifted)
    assert a.matches(b) >= 0.8 * a.hashes.size
    # Shared hashes count only at one offset: with b's anchor times scrambled, few do.
    scrambled_times = np.random.default_rng(0).permutation(b.times)
    assert landmark_matches(a.hashes, a.times, b.hashes, scrambled_times) < a.matches(b) / 2


def test_spectrogram_is_scipy_stft():
    clip = clips()[1].astype(np.float64)
    _, _, spec = signal.stft(
        clip,
        nperseg=FP.n_fft,
        noverlap=FP.n_fft - FP.hop,
        window="hann",
        boundary=None,
        padded=False,
    )
    # scipy scales by the window's sum; the peaks do not care about a constant factor.
    expected = (
        np.abs(spec).T[:, : FP.spectrogram(clip).shape[1]] * np.hanning(FP.n_fft + 1)[:-1].sum()
    )
    np.testing.assert_allclose(FP.spectrogram(clip), expected, rtol=1e-3, atol=1e-4)


def test_peaks_respect_the_amplitude_floor_and_neighbourhood():
    clip = clips()[2]
    freqs, frames = FP.peaks(clip.astype(np.float64))
    magnitude = FP.spectrogram(clip.astype(np.float64))
    values = magnitude[frames, freqs]
    assert values.min() > magnitude.max() * 10 ** (-FP.floor_db / 20)
    assert np.all(np.diff(frames) >= 0)
    # No two peaks closer than the filter neighbourhood in both axes.
    df = np.abs(freqs[:, None] - freqs[None, :])
    dt = np.abs(frames[:, None] - frames[None, :])
    close = (df <= FP.neighborhood[0] // 2) & (dt <= FP.neighborhood[1] // 2)
    np.fill_diagonal(close, False)
    assert not close.any()


def test_silence_has_no_landmarks_and_a_zero_vector():
    fingerprint = FP(np.zeros(16000, np.float32))
    assert fingerprint.hashes.size == 0 and not fingerprint.vector.any()
    assert fingerprint.cosine(FP(clips()[0])) == 0.0


@pytest.mark.parametrize(
    ("wave", "rate", "field"),
    [
        (np.zeros(0, np.float32), None, "waveform"),
        (np.zeros((2, 100), np.float32), None, "waveform"),
        (np.full(1000, np.nan, np.float32), None, "waveform"),
        (np.zeros(1000, np.float32), 8000, "sample_rate"),
    ],
)
def test_bad_input_names_the_field(wave, rate, field):
    with pytest.raises(VoxauditError, match=field):
        FP(wave, rate)


@settings(max_examples=10, deadline=None)
@given(index=st.integers(0, 9), seed=st.integers(0, 2**16))
def test_the_robust_variant_keeps_copies_alike_and_utterances_apart(index, seed):
    """Paper 003's robust variant: noise at 25-75 dB before fingerprinting, fresh per query."""
    robust = Fingerprinter(noise_snr_db=(25.0, 75.0), seed=seed)
    first, second = robust(clips()[index]), robust(clips()[index])
    assert first.cosine(second) >= 0.7
    assert first.matches(second) >= 0.4 * FP(clips()[index]).hashes.size
    other = robust(clips()[(index + 1) % 10])
    assert first.cosine(other) < 0.4


def test_the_robust_variant_is_seeded_and_draws_fresh_noise_per_query():
    clip = clips()[4]
    one, two = (Fingerprinter(noise_snr_db=(25.0, 25.0), seed=7) for _ in range(2))
    first = one(clip)
    np.testing.assert_array_equal(first.vector, two(clip).vector)
    assert not np.array_equal(first.vector, one(clip).vector)  # the next query, new noise
    assert Fingerprinter().noise_snr_db is None


@pytest.mark.parametrize("noise", [(75.0, 25.0), (25.0,), (25.0, float("nan"))])
def test_the_robust_variant_refuses_a_bad_range(noise):
    with pytest.raises(VoxauditError, match="noise_snr_db"):
        Fingerprinter(noise_snr_db=noise)
