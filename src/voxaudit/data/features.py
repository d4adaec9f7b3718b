"""Log-mel features in plain torch, an on-disk feature cache and batch padding.

The mel filterbank is written out here rather than taken from torchaudio: torchaudio is not a
dependency (its wheels pin exact torch versions), and the filterbank is a few lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from voxaudit.data.corpus import Utterance
from voxaudit.files import write_atomically

#: Bumped whenever the computation changes, so cached features from older code are not reused.
FEATURES_VERSION = 1

Count = TypeVar("Count", int, torch.Tensor)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of ``hz_to_mel``."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int,
    sample_rate: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    slaney_norm: bool = False,
) -> torch.Tensor:
    """Triangular filters ``[n_freqs, n_mels]`` on the HTK mel scale, for a one-sided spectrum.

    Filter m rises from edge m to its centre m + 1 and falls to edge m + 2, the edges equally
    spaced in mel between ``f_min`` and ``f_max``. ``slaney_norm`` scales each filter to unit
    area (2 / bandwidth in Hz) so that wide high bands do not dominate.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2} Hz; got {f_min}, {f_max}")
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)  # [n_mels, n_freqs]
    if slaney_norm:
        weights *= 2.0 / (upper - lower)
    empty = np.flatnonzero(weights.max(axis=1) == 0)
    if len(empty):
        raise ValueError(
            f"mel filter(s) {empty.tolist()} cover no FFT bin: use fewer mels than {n_mels} "
            f"or a larger n_fft than {2 * (n_freqs - 1)}"
        )
    return torch.from_numpy(weights.T.astype(np.float32))


class LogMel(nn.Module):
    """Waveform ``[B, N]`` to log-mel features ``[B, T, n_mels]``; ``[N]`` gives ``[T, n_mels]``."""

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        win_length: int = 400,
        n_mels: int = 80,
        f_min: float = 20.0,
        f_max: float | None = None,
        log_floor: float = 1e-6,
        slaney_norm: bool = False,
    ) -> None:
        super().__init__()
        if not 0 < win_length <= n_fft:
            raise ValueError(f"need 0 < win_length <= n_fft; got {win_length}, {n_fft}")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = sample_rate / 2 if f_max is None else f_max
        self.log_floor = log_floor
        self.slaney_norm = slaney_norm
        fbank = mel_filterbank(n_fft // 2 + 1, sample_rate, n_mels, f_min, self.f_max, slaney_norm)
        # Not persistent: both follow from the parameters, so checkpoints need not carry them.
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("fbank", fbank, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log mel power spectrum, one frame per ``hop_length`` samples (centred frames)."""
        batched = waveform.dim() == 2
        if not batched and waveform.dim() != 1:
            raise ValueError(
                f"expected a waveform [N] or [B, N]; got shape {tuple(waveform.shape)}"
            )
        spec = torch.stft(
            waveform.to(self.window.dtype),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="constant",  # zero padding, unlike "reflect", works for clips of any length
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # [B, F, T] or [F, T]
        mel = power.transpose(-1, -2) @ self.fbank
        return torch.log(torch.clamp_min(mel, self.log_floor))

    def frame_lengths(self, num_samples: Count) -> Count:
        """Frames ``forward`` gives for waveforms of these lengths (an int or a tensor of them)."""
        return num_samples // self.hop_length + 1

    def params(self) -> dict[str, Any]:
        """Everything that determines the output, for cache keys and checkpoints."""
        return {
            "kind": "logmel",
            "version": FEATURES_VERSION,
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "win_length": self.win_length,
            "n_mels": self.n_mels,
            "f_min": float(self.f_min),
            "f_max": float(self.f_max),
            "log_floor": float(self.log_floor),
            "slaney_norm": self.slaney_norm,
        }

    def extra_repr(self) -> str:
        """The parameters, for ``print(module)``."""
        return ", ".join(f"{k}={v}" for k, v in self.params().items() if k != "kind")


class FeatureCache:
    """Features of utterances computed once and kept as ``<dir>/<key[:2]>/<key>.npy``.

    The key hashes the resampled audio and the extractor's parameters, so editing a file or
    changing a parameter can never return stale features.
    """

    def __init__(self, directory: str | Path, extractor: LogMel) -> None:
        self.directory = Path(directory)
        self.extractor = extractor
        self._params = json.dumps(extractor.params(), sort_keys=True).encode()

    def key(self, samples: np.ndarray) -> str:
        """Cache key of these samples under this extractor."""
        h = hashlib.sha256(self._params)
        h.update(np.ascontiguousarray(samples, dtype=np.float32).tobytes())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        """Where the features with this key are kept."""
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, utterance: Utterance) -> torch.Tensor:
        """Features ``[T, n_mels]`` (float32, on the CPU) of one utterance, from cache if there."""
        samples = utterance.load(self.extractor.sample_rate)
        path = self.path(self.key(samples))
        cached = self._read(path)
        if cached is not None:
            return torch.from_numpy(cached)
        features = self._compute(samples)
        self._write(path, features)
        return torch.from_numpy(features)

    def get_many(
        self, utterances: Iterable[Utterance], progress: bool = False
    ) -> list[torch.Tensor]:
        """Features of each utterance, in order."""
        from voxaudit.progress import track

        return [self.get(u) for u in track(utterances, "features", enabled=progress)]

    def _compute(self, samples: np.ndarray) -> np.ndarray:
        """Run the extractor on its own device and bring float32 features back to the CPU."""
        device = self.extractor.window.device
        with torch.no_grad():
            features = self.extractor(torch.from_numpy(samples).to(device))
        return features.cpu().numpy().astype(np.float32, copy=False)

    def _read(self, path: Path) -> np.ndarray | None:
        """The cached array, or None when absent or unreadable (it is then recomputed)."""
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if features.ndim != 2 or features.shape[1] != self.extractor.n_mels:
            return None
        return features

    def _write(self, path: Path, features: np.ndarray) -> None:
        """Write atomically, so a crash or a parallel writer never leaves half a file."""
        write_atomically(path, lambda f: np.save(f, features))


@dataclass(frozen=True)
class Batch:
    """Zero-padded features ``[B, T_max, F]`` with true lengths, and optional targets."""

    features: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None = None  # [B] labels, or [B, S_max] zero-padded sequences
    target_lengths: torch.Tensor | None = None  # [B] for sequence targets, else None

    @property
    def mask(self) -> torch.Tensor:
        """Bool ``[B, T_max]``: True on real frames, False on padding."""
        steps = torch.arange(self.features.shape[1], device=self.lengths.device)
        return steps[None, :] < self.lengths[:, None]

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return Batch(
            self.features.to(device),
            self.lengths.to(device),
            move(self.targets),
            move(self.target_lengths),
        )


def collate(
    features: Sequence[torch.Tensor],
    targets: Sequence[int | Sequence[int] | torch.Tensor] | None = None,
) -> Batch:
    """Pad ``[T_i, F]`` features into a Batch; targets are labels or token sequences (e.g. CTC)."""
    if not features:
        raise ValueError("cannot collate an empty list of features")
    lengths = torch.tensor([f.shape[0] for f in features], dtype=torch.long)
    padded = nn.utils.rnn.pad_sequence(list(features), batch_first=True)
    if targets is None:
        return Batch(padded, lengths)
    if len(targets) != len(features):
        raise ValueError(f"{len(features)} feature arrays but {len(targets)} targets")
    tensors = [torch.as_tensor(t, dtype=torch.long) for t in targets]
    if all(t.dim() == 0 for t in tensors):
        return Batch(padded, lengths, torch.stack(tensors))
    target_lengths = torch.tensor([len(t) for t in tensors], dtype=torch.long)
    return Batch(
        padded, lengths, nn.utils.rnn.pad_sequence(tensors, batch_first=True), target_lengths
    )
