"""Audio reading, resampling and per-file validation (soundfile for I/O, soxr for resampling)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from voxaudit.files import write_atomically


class AudioError(ValueError):
    """An audio file or array cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class AudioLimits:
    """What counts as usable audio. Clipping is reported as a warning; the rest exclude the file."""

    min_duration: float = 0.1
    max_duration: float = 60.0
    silence_peak: float = 1e-4  # peak amplitude below this is treated as digital silence
    clip_level: float = 0.999
    clip_fraction: float = 0.01  # share of samples at the clip level that flags clipping


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: str | Path) -> AudioInfo:
    """Header information of an audio file; raises AudioError if it cannot be read."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError or TypeError
        raise AudioError(f"{path}: unreadable audio ({_short(exc)})") from exc
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a file as mono float32, optionally a [start, end) segment in seconds and resampled."""
    try:
        with sf.SoundFile(str(path)) as f:
            rate = int(f.samplerate)
            first = round(start * rate)
            f.seek(first)
            frames = -1 if end is None else max(0, round(end * rate) - first)
            samples = f.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: unreadable audio ({_short(exc)})") from exc
    mono = to_mono(samples)
    if sample_rate is not None and sample_rate != rate:
        return resample(mono, rate, sample_rate), sample_rate
    return mono, rate


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels (shape ``[frames, channels]`` or ``[frames]``) into float32 mono."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling with libsoxr's high-quality filter."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    if from_rate <= 0 or to_rate <= 0:
        raise AudioError(f"invalid sample rates {from_rate} -> {to_rate}")
    return soxr.resample(np.asarray(samples, dtype=np.float32), from_rate, to_rate, "HQ")


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit PCM WAV atomically (a reader never sees a half-written file)."""
    path = Path(path)
    clipped = np.clip(samples, -1.0, 1.0)
    write_atomically(
        path, lambda f: sf.write(f, clipped, sample_rate, subtype="PCM_16", format="WAV")
    )


def audio_problems(
    samples: np.ndarray, sample_rate: int, limits: AudioLimits = AudioLimits()
) -> list[tuple[str, str]]:
    """Problems with decoded audio as ``(severity, reason)``; severity is "error" or "warning"."""
    duration = len(samples) / sample_rate if sample_rate else 0.0
    if len(samples) == 0:
        return [("error", "empty (no samples)")]
    if not np.isfinite(samples).all():
        return [("error", "contains NaN or infinite samples")]
    problems: list[tuple[str, str]] = []
    peak = float(np.abs(samples).max())
    if peak < limits.silence_peak:
        problems.append(("error", f"all silent (peak {peak:.1e})"))
    if duration < limits.min_duration:
        problems.append(("error", f"too short ({duration:.3f} s < {limits.min_duration} s)"))
    if duration > limits.max_duration:
        problems.append(("error", f"too long ({duration:.1f} s > {limits.max_duration} s)"))
    clipped = float(np.mean(np.abs(samples) >= limits.clip_level))
    if clipped > limits.clip_fraction:
        problems.append(("warning", f"clipped ({clipped:.1%} of samples at full scale)"))
    return problems


def _short(exc: Exception) -> str:
    """libsndfile's reason without the path it repeats ("Error opening '...': ")."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^Error opening .*?: ", "", lines[-1]) if lines else ""
    return text or type(exc).__name__
