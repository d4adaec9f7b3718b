"""Music-like attack carriers, synthesized offline (paper 003 attacks music carriers too)."""

from __future__ import annotations

import numpy as np


def music_carriers(
    n: int, seed: int = 0, seconds: float = 3.0, sample_rate: int = 16000
) -> list[np.ndarray]:
    """Music-like clips: chords of harmonic notes with decaying envelopes, plus hi-hat noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    clips = []
    for _ in range(n):
        wave = np.zeros_like(t)
        beat = 60.0 / rng.uniform(90, 140)
        for start in np.arange(0.0, seconds, beat):
            root = 110.0 * 2 ** (rng.integers(0, 24) / 12)
            envelope = np.where(t >= start, np.exp(-(t - start) * 3.0), 0.0)
            for interval in (0, 4, 7):
                f = root * 2 ** (interval / 12)
                wave += envelope * sum(np.sin(2 * np.pi * f * h * t) / h for h in range(1, 5))
            hat = np.where((t >= start) & (t < start + 0.03), rng.standard_normal(t.size), 0.0)
            wave += 0.3 * hat
        clips.append((0.5 * wave / np.abs(wave).max()).astype(np.float32))
    return clips
