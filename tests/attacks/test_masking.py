"""The simplified psychoacoustic model behind the masked attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from voxaudit.attacks.masking import (
    SPL_MAX_DB,
    MaskingModel,
    absolute_threshold_db,
    bark,
    spreading_db,
)

MODEL = MaskingModel()


def tone(frequency: float, seconds: float = 0.5, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def test_the_curves_have_their_textbook_shape():
    assert bark(np.array([1000.0]))[0] == pytest.approx(8.5, abs=0.2)
    assert spreading_db(np.array([0.0]))[0] == pytest.approx(0.0, abs=0.1)
    # Masking spreads further up in frequency (dz > 0) than down.
    assert spreading_db(np.array([2.0]))[0] > spreading_db(np.array([-2.0]))[0]
    # The ear is most sensitive near 3-4 kHz, least at the low end.
    hearing = absolute_threshold_db(np.array([50.0, 1000.0, 3500.0]))
    assert hearing[2] < hearing[1] < hearing[0]


def test_the_threshold_follows_the_carrier_and_never_drops_below_hearing():
    threshold, shift = MODEL.threshold(tone(1000.0))
    floor = absolute_threshold_db(np.fft.rfftfreq(512, 1 / 16000))
    assert (threshold >= floor - 1e-9).all()
    frame = threshold[threshold.shape[0] // 2]
    peak_bin = round(1000.0 * 512 / 16000)
    # Highest at the tone, about offset_db below the carrier's 96 dB peak (a little above:
    # every bin of the window's main lobe masks), and far lower two octaves up.
    assert abs(int(frame.argmax()) - peak_bin) <= 1
    assert frame.max() == pytest.approx(SPL_MAX_DB - MODEL.offset_db, abs=3.0)
    assert frame[peak_bin * 4] < frame.max() - 40
    assert np.isfinite(shift)


@settings(max_examples=15, deadline=None)
@given(
    gain=st.floats(0.01, 3.0),
    frequency=st.floats(200.0, 3000.0),
    seed=st.integers(0, 2**16),
)
def test_the_share_above_the_mask_does_not_depend_on_gain(gain, frequency, seed):
    """Qin et al.'s normalization: carrier and perturbation scaled alike keep their relation."""
    carrier = tone(frequency, seconds=0.25)
    delta = 1e-3 * np.random.default_rng(seed).standard_normal(carrier.size).astype(np.float32)
    expected = MODEL.share_above(delta, carrier)
    assert MODEL.share_above(gain * delta, gain * carrier) == pytest.approx(expected, abs=0.01)


@settings(max_examples=10, deadline=None)
@given(level_db=st.floats(-80.0, -10.0), seed=st.integers(0, 2**16))
def test_the_penalty_is_zero_below_the_threshold_and_grows_above(level_db, seed):
    carrier = tone(500.0, seconds=0.25)
    threshold, shift = MODEL.threshold(carrier)
    noise = np.random.default_rng(seed).standard_normal(carrier.size)
    quieter, louder = (10 ** ((level_db + d) / 20) * noise for d in (0.0, 10.0))
    penalty = [
        float(MODEL.penalty(torch.as_tensor(x), threshold, shift)) for x in (quieter, louder)
    ]
    assert penalty[1] >= penalty[0] >= 0.0
    assert float(MODEL.penalty(torch.zeros(carrier.size), threshold, shift)) == 0.0


def test_the_penalty_gradient_lowers_the_penalty():
    carrier = tone(500.0, seconds=0.25)
    threshold, shift = MODEL.threshold(carrier)
    delta = 0.01 * np.random.default_rng(0).standard_normal(carrier.size).astype(np.float32)
    gradient = MODEL.penalty_gradient(delta, threshold, shift)
    assert gradient.shape == delta.shape and gradient.dtype == np.float32
    stepped = delta - 1e-3 * gradient / np.abs(gradient).max()
    before, after = (
        float(MODEL.penalty(torch.as_tensor(x), threshold, shift)) for x in (delta, stepped)
    )
    assert after < before
