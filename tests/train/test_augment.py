import torch

from voxaudit.data.features import collate
from voxaudit.train.augment import SpecAugment


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
