"""Training-time augmentation as input transforms for the training loop (hook ``transform``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from voxaudit.data.features import Batch, hz_to_mel, mel_to_hz


@dataclass(frozen=True)
class SpecAugment:
    """SpecAugment (Park et al. 2019) without time warping: random frequency and time masks.

    Masked cells take the utterance's mean feature value, which per-utterance normalization
    maps to zero. Time masks are at most ``time_width`` of each utterance's own length; padding
    is left alone. Draws come from torch's global generator, which the training loop seeds and
    checkpoints, so an augmented run still resumes exactly.
    """

    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: float = 0.05

    def transform(self, model: nn.Module, batch: Batch) -> Batch:
        features, lengths = batch.features, batch.lengths
        n, steps, bins = features.shape
        valid = batch.mask
        mean = (features * valid[..., None]).sum(1) / lengths.clamp(min=1)[:, None]
        device = features.device
        freq = torch.arange(bins, device=device)
        time = torch.arange(steps, device=device)
        hide = torch.zeros(n, steps, bins, dtype=torch.bool, device=device)
        for _ in range(self.freq_masks):
            width = torch.randint(0, self.freq_width + 1, (n,), device=device).clamp(max=bins)
            start = (torch.rand(n, device=device) * (bins - width + 1)).long()
            hide |= ((freq >= start[:, None]) & (freq < (start + width)[:, None]))[:, None, :]
        for _ in range(self.time_masks):
            width = (torch.rand(n, device=device) * self.time_width * lengths).long()
            start = (torch.rand(n, device=device) * (lengths - width + 1)).long()
            hide |= ((time >= start[:, None]) & (time < (start + width)[:, None]))[:, :, None]
        hide &= valid[..., None]
        masked = torch.where(hide, mean[:, None, :].expand_as(features), features)
        return replace(batch, features=masked)


@dataclass(frozen=True)
class VocalTractWarp:
    """Vocal tract length perturbation (VTLP, Jaitly & Hinton 2013) on log-mel features.

    Each utterance's spectrum is warped as ``S'(f) = S(f / alpha)``, ``alpha`` drawn uniformly
    from ``[low, high]``: formants move as if a shorter (alpha > 1) or longer vocal tract spoke,
    which makes new voices out of the training voices. Mel bins are resampled by linear
    interpolation between the bins' centre frequencies (edges repeat), which needs the model's
    ``front_end`` (a ``LogMel``). Hand-written: torchaudio and audiomentations warp waveforms or
    linear spectrograms, not features already on the mel scale. Draws use torch's global
    generator, so a run resumes exactly.
    """

    low: float = 0.9
    high: float = 1.1

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"VocalTractWarp needs 0 < low <= high, got {self.low}, {self.high}")

    def transform(self, model: nn.Module, batch: Batch) -> Batch:
        front_end = model.front_end
        features = batch.features
        n, _, bins = features.shape
        mel = torch.linspace(
            float(hz_to_mel(front_end.f_min)), float(hz_to_mel(front_end.f_max)), bins + 2,
            dtype=torch.float64,
        )[1:-1]  # fmt: skip
        centres = torch.as_tensor(mel_to_hz(mel.numpy()))
        alpha = self.low + (self.high - self.low) * torch.rand(n, dtype=torch.float64)
        source = torch.as_tensor(hz_to_mel((centres[None, :] / alpha[:, None]).numpy()))
        position = ((source - mel[0]) / (mel[1] - mel[0])).clamp(0, bins - 1)
        below = position.floor().long().clamp(max=bins - 2)
        weight = (position - below).to(features.dtype).to(features.device)
        below = below.to(features.device)[:, None, :].expand(n, features.shape[1], bins)
        lower = features.gather(2, below)
        upper = features.gather(2, below + 1)
        warped = lower + weight[:, None, :] * (upper - lower)
        return replace(batch, features=torch.where(batch.mask[..., None], warped, features))
