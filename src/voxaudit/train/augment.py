"""Training-time augmentation as input transforms for the training loop (hook ``transform``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from voxaudit.data.features import Batch


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
