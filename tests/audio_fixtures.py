"""Tiny audio that the tests write themselves, so the suite runs anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone(seconds: float = 0.5, rate: int = 16000, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A voiced-sounding test clip: a harmonic tone with a little noise, peak about 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 5))
    wave = wave + 0.05 * rng.standard_normal(len(t))
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray | None = None, rate: int = 16000, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(rate=rate, **kw) if samples is None else samples, rate)
    return path
