"""Helpers the guard tests share."""

from __future__ import annotations

import numpy as np


def with_noise(clip: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``clip`` plus white noise at ``snr_db`` below its power."""
    power = float(np.mean(clip.astype(np.float64) ** 2))
    noise = rng.standard_normal(clip.size) * np.sqrt(power / 10 ** (snr_db / 10))
    return (clip + noise).astype(np.float32)
