from types import SimpleNamespace

import pytest
import torch

from voxaudit.data.features import LogMel, collate
from voxaudit.train.augment import SpecAugment, VocalTractWarp


def _batch():
    return collate([torch.randn(50, 20), torch.randn(30, 20)], [[1, 2], [3]])


def test_masks_take_the_utterance_mean_and_spare_padding():
    batch = _batch()
    out = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_width=0.2).transform(
        None, batch
    )
    assert out.features.shape == batch.features.shape
    assert torch.equal(out.lengths, batch.lengths) and torch.equal(out.targets, batch.targets)
    changed = out.features != batch.features
    assert changed.any()
    assert not changed[1, 30:].any()  # padding of the shorter utterance
    means = batch.features[1, :30].mean(0)
    rows, cols = torch.nonzero(changed[1], as_tuple=True)
    assert torch.allclose(out.features[1, rows, cols], means[cols])
    # Each time mask covers at most 20% of the utterance: two of them at most 40%.
    fully_masked_frames = changed[0].all(dim=1).sum()
    assert fully_masked_frames <= 0.4 * 50


def test_no_masks_is_identity_and_draws_are_seeded():
    batch = _batch()
    assert torch.equal(SpecAugment(0, 0, 0, 0).transform(None, batch).features, batch.features)
    augment = SpecAugment()
    torch.manual_seed(3)
    first = augment.transform(None, batch).features
    torch.manual_seed(3)
    assert torch.equal(first, augment.transform(None, batch).features)


def _sine_features(front_end, hz: float) -> torch.Tensor:
    t = torch.arange(8000) / front_end.sample_rate
    return front_end(torch.sin(2 * torch.pi * hz * t))


def test_vocal_tract_warp_moves_a_tone_as_scaling_its_frequency_would():
    front_end = LogMel(sample_rate=16000, n_mels=40)
    model = SimpleNamespace(front_end=front_end)
    batch = collate([_sine_features(front_end, 1000.0)], [[1]])
    warped = VocalTractWarp(1.3, 1.3).transform(model, batch).features[0]
    expected = _sine_features(front_end, 1300.0)
    peaks = warped.mean(0).argmax(), expected.mean(0).argmax()
    assert peaks[0] == peaks[1] != batch.features[0].mean(0).argmax()
    same = VocalTractWarp(1.0, 1.0).transform(model, batch).features
    assert torch.allclose(same, batch.features, atol=1e-5)


def test_vocal_tract_warp_spares_padding_and_is_seeded():
    model = SimpleNamespace(front_end=LogMel(sample_rate=8000, n_mels=20))
    batch = _batch()
    warp = VocalTractWarp(0.85, 1.15)
    torch.manual_seed(5)
    first = warp.transform(model, batch).features
    assert first.shape == batch.features.shape and not torch.equal(first, batch.features)
    assert torch.equal(first[1, 30:], batch.features[1, 30:])
    torch.manual_seed(5)
    assert torch.equal(first, warp.transform(model, batch).features)
    with pytest.raises(ValueError, match="0 < low <= high"):
        VocalTractWarp(1.2, 1.1)
