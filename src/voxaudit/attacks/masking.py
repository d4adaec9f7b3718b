"""A simplified psychoacoustic masking threshold, for IRTA-like attacks (Qin et al. 2019).

Qin et al. hide the perturbation under the carrier: per STFT frame, its power spectral density
(PSD) must stay below a global masking threshold computed from the carrier with the MPEG-1
psychoacoustic model 1. This module keeps the shape of that model and simplifies it:

- PSDs are normalized as Qin et al. do: the carrier's loudest STFT point is set to 96 dB SPL
  and the perturbation is measured on the same scale, so the threshold does not depend on gain;
- every carrier bin is a masker (no tonal / non-tonal classification, no masker decimation):
  the carrier's power is spread along the Bark scale with Schroeder's spreading function
  (about +25 dB per Bark below a masker, -10 dB per Bark above) and summed;
- one masking index for all maskers: the threshold lies ``offset_db`` below that spread
  spectrum (model 1 uses 6-10 dB depending on the masker's kind and band);
- the absolute threshold of hearing (Terhardt's formula) is the floor.

``penalty`` is Qin et al.'s imperceptibility loss: the mean over STFT cells of how far, in dB,
the perturbation's PSD exceeds the threshold (zero below it), differentiable in torch.
"""

from __future__ import annotations

import numpy as np
import torch

SPL_MAX_DB = 96.0  # the level the carrier's loudest point is set to (Qin et al., MPEG model 1)


def bark(frequency_hz: np.ndarray) -> np.ndarray:
    """Zwicker's critical-band rate (Bark) of each frequency."""
    f = np.asarray(frequency_hz, dtype=np.float64)
    return 13.0 * np.arctan(0.00076 * f) + 3.5 * np.arctan((f / 7500.0) ** 2)


def absolute_threshold_db(frequency_hz: np.ndarray) -> np.ndarray:
    """Terhardt's absolute threshold of hearing in dB SPL (frequencies clamped to >= 20 Hz,
    where the formula diverges)."""
    khz = np.maximum(np.asarray(frequency_hz, dtype=np.float64), 20.0) / 1000.0
    return 3.64 * khz**-0.8 - 6.5 * np.exp(-0.6 * (khz - 3.3) ** 2) + 1e-3 * khz**4


def spreading_db(dz: np.ndarray) -> np.ndarray:
    """Schroeder's spreading function: the masking a masker casts ``dz`` Bark away (0 at 0)."""
    shifted = np.asarray(dz, dtype=np.float64) + 0.474
    return 15.81 + 7.5 * shifted - 17.5 * np.sqrt(1.0 + shifted**2)


class MaskingModel:
    """The carrier-dependent masking threshold and a perturbation's PSD on the same scale.

    STFT of ``n_fft`` samples every ``hop`` with a Hann window, as Qin et al.'s 2048 / 512 at
    16 kHz scaled down to the 512-sample frames the rest of the guard uses.
    """

    def __init__(
        self, sample_rate: int = 16000, n_fft: int = 512, hop: int = 128, offset_db: float = 10.0
    ) -> None:
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop = hop
        self.offset_db = offset_db
        frequencies = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
        z = bark(frequencies)
        # spread[i, j]: the share of masker j's power that masks bin i.
        self._spread = 10.0 ** (spreading_db(z[:, None] - z[None, :]) / 10.0)
        self._floor_db = absolute_threshold_db(frequencies)
        self._window = torch.hann_window(n_fft, dtype=torch.float64)

    def psd_db(self, wave: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[frames, bins]`` PSD in dB, before normalization (``10 log10 |STFT / n_fft|^2``)."""
        x = torch.as_tensor(wave, dtype=torch.float64)
        if x.numel() < self.n_fft:  # one frame at least, as the guard's fingerprints pad too
            x = torch.nn.functional.pad(x, (0, self.n_fft - x.numel()))
        spectrum = torch.stft(
            x, self.n_fft, self.hop, window=self._window, center=False, return_complex=True
        ).T
        power = spectrum.abs().square() / self.n_fft**2
        return 10.0 * torch.log10(power + 1e-20)

    def threshold(self, carrier: np.ndarray) -> tuple[np.ndarray, float]:
        """The masking threshold ``[frames, bins]`` in dB SPL, and the shift (dB) that puts any
        PSD of this carrier's STFT on that scale."""
        psd = self.psd_db(carrier).numpy()
        shift = SPL_MAX_DB - float(psd.max())
        spread = (10.0 ** ((psd + shift) / 10.0)) @ self._spread.T
        masked = 10.0 * np.log10(spread + 1e-20) - self.offset_db
        return np.maximum(masked, self._floor_db[None, :]), shift

    def penalty(self, delta: torch.Tensor, threshold: np.ndarray, shift: float) -> torch.Tensor:
        """Mean dB by which ``delta``'s PSD exceeds ``threshold`` (Qin et al.'s l_theta)."""
        excess = self.psd_db(delta) + shift - torch.as_tensor(threshold)
        return torch.relu(excess).mean()

    def penalty_gradient(
        self, delta: np.ndarray, threshold: np.ndarray, shift: float
    ) -> np.ndarray:
        """d(penalty) / d(delta), as a float32 array like ``delta``."""
        x = torch.as_tensor(np.asarray(delta), dtype=torch.float64).requires_grad_(True)
        (gradient,) = torch.autograd.grad(self.penalty(x, threshold, shift), x)
        return gradient.numpy().astype(np.float32)

    def share_above(self, delta: np.ndarray, carrier: np.ndarray) -> float:
        """The share of STFT cells where ``delta``'s PSD exceeds the carrier's threshold."""
        threshold, shift = self.threshold(carrier)
        excess = self.psd_db(delta).numpy() + shift - threshold
        return float(np.mean(excess > 0.0))
