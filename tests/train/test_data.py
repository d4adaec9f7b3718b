from pathlib import Path

import pytest
import torch

from tests.audio_fixtures import tone
from voxaudit.data.corpus import Utterance
from voxaudit.data.features import Batch, LogMel
from voxaudit.errors import VoxauditError
from voxaudit.train.data import SpeakerBatchSampler, UtteranceDataset, make_loader


@pytest.fixture(scope="module")
def utterances() -> list[Utterance]:
    """Tones of varied length: 3 speakers x 3 takes, with short words as transcripts."""
    return [
        Utterance(
            f"s{s}-{t}",
            f"s{s}",
            transcript=["one", "two", "three"][t],
            samples=tone(0.2 + 0.1 * t, freq=200.0 * (s + 1), seed=s * 3 + t),
            sample_rate=16000,
        )
        for s in range(3)
        for t in range(3)
    ]


def test_items_are_float_features_and_targets(utterances):
    extractor = LogMel(n_mels=24)
    data = UtteranceDataset(utterances, extractor, lambda u: u.transcript)
    assert len(data) == 9 and data.ids[0] == "s0-0"
    features, target = data[4]
    samples = utterances[4].samples
    assert features.dtype == torch.float32
    assert features.shape == (len(samples) // 160 + 1, 24)
    assert target == "two"
    assert torch.allclose(features, extractor(torch.from_numpy(samples)))
    assert data.targets() == [u.transcript for u in utterances]


def test_sequence_targets_collate_padded(utterances):
    data = UtteranceDataset(utterances, LogMel(n_mels=24), lambda u: [ord(c) for c in u.transcript])
    batch = next(iter(make_loader(data, batch_size=3)))
    assert isinstance(batch, Batch)
    assert batch.features.shape[0] == 3 and batch.features.shape[2] == 24
    assert batch.target_lengths.tolist() == [3, 3, 5]
    assert batch.targets.shape == (3, 5)


def test_cache_dir_keeps_features_on_disk(utterances, tmp_path: Path):
    extractor = LogMel(n_mels=24)
    first = UtteranceDataset(utterances, extractor, lambda u: 0, cache_dir=tmp_path)
    cached = [first[i][0] for i in range(len(first))]
    assert len(list(tmp_path.rglob("*.npy"))) == 9
    again = UtteranceDataset(utterances, extractor, lambda u: 0, cache_dir=tmp_path)
    assert all(torch.equal(a, again[i][0]) for i, a in enumerate(cached))


def test_loader_order_follows_its_seed(utterances):
    data = UtteranceDataset(utterances, LogMel(n_mels=24), lambda u: int(u.id[-1]))

    def order(seed: int) -> list[int]:
        loader = make_loader(data, batch_size=4, shuffle=True, seed=seed)
        return [t for b in loader for t in b.lengths.tolist()]

    assert order(1) == order(1)
    assert order(1) != order(2)
    assert sum(len(b.lengths) for b in make_loader(data, batch_size=4)) == 9


def _labels() -> list[str]:
    # 6 speakers with 2..7 utterances, interleaved.
    counts = {f"spk{i}": i + 2 for i in range(6)}
    labels = [spk for spk, n in counts.items() for _ in range(n)]
    return [labels[i] for i in torch.randperm(len(labels), generator=torch.manual_seed(0))]


def test_speaker_batches_are_n_distinct_speakers_by_m_utterances():
    labels = _labels()
    sampler = SpeakerBatchSampler(labels, speakers_per_batch=3, utterances_per_speaker=2, seed=0)
    coming = len(sampler)  # the batches of the epoch to come
    batches = list(sampler)
    assert len(batches) == coming > 0
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))  # no utterance twice in an epoch
    for batch in batches:
        assert len(batch) == 6
        speakers = [labels[i] for i in batch]
        assert speakers[0::2] == speakers[1::2]  # speaker-major: M of each in a row
        assert len(set(speakers)) == 3


def test_speaker_batches_depend_only_on_seed_and_epoch():
    labels = _labels()

    def sampler(seed: int) -> SpeakerBatchSampler:
        return SpeakerBatchSampler(labels, 2, 3, seed=seed)

    a, b = sampler(0), sampler(0)
    first, second = list(a), list(a)
    assert first != second  # iterating moves on to the next epoch
    assert list(b) == first
    b.set_epoch(1)
    assert list(b) == second
    assert list(sampler(1)) != first
    # Speakers with fewer than M = 3 utterances (spk0) never appear.
    assert "spk0" not in {labels[i] for batch in first + second for i in batch}


def test_speaker_sampler_needs_enough_speakers():
    labels = ["a"] * 4 + ["b"] * 4 + ["c"]
    with pytest.raises(VoxauditError, match="2 speakers have at least 2"):
        SpeakerBatchSampler(labels, speakers_per_batch=3, utterances_per_speaker=2)
    with pytest.raises(VoxauditError, match=">= 1"):
        SpeakerBatchSampler(labels, speakers_per_batch=0, utterances_per_speaker=2)


def test_speaker_sampler_feeds_a_loader(utterances):
    data = UtteranceDataset(utterances, LogMel(n_mels=24), lambda u: int(u.speaker[1:]))
    sampler = SpeakerBatchSampler(data.targets(), 2, 2, seed=0)
    batches = list(make_loader(data, batch_sampler=sampler))
    assert len(batches) >= 1
    for batch in batches:
        speakers = batch.targets.tolist()
        assert len(speakers) == 4 and speakers[0::2] == speakers[1::2]
        assert speakers[0] != speakers[2]
